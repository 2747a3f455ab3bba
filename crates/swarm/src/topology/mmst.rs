//! MMST, the "mostly-minimal spanning tree": a sparse, bounded-degree, connected swarm.
//!
//! DXOS 0.8.3's MMST keeps every peer's degree small so large swarms stay cheap: a peer with fewer
//! than `originate` (2) connections connects to the XOR-nearest of a random sample of `sample_size`
//! (10) candidates, accepts offers while it has fewer than `max_peers` (4) connections, and makes at
//! most one change per `change_interval` (10 s). DXOS's branch for a peer above `max_peers` throws
//! instead of disconnecting; ours disconnects the XOR-farthest peer.
//!
//! # Why the plain rules are not enough
//!
//! Those rules are purely local, and they split the swarm. A peer with two connections never
//! originates again, whoever opened them, so peers that happen to link into a closed group (a
//! triangle, a short cycle, any group whose members all reach two links among themselves) form an
//! island: nobody inside looks outside, and peers outside that reach their quota stop looking too.
//! The island lasts until one of its own members loses a link. In the simulation (the test
//! `plain_dxos_rules_can_partition` in crates/swarm/tests/topology.rs) 9 of 10 seeded 200-peer
//! swarms end split into two or three islands. Random sampling makes islands less likely, never
//! impossible, so no tuning of the sample fixes it.
//!
//! # The fix: a key-order ring as backbone
//!
//! Each peer also keeps links to its two neighbours on the ring of live peers sorted by key (see
//! `ring.rs`). If every peer does, the graph contains a cycle through every peer, so it is connected
//! whatever the other links are; when a peer leaves, its two ring neighbours become adjacent and
//! link up in one change. A ring is about as small as a connected graph gets (n links, a tree has
//! n − 1), and the ring links join keys adjacent in numerical order, which share long prefixes, so
//! the XOR preference survives. A peer still originates `originate` connections in all: its ring
//! successor plus `originate − 1` sampled XOR-nearest links (the chords), which keep the diameter
//! down (about 15 hops for 200 peers, against 100 for a bare ring). Ring links are never dropped,
//! and a ring neighbour's offer is accepted even at `max_peers`; the peer then drops its XOR-farthest
//! other link, one change per interval, so the degree bound holds again once the swarm settles.
//!
//! The rules, first match wins, at most one change per `change_interval`:
//! 1. more than `max_peers` connections: disconnect the XOR-farthest peer that is not a ring
//!    neighbour;
//! 2. a ring neighbour is a candidate: connect to it (successor first);
//! 3. fewer than `originate − 1` connections besides the ring neighbours: connect to the
//!    XOR-nearest of up to `sample_size` random other candidates not asked recently.
//!
//! Offers are accepted from ring neighbours, and from anyone else while this peer has fewer than
//! `max_peers` connections.
//!
//! Rule 3 remembers whom it asked (the last 64), because DXOS's version re-asks the same nearest
//! peer every 10 s for ever when that peer is full and the sample holds every candidate (any swarm
//! of 11 peers or fewer). Once every candidate has been asked, the peer stops looking for chords
//! until its view of the swarm changes; connectivity does not depend on chords, so giving up is
//! safe, and it lets a swarm go quiet.
//!
//! Setting [`MmstConfig::keep_ring`] to false gives DXOS's plain rules (with the over-max fix and
//! rule 3's memory), for comparison.
//!
//! In a swarm mixing mesh and DXOS peers the guarantee weakens: a DXOS peer neither seeks its ring
//! neighbours nor accepts them beyond `max_peers`, so the ring may have gaps there.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use mesh_keys::PublicKey;
use rand::{SeedableRng, rngs::SmallRng, seq::IndexedRandom};

use super::{Action, SwarmState, Topology, rate_limit::RateLimit, ring, xor};

