//! Counters and gauges, served in the Prometheus text format at `/metrics`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// The server's metrics. Cheap to update from any task (atomics, no lock).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: Gauge,
    pub(crate) connections_rejected: Counter,
    pub(crate) topics: Gauge,
    pub(crate) members: Gauge,
    pub(crate) messages_relayed: Counter,
    pub(crate) messages_dropped: Counter,
    pub(crate) frames_rejected: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) auth_failures: Counter,
    pub(crate) joins_rate_limited: Counter,
    pub(crate) events_coalesced: Counter,
    pub(crate) writes_timed_out: Counter,
    pub(crate) federation_connected: Gauge,
    pub(crate) federation_servers: Gauge,
    pub(crate) federation_published: Counter,
    pub(crate) federation_received: Counter,
    pub(crate) federation_dropped: Counter,
    pub(crate) federation_duplicates: Counter,
    pub(crate) federation_rejected: Counter,
    pub(crate) federation_members_refused: Counter,
    registry: Registry,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut metrics = Self::default();
        let mut registry = Registry::with_prefix("mesh_signal");
        registry.register("connections", "Open WebSocket connections", metrics.connections.clone());
        registry.register(
            "connections_rejected",
            "Connections refused at the connection limit or closed at the handshake limit",
            metrics.connections_rejected.clone(),
        );
        registry.register("topics", "Topics with at least one member", metrics.topics.clone());
        registry.register("members", "Peers joined to topics, summed over topics", metrics.members.clone());
        registry.register(
            "messages_relayed",
            "Messages delivered to an inbox",
            metrics.messages_relayed.clone(),
        );
        registry.register(
            "messages_dropped",
            "Messages dropped because the recipient's queue was full",
            metrics.messages_dropped.clone(),
        );
        registry.register(
            "frames_rejected",
            "Frames refused as malformed, unexpected or oversized",
            metrics.frames_rejected.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests answered RATE_LIMIT_EXCEEDED",
            metrics.rate_limited.clone(),
        );
        registry.register("auth_failures", "Failed authentication attempts", metrics.auth_failures.clone());
        registry.register(
            "joins_rate_limited",
            "Joins answered RATE_LIMIT_EXCEEDED by the per-topic or per-connection join limit",
            metrics.joins_rate_limited.clone(),
        );
        registry.register(
            "events_coalesced",
            "Swarm events merged into one still waiting for the same member stream and peer",
            metrics.events_coalesced.clone(),
        );
        registry.register(
            "writes_timed_out",
            "Connections closed because a write to the client stalled past the write timeout",
            metrics.writes_timed_out.clone(),
        );
        registry.register(
            "federation_connected",
            "1 while the federation's NATS connection is up, 0 when it is down (or not federated)",
            metrics.federation_connected.clone(),
        );
        registry.register(
            "federation_servers",
            "Other federated servers heard from within their timeout",
            metrics.federation_servers.clone(),
        );
        registry.register(
            "federation_published",
            "Messages published to NATS",
            metrics.federation_published.clone(),
        );
        registry.register(
            "federation_received",
            "Messages received from other servers through NATS",
            metrics.federation_received.clone(),
        );
        registry.register(
            "federation_dropped",
            "Messages for peers on other servers dropped: NATS away, or its queue full",
            metrics.federation_dropped.clone(),
        );
        registry.register(
            "federation_duplicates",
            "Copies of a message dropped because it was relayed moments before",
            metrics.federation_duplicates.clone(),
        );
        registry.register(
            "federation_rejected",
            "Malformed messages from NATS",
            metrics.federation_rejected.clone(),
        );
        registry.register(
            "federation_members_refused",
            "Members reported by other servers beyond a topic's member limit",
            metrics.federation_members_refused.clone(),
        );
        metrics.registry = registry;
        metrics
    }

    /// The metrics in the Prometheus text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            connections: self.connections.get().max(0) as u64,
            topics: self.topics.get().max(0) as u64,
            members: self.members.get().max(0) as u64,
            messages_relayed: self.messages_relayed.get(),
            messages_dropped: self.messages_dropped.get(),
            frames_rejected: self.frames_rejected.get(),
            rate_limited: self.rate_limited.get(),
            auth_failures: self.auth_failures.get(),
            connections_rejected: self.connections_rejected.get(),
            joins_rate_limited: self.joins_rate_limited.get(),
            events_coalesced: self.events_coalesced.get(),
            writes_timed_out: self.writes_timed_out.get(),
            federation_connected: self.federation_connected.get() > 0,
            federation_servers: self.federation_servers.get().max(0) as u64,
            federation_published: self.federation_published.get(),
            federation_received: self.federation_received.get(),
            federation_dropped: self.federation_dropped.get(),
            federation_duplicates: self.federation_duplicates.get(),
        }
    }
}

/// A snapshot of the server's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Topics with at least one member.
    pub topics: u64,
    /// Peers joined to topics, summed over topics.
    pub members: u64,
    /// Messages delivered to an inbox.
    pub messages_relayed: u64,
    /// Messages dropped because the recipient's queue was full.
    pub messages_dropped: u64,
    /// Frames refused as malformed, unexpected or oversized.
    pub frames_rejected: u64,
    /// Requests answered `RATE_LIMIT_EXCEEDED`.
    pub rate_limited: u64,
    /// Failed authentication attempts.
    pub auth_failures: u64,
    /// Connections refused at the connection limit (HTTP 503) or closed at once at the
    /// handshake limit.
    pub connections_rejected: u64,
    /// Joins answered `RATE_LIMIT_EXCEEDED` by the per-topic or per-connection join limit (also
    /// counted in `rate_limited`).
    pub joins_rate_limited: u64,
    /// Swarm events merged into one still waiting for the same member stream and peer.
    pub events_coalesced: u64,
    /// Connections closed because a write to the client stalled past the write timeout.
    pub writes_timed_out: u64,
    /// Whether the federation's NATS connection is up.
    pub federation_connected: bool,
    /// Other federated servers heard from within their timeout.
    pub federation_servers: u64,
    /// Messages published to NATS.
    pub federation_published: u64,
    /// Messages received from other servers through NATS.
    pub federation_received: u64,
    /// Messages for peers on other servers dropped: NATS away, or its queue full.
    pub federation_dropped: u64,
    /// Copies of a message dropped because it was relayed moments before.
    pub federation_duplicates: u64,
}
