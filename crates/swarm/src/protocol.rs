//! What runs over every connection once its transport is up (Teleport, in a full stack).

use std::{error::Error, sync::Arc};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_transport::{ByteStream, ChannelBinding};
use tokio_util::sync::CancellationToken;

/// Who a connection is between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// This peer.
    pub own: PublicKey,
    /// The remote peer.
    pub remote: PublicKey,
    /// The swarm.
    pub topic: DiscoveryKey,
    /// The connection attempt.
    pub session: PublicKey,
    /// Whether this side initiated it.
    pub initiator: bool,
    /// The transport's channel binding ([`Transport::binding`](mesh_transport::Transport::binding)),
    /// for proofs of identity bound to this connection; `None` where the transport has none.
    pub binding: Option<ChannelBinding>,
}

/// The wire protocol of a swarm's connections.
#[async_trait]
pub trait Protocol: Send + Sync {
    /// Runs over `stream` until the connection ends, by either side or by `close` being cancelled
    /// (the swarm closing the connection). An error ends the connection as a failure; it reaches
    /// the application in [`CloseReason::Transport`](crate::CloseReason::Transport).
    async fn run(
        &self,
        info: ConnectionInfo,
        stream: ByteStream,
        close: CancellationToken,
    ) -> Result<(), ProtocolError>;
}

/// Why a [`Protocol`] ended a connection in failure: the protocol's own error, kept whole (its
/// message is this error's message; [`ProtocolError::downcast_ref`] gets it back).
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ProtocolError(Arc<dyn Error + Send + Sync + 'static>);

impl ProtocolError {
    /// Wraps a protocol's error.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The protocol's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The protocol's error, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}
