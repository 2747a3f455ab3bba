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
///
/// Membership is reported consistently: every peer reported available in a topic is reported
/// left once the implementation stops vouching for it, whether the peer left, the connection was
/// lost (a reconnect announces the peers still there afresh) or this side left the topic. So a
/// consumer that follows the events never keeps a ghost, and [`Signal::members`] says who is
/// there now.
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
    /// The peers currently available in `topic`, as the events have reported them so far: a
    /// consumer that fell behind the event stream (`RecvError::Lagged`) resynchronises with it.
    async fn members(&self, topic: DiscoveryKey) -> Result<Vec<PublicKey>, SignalError>;
    /// A new receiver of every event from now on. A receiver that falls behind by more than the
    /// channel's capacity misses the oldest events and is told so (`RecvError::Lagged`).
    fn events(&self) -> broadcast::Receiver<Event>;
}
