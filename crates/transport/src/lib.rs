//! Transports: how two peers of a swarm get a byte stream between them.
//!
//! A [`Transport`] is created for one connection attempt (own key, remote key, topic, initiator
//! flag, session id) with a [`SignalSink`] for the signals it must send to the remote side through
//! signaling. The swarm passes it the remote's signals with [`Transport::signal`], and
//! [`Transport::connected`] yields the byte stream that Teleport runs over.
//!
//! - [`tcp::TcpTransport`]: DXOS-compatible TCP. The initiator listens (on loopback unless told
//!   otherwise) and signals `{port}` (plus an optional `host`, which DXOS ignores); the other side
//!   dials it if its allow-list permits. Between mesh peers given a [`LinkAuth`] both ends prove
//!   their keys before the stream is handed over.
//! - `noise::NoiseTcpTransportFactory` (feature `noise`, on by default): `tcp+noise`, the TCP
//!   transport with a Noise XX handshake instead of link authentication, whose stream is
//!   encrypted; both ends prove their peer keys by signing their Noise static keys. Between mesh
//!   peers only.
//! - [`memory::MemoryTransport`]: in-process pipes with configurable latency, bandwidth and
//!   connection loss, for tests and simulation.
//! - `webrtc::WebRtcTransport` (feature `webrtc`, on by default): WebRTC. A peer connection with one data channel
//!   labelled with the topic; offer, answer and trickled ICE candidates travel as simple-peer
//!   signals, and the byte stream is cut into data channel messages of at most 64 KiB.
//!
//! ```
//! use mesh_keys::{DiscoveryKey, Keypair};
//! use mesh_transport::{TransportFactory, TransportOptions, memory::MemoryTransportFactory};
//!
//! # async fn run() -> Result<(), mesh_transport::TransportError> {
//! let factory = MemoryTransportFactory::default();
//! let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
//! let topic = DiscoveryKey::from_party(&alice);
//! let session = Keypair::generate().public();
//! let (a_signals, mut to_bob) = mesh_transport::SignalSink::channel();
//! let (b_signals, _to_alice) = mesh_transport::SignalSink::channel();
//! let a = factory.create(TransportOptions { own: alice, remote: bob, topic, initiator: true, session, signals: a_signals, link: None });
//! let b = factory.create(TransportOptions { own: bob, remote: alice, topic, initiator: false, session, signals: b_signals, link: None });
//! a.open().await?;
//! b.open().await?;
//! while let Ok(signal) = to_bob.try_recv() {
//!     b.signal(signal).await?;
//! }
//! let (_stream_a, _stream_b) = (a.connected().await?, b.connected().await?);
//! # Ok(()) }
//! ```

mod api;
mod handover;
mod link;
pub mod memory;
mod metered;
pub mod noise;
mod pipe;
pub mod tcp;
#[cfg(feature = "webrtc")]
pub mod webrtc;

pub use api::{
    ByteStream, ChannelBinding, SignalSink, Transport, TransportError, TransportFactory, TransportKind,
    TransportOptions, TransportStats,
};
pub use link::{LinkAuth, LinkAuthError, NONCE_LEN};
pub use metered::Metered;

/// Locks `mutex`. Nothing here panics while holding a lock, so a poisoned one still holds valid
/// data.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
