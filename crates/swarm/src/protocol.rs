//! What runs over every connection once its transport is up (Teleport, in a full stack).

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_transport::ByteStream;
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
}

/// The wire protocol of a swarm's connections.
#[async_trait]
pub trait Protocol: Send + Sync {
    /// Runs over `stream` until the connection ends, by either side or by `close` being cancelled
    /// (the swarm closing the connection). An error ends the connection as a failure.
    async fn run(
        &self,
        info: ConnectionInfo,
        stream: ByteStream,
        close: CancellationToken,
    ) -> Result<(), String>;
}