/// The parameters of [`Mmst`]; [`Default`] gives DXOS's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MmstConfig {
    /// Connections a peer originates on its own (DXOS: 2). With the ring, these are the ring
    /// successor (always, even if this is 0) and `originate - 1` sampled chords.
    pub originate: usize,
    /// Most connections a peer accepts offers up to; above it the farthest is dropped (DXOS: 4). A
    /// value below 2 counts as 2 when the ring is kept, as the ring needs two links.
    pub max_peers: usize,
    /// How many random candidates the nearest is chosen from (DXOS: 10); 0 counts as 1.
    pub sample_size: usize,
    /// The least time between two changes (connect or disconnect) of one peer (DXOS: 10 s).
    pub change_interval: Duration,
    /// Keep links to the key-order ring neighbours, which keeps the swarm connected (ours; DXOS
    /// has no such rule, and `false` reproduces its rules).
    pub keep_ring: bool,
}

impl Default for MmstConfig {
    fn default() -> Self {
        Self {
            originate: 2,
            max_peers: 4,
            sample_size: 10,
            change_interval: Duration::from_secs(10),
            keep_ring: true,
        }
    }
}

impl MmstConfig {
    /// Sets [`MmstConfig::originate`].
    pub fn with_originate(mut self, count: usize) -> Self {
        self.originate = count;
        self
    }

    /// Sets [`MmstConfig::max_peers`].
    pub fn with_max_peers(mut self, max: usize) -> Self {
        self.max_peers = max;
        self
    }

    /// Sets [`MmstConfig::sample_size`].
    pub fn with_sample_size(mut self, size: usize) -> Self {
        self.sample_size = size;
        self
    }

    /// Sets [`MmstConfig::keep_ring`].
    pub fn with_keep_ring(mut self, keep: bool) -> Self {
        self.keep_ring = keep;
        self
    }
}

/// The MMST topology: bounded degree, XOR-nearest preference, rate-limited changes and a ring
/// backbone that keeps the swarm connected.
#[derive(Debug, Clone)]
pub struct Mmst {
    /// The parameters.
    config: MmstConfig,
    /// Draws the candidate samples; seeded so runs are reproducible.
    rng: SmallRng,
    /// One change per `change_interval`.
    limit: RateLimit,
    /// Chord targets offered to recently, newest last, at most [`TRIED_CAP`]; not sampled again
    /// until every other candidate was tried, so a full nearest peer is not asked forever.
    tried: VecDeque<PublicKey>,
    /// A digest of the state in which every candidate had been tried: no more chords are sought
    /// until the state differs from it.
    exhausted: Option<u64>,
}

/// How many recent chord targets a peer remembers.
const TRIED_CAP: usize = 64;

/// What rules 1–3 want, before the rate limit and the sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Do this.
    Act(Action),
    /// Connect to the nearest of a random sample of candidates that are not ring neighbours.
    Chord,
}

