//! Drives one simulation: builds the [`Sim`], joins the peers, applies churn and the partition
//! second by second, and samples the connection graph.

use std::time::{Duration, Instant};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_swarm::{
    Swarm, SwarmConfig,
    sim::{Partition, Sim, SimConfig, SimStats, model},
    topology::{FullyConnected, Mmst, MmstConfig, Star, Topology},
};
use rand::{RngExt, SeedableRng, rngs::SmallRng};

use super::{
    args::{Options, TopologyKind},
    graph::Graph,
    wire,
};

/// Broadcast sources per sample.
const BROADCAST_SOURCES: usize = 4;
/// Departed keys remembered for returning peers.
const RETURNING_CAP: usize = 4096;

/// The figures of one sample of the graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at_secs: u64,
    pub(crate) peers: usize,
    pub(crate) edges: usize,
    pub(crate) components: usize,
    pub(crate) largest_component: usize,
    pub(crate) min_degree: usize,
    pub(crate) mean_degree: f64,
    pub(crate) max_degree: usize,
    /// Fraction of peers at their topology's target degree.
    pub(crate) at_target: f64,
    pub(crate) diameter: u32,
    pub(crate) diameter_exact: bool,
    /// Mean over the sources of reached / (peers − 1).
    pub(crate) broadcast_ratio: f64,
    pub(crate) broadcast_p50: Duration,
    pub(crate) broadcast_p99: Duration,
    pub(crate) partitioned: bool,
}

/// Everything a run produced (no wall-clock figures: those stay with the caller).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) samples: Vec<Sample>,
    /// First second at which the graph was one component with every peer at its target.
    pub(crate) converged_at: Option<u64>,
    /// First second at which it was one component with at least 99 % of peers at their target.
    pub(crate) converged_99_at: Option<u64>,
    /// First second after the heal at which the graph was one component again.
    pub(crate) reconnected_after_heal_at: Option<u64>,
    /// Peers per degree (index = degree) at the end.
    pub(crate) degree_histogram: Vec<usize>,
    /// Bytes one broadcast hop puts on the wire (a gossip announce through Teleport).
    pub(crate) broadcast_wire_bytes: usize,
    /// Every broadcast arrival time of every sample, sorted.
    pub(crate) broadcast_arrivals: Vec<Duration>,
    pub(crate) broadcast_ratio: f64,
    pub(crate) stats: SimStats,
    pub(crate) peers_ever: usize,
    pub(crate) joins: usize,
    pub(crate) returns: usize,
    pub(crate) crashes: usize,
    pub(crate) clean_leaves: usize,
    pub(crate) final_peers: usize,
}

/// Runs the simulation `options` describe.
pub(crate) fn run(options: &Options) -> Result<Outcome, String> {
    let wire_bytes = wire::announce_bytes(options.message_bytes)?;
    Ok(Runner::new(options, wire_bytes).run())
}

struct Runner<'a> {
    options: &'a Options,
    sim: Sim,
    start: Instant,
    rng: SmallRng,
    metrics_rng: SmallRng,
    /// Live peers, for uniform picks (swap-removed).
    live: Vec<PublicKey>,
    departed: Vec<PublicKey>,
    centre: Option<PublicKey>,
    incarnations: u64,
    /// How long a peer's uplink takes to send one broadcast message.
    send_time: Duration,
    outcome: Outcome,
}

impl<'a> Runner<'a> {
    fn new(options: &'a Options, wire_bytes: usize) -> Self {
        let config = SimConfig {
            latency: options.latency,
            loss: options.loss,
            view: options.view,
            seed: options.seed,
            record_events: false,
            ..SimConfig::default()
        };
        // A fixed instant: virtual time only ever adds to it, and nothing printed depends on it.
        let start = Instant::now();
        let topic = DiscoveryKey::from_party(&PublicKey::from_bytes([0x51; 32]));
        Self {
            options,
            sim: Sim::new(config, topic, start),
            start,
            rng: SmallRng::seed_from_u64(model::mix(options.seed)),
            metrics_rng: SmallRng::seed_from_u64(model::mix(options.seed ^ 0x6d65_7472_6963)),
            live: Vec::new(),
            departed: Vec::new(),
            centre: None,
            incarnations: 0,
            send_time: wire::send_time(wire_bytes, options.bandwidth),
            outcome: Outcome {
                broadcast_wire_bytes: wire_bytes,
                samples: Vec::new(),
                converged_at: None,
                converged_99_at: None,
                reconnected_after_heal_at: None,
                degree_histogram: Vec::new(),
                broadcast_arrivals: Vec::new(),
                broadcast_ratio: 0.0,
                stats: SimStats::default(),
                peers_ever: 0,
                joins: 0,
                returns: 0,
                crashes: 0,
                clean_leaves: 0,
                final_peers: 0,
            },
        }
    }

