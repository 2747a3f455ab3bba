//! Federation: signal servers that share a NATS cluster serve one set of topics and inboxes.
//!
//! Each server tells the others, through NATS, which of its local peers are in which topics, and
//! passes on messages for peers it does not hold to the servers that do. Nothing is stored in
//! NATS: every server holds only its own peers and what the others told it, and asks for it again
//! (scatter-gather) when it starts listening to a topic, when another server appears, and when it
//! gets NATS back. ARCHITECTURE.md ("Federation") explains the choice and the subjects; the
//! envelope is `mesh.v1.Federation` (`proto/mesh/v1/federation.proto`).

use std::time::Duration;

mod inbound;
mod link;
mod outbox;
mod remote;

#[cfg(feature = "fuzzing")]
pub(crate) use inbound::Inbound;
pub(crate) use link::{Parts, run};
pub(crate) use outbox::Outbox;

/// A server's id among the federated servers: random, new each time it starts.
pub(crate) type ServerId = u64;

/// How to federate with other signal servers over NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Federation {
    /// NATS servers to connect to (`nats://host:port`); any one of the cluster will do, and the
    /// client moves to another when one fails.
    pub urls: Vec<String>,
    /// The first tokens of every subject, so several federations can share one NATS cluster.
    pub prefix: String,
    /// How often this server says it is alive.
    pub heartbeat: Duration,
    /// A server not heard from for this long is gone, with every peer it held. This plus a
    /// quarter of the heartbeat is how long a dead server's peers linger elsewhere (3.25 s by
    /// default).
    pub server_timeout: Duration,
    /// How long a relayed message is remembered so that copies of it (a client sending through
    /// several servers) are dropped. Keep it under the messengers' resend delay (1 s for DXOS's
    /// and mesh's), or a resend after a lost acknowledgement would be dropped too.
    pub duplicate_window: Duration,
}

impl Federation {
    /// Federates through the NATS servers at `urls`, with the default subjects and timing.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: "mesh.signal".into(),
            heartbeat: Duration::from_secs(1),
            server_timeout: Duration::from_secs(3),
            duplicate_window: Duration::from_millis(500),
        }
    }

    /// Sets [`Federation::prefix`].
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`Federation::duplicate_window`].
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Sets [`Federation::heartbeat`] and [`Federation::server_timeout`].
    pub fn with_timing(mut self, heartbeat: Duration, server_timeout: Duration) -> Self {
        self.heartbeat = heartbeat;
        self.server_timeout = server_timeout;
        self
    }
}
