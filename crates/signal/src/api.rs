//! The signaling interface that clients, the manager and the in-memory network share.

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, PublicKey};
use tokio::sync::broadcast;

use crate::{Event, SignalError, SignalMessage};

/// Joining swarms, receiving a peer's messages, and sending messages, through signal servers.
///
/// `join`, `leave`, `subscribe` and `unsubscribe` change the desired state, which an
/// implementation keeps across reconnects; they return once the change is recorded. `send` returns
/// once a server accepted the message (or fails after its timeout).
#[async_trait]
pub trait Signal: Send + Sync {
    /// Joins the swarm `topic` as `peer`: the swarm's members arrive as [`Event::PeerAvailable`].
    async fn join(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError>;
    /// Leaves the swarm; the other members see `PeerLeft`.
    async fn leave(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError>;
    /// Opens `peer`'s inbox: messages to it arrive as [`Event::Message`].
    async fn subscribe(&self, peer: PublicKey) -> Result<(), SignalError>;
    /// Closes `peer`'s inbox.
    async fn unsubscribe(&self, peer: PublicKey) -> Result<(), SignalError>;
    /// Sends a message to its recipient's inboxes.
    async fn send(&self, message: SignalMessage) -> Result<(), SignalError>;
    /// A new receiver of every event from now on. A receiver that falls behind by more than the
    /// channel's capacity misses the oldest events and is told so (`RecvError::Lagged`).
    fn events(&self) -> broadcast::Receiver<Event>;
}
