//! WebRTC transport, speaking the signals of DXOS's `RtcTransport` (simple-peer's format).
//!
//! Each transport is one peer connection with one reliable, ordered data channel labelled with
//! the swarm's topic in hex. The initiator creates the channel and the offer; the other side
//! answers and takes the channel the remote opened. Signals are DXOS's Structs:
//! `{data: {type: "offer" | "answer", sdp}}` and
//! `{data: {type: "candidate", candidate: {candidate, sdpMLineIndex, sdpMid}}}`, with ICE
//! candidates trickled as they are gathered.
//!
//! The byte stream cuts writes into data channel messages of at most 64 KiB (the size every
//! peer accepts) and holds a writer back while the channel's send buffer is full, so memory
//! stays bounded however fast the application writes. Data channels have no half-close:
//! shutting the stream down closes the channel both ways, and the remote reads EOF.
//!
//! Built on webrtc 0.21 with changes from its defaults: UDP sockets get large buffers, and the
//! peer connection's driver sends what it queued at once rather than at its next timer tick
//! (both in `runtime.rs`); ICE checks run every 20 ms rather than every 200 ms and settle on a
//! peer-reflexive path at once; mDNS is off and every interface is bound (`interfaces.rs`), so
//! a host with only loopback, or no multicast route, works. Setup on loopback takes a few
//! milliseconds.
//!
//! ```no_run
//! use mesh_transport::{TransportFactory, webrtc::{IceServer, WebRtcTransportFactory}};
//!
//! let factory = WebRtcTransportFactory {
//!     ice_servers: vec![IceServer::stun("stun:stun.l.google.com:19302")],
//!     ..WebRtcTransportFactory::default()
//! };
//! assert_eq!(factory.kind(), mesh_transport::TransportKind::WebRtc);
//! ```

mod events;
mod ice;
mod interfaces;
mod peer;
mod runtime;
mod session;
mod signals;
mod stream;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use async_trait::async_trait;
use mesh_proto::Struct;

pub use self::{
    ice::{IceConfigError, IceServer},
    runtime::BufferedRuntime,
};
use self::{session::Shared, signals::Signal};
use crate::{
    ByteStream, ChannelBinding, Transport, TransportError, TransportFactory, TransportKind, TransportOptions,
    TransportStats, lock,
};

/// Makes [`WebRtcTransport`]s.
#[derive(Debug, Clone, Default)]
pub struct WebRtcTransportFactory {
    /// STUN and TURN servers. None by default: host candidates are enough on one machine or one
    /// network; add a STUN server to cross NATs and a TURN server for networks that block UDP
    /// between peers. [`IceServer::parse_list`] reads them in the shape DXOS's ICE provider
    /// serves.
    pub ice_servers: Vec<IceServer>,
    /// Use only relayed candidates (a TURN server's), as `iceTransportPolicy: "relay"` does:
    /// the remote never learns this host's addresses, at the cost of a relay hop.
    pub relay_only: bool,
    /// Local addresses to bind UDP sockets to, one socket (and host candidate) each.
    ///
    /// Empty (the default): every address of every interface that is up, loopback included and
    /// link-local excluded, listed when each connection starts. A host with only loopback, or
    /// only IPv6, works as well as one with a network, and two peers on one machine connect
    /// without one. A loopback candidate sent to a remote machine just never gets an answer.
    pub udp_bind: Vec<SocketAddr>,
}

impl WebRtcTransportFactory {
    /// A factory that binds IPv4 loopback only: for tests on one machine, with the fewest
    /// candidates.
    pub fn loopback() -> Self {
        Self { udp_bind: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))], ..Self::default() }
    }

    /// These STUN and TURN servers.
    pub fn with_ice_servers(mut self, servers: Vec<IceServer>) -> Self {
        self.ice_servers = servers;
        self
    }

    /// Only relayed candidates, or every kind.
    pub fn with_relay_only(mut self, relay_only: bool) -> Self {
        self.relay_only = relay_only;
        self
    }

    /// These local addresses for the UDP sockets (see [`WebRtcTransportFactory::udp_bind`]).
    pub fn with_udp_bind(mut self, addresses: Vec<SocketAddr>) -> Self {
        self.udp_bind = addresses;
        self
    }
}

impl TransportFactory for WebRtcTransportFactory {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(WebRtcTransport { shared: Arc::new(Shared::new(options, self.clone())) })
    }

    fn kind(&self) -> TransportKind {
        TransportKind::WebRtc
    }
}

/// One WebRTC connection attempt: a peer connection and its data channel.
///
/// [`Transport::close`] closes the peer connection, also after the stream was handed over;
/// dropping the handed-over stream does the same. Dropping the transport before the stream was
/// handed over stops the attempt.
pub struct WebRtcTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("offerer", &session::offers(&self.shared.options.own, &self.shared.options.remote))
            .field("remote", &self.shared.options.remote.short())
            .finish_non_exhaustive()
    }
}

impl Drop for WebRtcTransport {
    fn drop(&mut self) {
        // Once handed over, the stream owns the connection; until then, nobody can use it.
        if !self.shared.handover.handed_over() {
            self.shared.stop.cancel();
        }
    }
}

#[async_trait]
impl Transport for WebRtcTransport {
    async fn open(&self) -> Result<(), TransportError> {
        let shared = &self.shared;
        let Some(remote) = lock(&shared.unopened).take() else { return Ok(()) };
        if shared.stop.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let started = tokio::select! {
            () = shared.stop.cancelled() => Err(TransportError::Closed),
            started = session::start(shared, remote) => started,
        };
        if let Err(err) = &started {
            shared.handover.fail(err.clone());
        }
        started
    }

    async fn signal(&self, payload: Struct) -> Result<(), TransportError> {
        let shared = &self.shared;
        let signal = Signal::parse(&payload)?;
        tokio::select! {
            () = shared.stop.cancelled() => Err(TransportError::Closed),
            sent = shared.remote_signals.send(signal) => sent.map_err(|_| TransportError::Closed),
        }
    }

    async fn connected(&self) -> Result<ByteStream, TransportError> {
        self.shared.handover.take().await
    }

    async fn close(&self) {
        let shared = &self.shared;
        shared.stop.cancel();
        shared.handover.close();
        // The session task closes the peer connection on its way out; wait for it and the
        // stream's tasks, so nothing of this transport outlives `close`.
        shared.tasks.close();
        shared.tasks.wait().await;
    }

    fn stats(&self) -> TransportStats {
        self.shared.counters.stats()
    }

    fn binding(&self) -> Option<ChannelBinding> {
        self.shared.binding.get().copied()
    }
}