impl Mmst {
    /// MMST with DXOS's parameters and the ring, sampling with a generator seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_config(MmstConfig::default(), seed)
    }

    /// MMST with `config`, sampling with a generator seeded by `seed`.
    pub fn with_config(config: MmstConfig, seed: u64) -> Self {
        Self {
            config,
            rng: SmallRng::seed_from_u64(seed),
            limit: RateLimit::new(config.change_interval),
            tried: VecDeque::new(),
            exhausted: None,
        }
    }

    /// The parameters.
    pub const fn config(&self) -> &MmstConfig {
        &self.config
    }

    /// The most connections this peer keeps, after the ring's floor of two.
    fn max_peers(&self) -> usize {
        if self.config.keep_ring { self.config.max_peers.max(2) } else { self.config.max_peers }
    }

    /// This peer's ring neighbours among its live peers (and `extra`, an offering peer), if the ring
    /// is kept and there is another peer.
    fn ring(&self, state: &SwarmState, extra: Option<&PublicKey>) -> Option<(PublicKey, PublicKey)> {
        if !self.config.keep_ring {
            return None;
        }
        ring::neighbours(&state.own, state.connected.iter().chain(&state.candidates).chain(extra))
    }

    /// Applies rules 1–3 (see the module docs) to `state`.
    fn want(&self, state: &SwarmState) -> Option<Want> {
        let own = &state.own;
        let connected: Vec<&PublicKey> = state.connected.iter().filter(|p| *p != own).collect();
        let ring = self.ring(state, None);
        let is_ring = |p: &PublicKey| ring.is_some_and(|(pred, succ)| *p == pred || *p == succ);

        if connected.len() > self.max_peers() {
            return xor::farthest(own, connected.iter().copied().filter(|p| !is_ring(p)))
                .map(|p| Want::Act(Action::Disconnect(p)));
        }
        if let Some((pred, succ)) = ring {
            for p in [succ, pred] {
                if state.candidates.contains(&p) && !connected.contains(&&p) {
                    return Some(Want::Act(Action::Connect(p)));
                }
            }
        }
        let (others, quota) = if self.config.keep_ring {
            let chords = connected.iter().filter(|p| !is_ring(p)).count();
            (chords, self.config.originate.saturating_sub(1))
        } else {
            (connected.len(), self.config.originate)
        };
        let has_pool = state.candidates.iter().any(|p| p != own && !is_ring(p));
        (others < quota && has_pool && self.exhausted.is_none()).then_some(Want::Chord)
    }

    /// The XOR-nearest of a random sample of the candidates that are neither ring neighbours nor
    /// tried recently, remembered as tried. With none left, forgets the tried ones and gives up
    /// until the state changes (`digest`).
    fn sample_nearest(&mut self, state: &SwarmState, digest: u64) -> Option<PublicKey> {
        let ring = self.ring(state, None);
        let pool: Vec<PublicKey> = state
            .candidates
            .iter()
            .filter(|p| **p != state.own && ring.is_none_or(|(pred, succ)| **p != pred && **p != succ))
            .filter(|p| !self.tried.contains(p))
            .copied()
            .collect();
        let sample = pool.sample(&mut self.rng, self.config.sample_size.max(1));
        let Some(peer) = xor::nearest(&state.own, sample) else {
            self.tried.clear();
            self.exhausted = Some(digest);
            return None;
        };
        if self.tried.len() >= TRIED_CAP {
            self.tried.pop_front();
        }
        self.tried.push_back(peer);
        Some(peer)
    }
}

impl Topology for Mmst {
    fn update(&mut self, now: Instant, state: &SwarmState) -> Vec<Action> {
        let digest = digest(state);
        if self.exhausted.is_some_and(|d| d != digest) {
            self.exhausted = None;
        }
        let Some(want) = self.want(state) else {
            self.limit.idle();
            return Vec::new();
        };
        if !self.limit.ready(now) {
            self.limit.defer();
            return Vec::new();
        }
        let action = match want {
            Want::Act(action) => Some(action),
            Want::Chord => self.sample_nearest(state, digest).map(Action::Connect),
        };
        match action {
            Some(action) => {
                self.limit.record(now);
                vec![action]
            }
            None => {
                self.limit.idle();
                Vec::new()
            }
        }
    }

    fn on_offer(&mut self, _now: Instant, state: &SwarmState, peer: PublicKey) -> bool {
        if peer == state.own {
            return false;
        }
        if self.ring(state, Some(&peer)).is_some_and(|(pred, succ)| peer == pred || peer == succ) {
            return true;
        }
        state.connected.iter().filter(|p| **p != peer).count() < self.max_peers()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.limit.wake()
    }
}

/// A digest of the peer's view (its connections and candidates), to notice that it changed.
fn digest(state: &SwarmState) -> u64 {
    let mut hasher = DefaultHasher::new();
    state.connected.hash(&mut hasher);
    state.candidates.hash(&mut hasher);
    hasher.finish()
}
