//! Swarms: the peers of one topic, the connections between them, and the topology that decides
//! which connections to keep.
//!
//! [`Swarm`] is the sans-IO core of one topic: the peer and connection state machines (CREATED →
//! INITIAL → CONNECTING → CONNECTED → CLOSED, or ABORTED on error or timeout), the glare rules, the
//! reconnect backoff, the limit on connections being set up, and signal batching. A driver runs it
//! on signaling, the reliable messenger and transports.

mod config;
mod connection;
mod driver;
mod error;
mod event;
mod limiter;
mod network;
mod protocol;
/// The virtual-time network `cargo xtask simulate` runs swarms on (feature `sim`).
#[cfg(feature = "sim")]
pub mod sim;
mod swarm;
pub mod topology;

pub use config::SwarmConfig;
pub use error::ConnectionError;
pub use event::{CloseReason, ConnectionState, Event, Output};
pub use mesh_transport::ByteStream;
pub use network::{NetworkManager, SwarmHandle};
pub use protocol::{ConnectionInfo, Protocol, ProtocolError};
pub use swarm::Swarm;

/// A key whose 32 bytes are all `byte`: distinct per byte and ordered (also by XOR distance) as
/// the bytes are, which is what the unit tests of orderings need.
#[cfg(test)]
pub(crate) fn test_key(byte: u8) -> mesh_keys::PublicKey {
    mesh_keys::PublicKey::from_bytes([byte; 32])
}