    fn run(mut self) -> Outcome {
        for _ in 0..self.options.peers {
            let key = PublicKey::random_from(&mut self.rng);
            self.centre.get_or_insert(key);
            self.join(key);
        }
        self.outcome.joins = 0;
        let seconds = self.options.duration.as_secs();
        let sample_every = self.options.sample.as_secs().max(1);
        for second in 0..seconds {
            self.partition_at(second);
            self.churn_during(second);
            self.sim.run_until(self.start + Duration::from_secs(second + 1));
            let now = second + 1;
            self.check_convergence(now);
            if now % sample_every == 0 || now == seconds {
                self.sample(now);
            }
        }
        self.finish()
    }

    fn join(&mut self, key: PublicKey) {
        self.incarnations += 1;
        let seed = model::key_hash(self.options.seed, &key) ^ model::mix(self.incarnations);
        let topology: Box<dyn Topology> = match self.options.topology {
            TopologyKind::Full => Box::new(FullyConnected),
            TopologyKind::Star => Box::new(Star::new(self.centre.unwrap_or(key))),
            TopologyKind::Mmst => Box::new(Mmst::new(seed)),
        };
        let topic = self.sim.topic();
        self.sim.join(Swarm::new(key, topic, topology, SwarmConfig::default(), seed));
        self.live.push(key);
        self.outcome.peers_ever += 1;
        self.outcome.joins += 1;
    }

    /// Splits the network when the partition starts and heals it when it ends.
    fn partition_at(&mut self, second: u64) {
        let Some(spec) = self.options.partition else { return };
        if second == spec.at.as_secs() {
            let salt = model::mix(self.options.seed ^ 0x7061_7274);
            self.sim.set_partition(Some(Partition { groups: spec.groups, salt }));
        } else if second == (spec.at + spec.length).as_secs() {
            self.sim.set_partition(None);
        }
    }

    /// Poisson joins and leaves within `second`, each at a random millisecond.
    fn churn_during(&mut self, second: u64) {
        let rate = self.options.churn;
        if rate <= 0.0 || second < self.options.churn_from.as_secs() {
            return;
        }
        let mut events: Vec<(u64, bool)> = Vec::new();
        for joining in [true, false] {
            for _ in 0..poisson(&mut self.rng, rate) {
                events.push((self.rng.random_range(0..1000), joining));
            }
        }
        events.sort_unstable();
        for (millis, joining) in events {
            self.sim.run_until(self.start + Duration::from_secs(second) + Duration::from_millis(millis));
            if joining {
                self.churn_join();
            } else {
                self.churn_leave();
            }
        }
    }

    /// A returning key half the time when there is one, otherwise a new one.
    fn churn_join(&mut self) {
        let key = if !self.departed.is_empty() && self.rng.random_bool(0.5) {
            self.outcome.returns += 1;
            let at = self.rng.random_range(0..self.departed.len());
            self.departed.swap_remove(at)
        } else {
            PublicKey::random_from(&mut self.rng)
        };
        self.join(key);
    }

    /// A random live peer (never the star's centre) crashes or leaves cleanly, half and half.
    fn churn_leave(&mut self) {
        let candidates = self.live.len();
        if candidates <= 2 {
            return;
        }
        let at = self.rng.random_range(0..candidates);
        let key = self.live[at];
        if self.options.topology == TopologyKind::Star && Some(key) == self.centre {
            return;
        }
        self.live.swap_remove(at);
        if self.rng.random_bool(0.5) {
            self.sim.crash(key);
            self.outcome.crashes += 1;
        } else {
            self.sim.leave(key);
            self.outcome.clean_leaves += 1;
        }
        if self.departed.len() >= RETURNING_CAP {
            let at = self.rng.random_range(0..self.departed.len());
            self.departed.swap_remove(at);
        }
        self.departed.push(key);
    }

    /// Whether `node` of `graph` has the degree its topology aims for.
    fn at_target(&self, graph: &Graph, node: usize) -> bool {
        let n = graph.len();
        let degree = graph.degree(node);
        match self.options.topology {
            TopologyKind::Full => degree + 1 == n,
            TopologyKind::Star if Some(graph.keys[node]) == self.centre => degree + 1 == n,
            TopologyKind::Star => degree == 1,
            TopologyKind::Mmst => match n {
                0 | 1 => degree == 0,
                2 => degree == 1,
                _ => (2..=MmstConfig::default().max_peers).contains(&degree),
            },
        }
    }

