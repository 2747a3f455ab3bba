//! The timings and bounds of a swarm (DXOS 0.8.3's timings by default, and bounds on everything a
//! remote can make a swarm hold).

use std::time::Duration;

/// Timings and bounds of a swarm.
///
/// Start from [`SwarmConfig::default`] and change what you need with the `with_*` setters:
///
/// ```
/// use std::time::Duration;
/// use mesh_swarm::SwarmConfig;
///
/// let config = SwarmConfig::default().with_initiation_delay(Duration::ZERO).with_max_peers(512);
/// assert_eq!(config.max_peers, 512);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SwarmConfig {
    /// How long the peer with the higher key waits before initiating, so that the lower key's
    /// offer (which wins) usually arrives first.
    pub initiation_delay: Duration,
    /// A connection that is not up this long after its transport opened is aborted.
    pub connect_timeout: Duration,
    /// An offer not answered this long is given up. An accepted offer waiting for a place among
    /// the connections being set up is dropped after as long (the initiator has given up by then).
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
    /// Peers the swarm keeps track of at most (default 4096). At the limit, the availability of
    /// further peers is ignored and their offers get no answer; peers already tracked, and above
    /// all connected ones, are never evicted to make room.
    pub max_peers: usize,
    /// Signals from the remote a connection holds at most before its transport exists (default
    /// 64). A remote that sends more has its connection aborted.
    pub max_buffered_signals: usize,
    /// Bytes of signals (encoded) a connection holds at most before its transport exists (default
    /// 64 KiB). A remote that sends more has its connection aborted.
    pub max_buffered_signal_bytes: usize,
    /// Signals from the remote waiting for a transport to take them (default 64). A transport
    /// that falls this far behind has its connection closed, so it cannot hold up the swarm.
    pub transport_signal_queue: usize,
    /// Swarm messages on their way (sent, not yet acknowledged) at most (default 256). Beyond
    /// that a message fails at once as undeliverable instead of queueing.
    pub max_messages_in_flight: usize,
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
            max_peers: 4096,
            max_buffered_signals: 64,
            max_buffered_signal_bytes: 64 << 10,
            transport_signal_queue: 64,
            max_messages_in_flight: 256,
        }
    }
}

impl SwarmConfig {
    /// Sets [`SwarmConfig::initiation_delay`].
    pub fn with_initiation_delay(mut self, delay: Duration) -> Self {
        self.initiation_delay = delay;
        self
    }

    /// Sets [`SwarmConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`SwarmConfig::answer_timeout`].
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// Sets [`SwarmConfig::max_initiating`].
    pub fn with_max_initiating(mut self, max: usize) -> Self {
        self.max_initiating = max;
        self
    }

    /// Sets [`SwarmConfig::signal_batch_initial`] and [`SwarmConfig::signal_batch_max`].
    pub fn with_signal_batching(mut self, initial: Duration, max: Duration) -> Self {
        self.signal_batch_initial = initial;
        self.signal_batch_max = max;
        self
    }

    /// Sets [`SwarmConfig::reconnect_backoff`].
    pub fn with_reconnect_backoff(mut self, backoff: Vec<Duration>) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// Sets [`SwarmConfig::stable_after`].
    pub fn with_stable_after(mut self, after: Duration) -> Self {
        self.stable_after = after;
        self
    }

    /// Sets [`SwarmConfig::max_peers`].
    pub fn with_max_peers(mut self, max: usize) -> Self {
        self.max_peers = max;
        self
    }

    /// Sets [`SwarmConfig::max_buffered_signals`] and [`SwarmConfig::max_buffered_signal_bytes`].
    pub fn with_max_buffered_signals(mut self, count: usize, bytes: usize) -> Self {
        self.max_buffered_signals = count;
        self.max_buffered_signal_bytes = bytes;
        self
    }

    /// Sets [`SwarmConfig::transport_signal_queue`].
    pub fn with_transport_signal_queue(mut self, len: usize) -> Self {
        self.transport_signal_queue = len;
        self
    }

    /// Sets [`SwarmConfig::max_messages_in_flight`].
    pub fn with_max_messages_in_flight(mut self, max: usize) -> Self {
        self.max_messages_in_flight = max;
        self
    }
}
