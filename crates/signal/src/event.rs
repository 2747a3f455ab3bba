//! What signaling tells its user.

use std::time::SystemTime;

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::Any;

/// A message between two peers, relayed by the signal servers. The payload is opaque to them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignalMessage {
    /// The sender.
    pub author: PublicKey,
    /// The receiver.
    pub recipient: PublicKey,
    /// The content, typically a `dxos.mesh.messaging.ReliablePayload`.
    pub payload: Any,
}

/// The connection state of a client to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting for the first time.
    Connecting,
    /// Connected; joins and inboxes are (being) re-established.
    Connected,
    /// Disconnected; the next attempt follows the backoff.
    Disconnected,
    /// Closed by its owner.
    Closed,
}

/// Something signaling reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `peer` is in the swarm `topic`.
    PeerAvailable {
        /// The swarm.
        topic: DiscoveryKey,
        /// The peer.
        peer: PublicKey,
        /// When the peer joined, as the server saw it.
        since: Option<SystemTime>,
    },
    /// `peer` left the swarm `topic`.
    PeerLeft {
        /// The swarm.
        topic: DiscoveryKey,
        /// The peer.
        peer: PublicKey,
    },
    /// A message for one of the subscribed inboxes.
    Message(SignalMessage),
    /// The connection to a server changed state.
    Connection {
        /// The server's URL.
        url: String,
        /// The new state.
        state: ConnectionState,
    },
}
