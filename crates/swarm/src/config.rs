//! The timings and bounds of a swarm (DXOS 0.8.3's values by default).

use std::time::Duration;

/// Timings and bounds of a swarm.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// How long the peer with the higher key waits before initiating, so that the lower key's
    /// offer (which wins) usually arrives first.
    pub initiation_delay: Duration,
    /// A connection that is not up this long after its transport opened is aborted.
    pub connect_timeout: Duration,
    /// An offer not answered this long is given up.
    pub answer_timeout: Duration,
    /// Connections being set up at once at most; more wait their turn.
    pub max_initiating: usize,
    /// The first delay before a batch of transport signals is sent; it doubles with every batch.
    pub signal_batch_initial: Duration,
    /// The longest delay before a batch of transport signals is sent.
    pub signal_batch_max: Duration,
    /// Delays before reconnecting to a peer after successive failures.
    pub reconnect_backoff: Vec<Duration>,
    /// A connection that lasted this long resets the backoff.
    pub stable_after: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            initiation_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(10),
            max_initiating: 50,
            signal_batch_initial: Duration::from_millis(10),
            signal_batch_max: Duration::from_millis(300),
            reconnect_backoff: [0, 50, 500, 1000, 5000, 10_000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            stable_after: Duration::from_secs(5),
        }
    }
}