    fn at_target_fraction(&self, graph: &Graph) -> f64 {
        let at = (0..graph.len()).filter(|node| self.at_target(graph, *node)).count();
        at as f64 / graph.len().max(1) as f64
    }

    /// Notes the first second the graph converged, and reconnected after the heal.
    fn check_convergence(&mut self, second: u64) {
        let heal = self.options.partition.map(|p| (p.at + p.length).as_secs());
        let waiting_heal =
            heal.is_some_and(|h| second > h) && self.outcome.reconnected_after_heal_at.is_none();
        if self.outcome.converged_at.is_some() && self.outcome.converged_99_at.is_some() && !waiting_heal {
            return;
        }
        let graph = Graph::new(&self.sim.connections());
        let one = graph.components().1 == 1;
        if waiting_heal && one {
            self.outcome.reconnected_after_heal_at = Some(second);
        }
        if !one || self.outcome.converged_at.is_some() {
            return;
        }
        let fraction = self.at_target_fraction(&graph);
        if fraction >= 0.99 {
            self.outcome.converged_99_at.get_or_insert(second);
        }
        if fraction >= 1.0 {
            self.outcome.converged_at = Some(second);
        }
    }

    fn sample(&mut self, second: u64) {
        let graph = Graph::new(&self.sim.connections());
        let (component, components) = graph.components();
        let mut sizes = vec![0usize; components];
        for c in &component {
            sizes[*c as usize] += 1;
        }
        let degrees: Vec<usize> = (0..graph.len()).map(|n| graph.degree(n)).collect();
        let rng = &mut self.metrics_rng;
        let (diameter, diameter_exact) = graph.diameter(|len| rng.random_range(0..len));
        let mut arrivals = Vec::new();
        let mut ratio = 0.0;
        let sources = if graph.len() > 1 { BROADCAST_SOURCES } else { 0 };
        for _ in 0..sources {
            let source = self.metrics_rng.random_range(0..graph.len());
            let reached = graph.flood(source, self.send_time, |a, b| self.sim.pair_delay(a, b));
            ratio += reached.len() as f64 / (graph.len() - 1) as f64;
            arrivals.extend(reached);
        }
        arrivals.sort_unstable();
        let sample = Sample {
            at_secs: second,
            peers: graph.len(),
            edges: graph.edges(),
            components,
            largest_component: sizes.iter().copied().max().unwrap_or(0),
            min_degree: degrees.iter().copied().min().unwrap_or(0),
            mean_degree: degrees.iter().sum::<usize>() as f64 / graph.len().max(1) as f64,
            max_degree: degrees.iter().copied().max().unwrap_or(0),
            at_target: self.at_target_fraction(&graph),
            diameter,
            diameter_exact,
            broadcast_ratio: if sources == 0 { 1.0 } else { ratio / sources as f64 },
            broadcast_p50: percentile(&arrivals, 50.0),
            broadcast_p99: percentile(&arrivals, 99.0),
            partitioned: self.sim.partition().is_some(),
        };
        self.outcome.broadcast_arrivals.extend(arrivals);
        self.outcome.samples.push(sample);
    }

    fn finish(mut self) -> Outcome {
        let graph = Graph::new(&self.sim.connections());
        let mut histogram = Vec::new();
        for node in 0..graph.len() {
            let degree = graph.degree(node);
            if histogram.len() <= degree {
                histogram.resize(degree + 1, 0);
            }
            histogram[degree] += 1;
        }
        let samples = &self.outcome.samples;
        self.outcome.broadcast_ratio =
            samples.iter().map(|s| s.broadcast_ratio).sum::<f64>() / samples.len().max(1) as f64;
        self.outcome.broadcast_arrivals.sort_unstable();
        self.outcome.degree_histogram = histogram;
        self.outcome.stats = self.sim.stats();
        self.outcome.final_peers = self.sim.len();
        self.outcome
    }
}

/// The `p`th percentile of sorted `values` (nearest rank), zero when empty.
pub(crate) fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// A Poisson draw with mean `lambda` (Knuth's method, split into chunks of at most 30 so the
/// product never underflows), bounded by the flag's limit of 1000 per second.
fn poisson(rng: &mut SmallRng, lambda: f64) -> u64 {
    let mut left = lambda;
    let mut total = 0;
    while left > 0.0 {
        let chunk = left.min(30.0);
        left -= chunk;
        let limit = (-chunk).exp();
        let mut product: f64 = rng.random();
        while product > limit {
            total += 1;
            product *= rng.random::<f64>();
        }
    }
    total
}
