//! The transport abstraction.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::Struct;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
};

use crate::{LinkAuth, LinkAuthError, noise::NoiseError};

/// Signals a transport may have waiting to be sent at once; transports send a handful each.
const SIGNAL_QUEUE: usize = 64;

/// A bidirectional byte stream between two peers.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// The byte stream a connected transport yields.
pub type ByteStream = Box<dyn AsyncStream>;

/// Where a transport puts the signals (`dxos.mesh.swarm.Signal.payload` Structs) for the remote.
#[derive(Debug, Clone)]
pub struct SignalSink(mpsc::Sender<Struct>);

impl SignalSink {
    /// A sink and the receiver the swarm reads the signals from.
    pub fn channel() -> (Self, mpsc::Receiver<Struct>) {
        let (sender, receiver) = mpsc::channel(SIGNAL_QUEUE);
        (Self(sender), receiver)
    }

    /// Queues a signal for the remote.
    pub async fn send(&self, signal: Struct) -> Result<(), TransportError> {
        self.0.send(signal).await.map_err(|_| TransportError::Closed)
    }
}

/// Which transport a factory makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// In-process pipes.
    Memory,
    /// TCP, DXOS-compatible.
    Tcp,
    /// WebRTC data channels.
    WebRtc,
    /// TCP encrypted with Noise (`tcp+noise`), between mesh peers only.
    NoiseTcp,
}

/// What a transport needs to know about its connection.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// This peer.
    pub own: PublicKey,
    /// The peer to connect to.
    pub remote: PublicKey,
    /// The swarm the connection belongs to.
    pub topic: DiscoveryKey,
    /// Whether this side initiated the connection (sent the offer).
    pub initiator: bool,
    /// The connection attempt's id, shared by both sides.
    pub session: PublicKey,
    /// Where to put signals for the remote.
    pub signals: SignalSink,
    /// The nonces both sides exchanged for link authentication, when both are mesh peers whose
    /// transports authenticate links ([`TransportFactory::authenticates_links`]). With them, the
    /// transport hands the stream over only once both ends proved their keys; without them (a
    /// DXOS remote) the link is not authenticated.
    pub link: Option<LinkAuth>,
}

/// Bytes and packets through a transport so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Bytes written to the stream.
    pub bytes_sent: u64,
    /// Bytes read from the stream.
    pub bytes_received: u64,
}

/// Why a transport failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The transport was closed (by either side, or before it connected).
    #[error("transport closed")]
    Closed,
    /// A signal from the remote could not be understood.
    #[error("bad signal: {0}")]
    BadSignal(String),
    /// The operating system refused an operation.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// The connection never came up (for the memory transport: it was chosen to be lost).
    #[error("connection failed: {0}")]
    Failed(String),
    /// A signalled host is (or resolves to) no address this transport may dial.
    #[error("the signalled host {host:?} is outside the dial allow-list")]
    HostNotAllowed {
        /// The host as signalled.
        host: String,
    },
    /// The remote did not prove it is the expected peer (or this side could not prove itself).
    #[error("link authentication failed: {0}")]
    LinkAuth(#[from] LinkAuthError),
    /// The Noise handshake failed: the remote is not the expected peer, or does not speak Noise.
    #[error("noise handshake failed: {0}")]
    Noise(#[from] NoiseError),
}

impl TransportError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source: Arc::new(source) }
    }
}

/// One connection attempt's transport.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Starts connecting. The initiator's first signals go to the sink.
    async fn open(&self) -> Result<(), TransportError>;
    /// Takes a signal from the remote.
    async fn signal(&self, payload: Struct) -> Result<(), TransportError>;
    /// Waits until the byte stream is up and hands it over; a second call gets
    /// [`TransportError::Closed`].
    async fn connected(&self) -> Result<ByteStream, TransportError>;
    /// Stops connecting, or closes the stream if it was not handed over yet.
    async fn close(&self);
    /// Traffic so far.
    fn stats(&self) -> TransportStats;
    /// Once connected, a value both ends of this connection derive alike and nobody between them
    /// can make the same on both sides: for WebRTC, both DTLS certificate fingerprints; for an
    /// authenticated TCP link, its nonces; for `tcp+noise`, the Noise handshake hash. Proofs of identity made over the connection sign it,
    /// so a proof made for one connection is worth nothing on another. `None` where the
    /// transport has none (plain TCP with a DXOS peer, memory pipes).
    fn binding(&self) -> Option<ChannelBinding> {
        None
    }
}

/// A transport's channel binding: see [`Transport::binding`].
pub type ChannelBinding = [u8; 32];

/// Hashes the parts of a channel binding, each length-prefixed, under a domain of its own.
pub(crate) fn channel_binding(domain: &str, parts: &[&[u8]]) -> ChannelBinding {
    let mut hasher = blake3::Hasher::new_derive_key(domain);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// Makes transports of one kind.
pub trait TransportFactory: Send + Sync {
    /// A transport for one connection attempt.
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport>;
    /// The kind of transport made.
    fn kind(&self) -> TransportKind;
    /// Whether the transports made authenticate links given a [`LinkAuth`] (they hold this peer's
    /// key pair). The swarm exchanges link nonces with the remote only when this is true.
    fn authenticates_links(&self) -> bool {
        false
    }
}
