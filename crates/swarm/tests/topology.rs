//! Topologies driven by a deterministic, virtual-time swarm: connectivity, degree bounds, rate
//! limits and churn.
//!
//! The harness (`Sim`) stands in for the swarm: every peer has its own topology instance, an accepted
//! offer is an undirected link seen by both ends, and every peer whose state changed (its links, or
//! the set of live peers) is updated until nothing is left to do; the clock then jumps to the
//! earliest `poll_timeout`. Offers and disconnects take effect at once, so there is no glare here:
//! that is the swarm's job, tested with the swarm.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use mesh_keys::PublicKey;
use mesh_swarm::topology::{
    Action, FullyConnected, Mmst, MmstConfig, Star, SwarmState, Topology, xor_distance,
};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::SmallRng, seq::SliceRandom};

/// Makes a fresh topology for peer `index` (also on rejoin, as after a restart); `generation`
/// counts its rejoins so a restarted peer draws new samples.
type Factory = Box<dyn Fn(usize, u64) -> Box<dyn Topology>>;

/// One simulated peer.
struct Peer {
    key: PublicKey,
    topology: Box<dyn Topology>,
    live: bool,
    /// Indices of linked peers; peers are sorted by key, so index order is key order.
    links: BTreeSet<usize>,
    /// When this peer last asked for a change.
    last_change: Option<Instant>,
    /// How many times it rejoined.
    generation: u64,
}

/// A swarm on a virtual clock.
struct Sim {
    start: Instant,
    now: Instant,
    peers: Vec<Peer>,
    factory: Factory,
    /// Peers whose state changed since their last update.
    dirty: BTreeSet<usize>,
    /// If set, assert that no peer asks for two changes closer than this.
    min_change_gap: Option<Duration>,
    /// Update every live peer after every change, not only those whose state changed: a topology
    /// must not act differently on an update that brings nothing new.
    update_everyone: bool,
    /// Every change asked for (connect or disconnect).
    changes: usize,
    /// Offers the remote refused.
    refused: usize,
    /// Every change asked for: when, by whom, what.
    log: Vec<(Duration, usize, Action)>,
}

impl Sim {
    /// `n` peers with keys drawn from `seed`, each with `factory(index, 0)`.
    fn new(n: usize, seed: u64, factory: Factory) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut keys: Vec<PublicKey> = (0..n).map(|_| PublicKey::random_from(&mut rng)).collect();
        keys.sort();
        let peers = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Peer {
                key,
                topology: factory(i, 0),
                live: true,
                links: BTreeSet::new(),
                last_change: None,
                generation: 0,
            })
            .collect();
        let start = Instant::now();
        let mut sim = Self {
            start,
            now: start,
            peers,
            factory,
            dirty: BTreeSet::new(),
            min_change_gap: None,
            update_everyone: false,
            changes: 0,
            refused: 0,
            log: Vec::new(),
        };
        sim.touch_all();
        sim
    }

    fn mmst(n: usize, seed: u64, config: MmstConfig) -> Self {
        let factory: Factory = Box::new(move |i, generation| {
            let peer_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (generation << 48);
            Box::new(Mmst::with_config(config, peer_seed))
        });
        let mut sim = Self::new(n, seed, factory);
        sim.min_change_gap = Some(config.change_interval);
        sim
    }

    fn touch_all(&mut self) {
        self.dirty.extend((0..self.peers.len()).filter(|i| self.peers[*i].live));
    }

    /// What the swarm of peer `i` knows.
    fn state(&self, i: usize) -> SwarmState {
        let peer = &self.peers[i];
        SwarmState {
            own: peer.key,
            connected: peer.links.iter().map(|j| self.peers[*j].key).collect(),
            candidates: (0..self.peers.len())
                .filter(|j| *j != i && self.peers[*j].live && !peer.links.contains(j))
                .map(|j| self.peers[j].key)
                .collect(),
            all: self.peers.iter().map(|p| p.key).collect(),
        }
    }

    fn index(&self, key: &PublicKey) -> Option<usize> {
        self.peers.binary_search_by(|p| p.key.cmp(key)).ok()
    }

    fn link(&mut self, i: usize, j: usize) {
        self.peers[i].links.insert(j);
        self.peers[j].links.insert(i);
        self.dirty.extend([i, j]);
    }

    fn unlink(&mut self, i: usize, j: usize) {
        self.peers[i].links.remove(&j);
        self.peers[j].links.remove(&i);
        self.dirty.extend([i, j]);
    }

    fn apply(&mut self, i: usize, action: Action) {
        self.changes += 1;
        if let (Some(gap), Some(last)) = (self.min_change_gap, self.peers[i].last_change) {
            assert!(
                self.now.duration_since(last) >= gap,
                "peer {i} changed twice within {gap:?} (at {:?} and {:?})",
                last - self.start,
                self.now - self.start,
            );
        }
        self.peers[i].last_change = Some(self.now);
        self.log.push((self.now - self.start, i, action));
        if self.update_everyone {
            self.touch_all();
        }
        match action {
            Action::Connect(key) => {
                let j = self.index(&key).expect("connect to a known peer");
                assert_ne!(i, j, "peer {i} connects to itself");
                assert!(
                    self.peers[j].live && !self.peers[i].links.contains(&j),
                    "{i} connects to non-candidate {j}"
                );
                let state = self.state(j);
                let (now, own) = (self.now, self.peers[i].key);
                if self.peers[j].topology.on_offer(now, &state, own) {
                    self.link(i, j);
                } else {
                    self.refused += 1;
                    // The failed attempt closes, which is a state change for the originator.
                    self.dirty.insert(i);
                }
            }
            Action::Disconnect(key) => {
                let j = self.index(&key).expect("disconnect from a known peer");
                assert!(self.peers[i].links.contains(&j), "{i} disconnects from unlinked {j}");
                self.unlink(i, j);
            }
        }
    }

    /// Runs until no peer has anything to do (true) or `limit` of virtual time passed (false).
    fn settle(&mut self, limit: Duration) -> bool {
        let deadline = self.now + limit;
        let mut updates = 0usize;
        loop {
            while let Some(i) = self.dirty.pop_first() {
                if !self.peers[i].live {
                    continue;
                }
                updates += 1;
                assert!(updates < 1_000_000, "the swarm never settles");
                let state = self.state(i);
                let now = self.now;
                for action in self.peers[i].topology.update(now, &state) {
                    self.apply(i, action);
                }
            }
            let next = self.peers.iter().filter(|p| p.live).filter_map(|p| p.topology.poll_timeout()).min();
            let Some(next) = next else { return true };
            if next > deadline {
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            self.dirty.extend((0..self.peers.len()).filter(|i| {
                self.peers[*i].live && self.peers[*i].topology.poll_timeout().is_some_and(|t| t <= now)
            }));
        }
    }

    fn leave(&mut self, i: usize) {
        self.peers[i].live = false;
        for j in std::mem::take(&mut self.peers[i].links) {
            self.peers[j].links.remove(&i);
        }
        self.touch_all();
    }

    fn rejoin(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        peer.generation += 1;
        peer.live = true;
        peer.last_change = None;
        peer.topology = (self.factory)(i, peer.generation);
        self.touch_all();
    }

    fn live(&self) -> Vec<usize> {
        (0..self.peers.len()).filter(|i| self.peers[*i].live).collect()
    }

    /// Distances (in hops) from `from` to every live peer it reaches.
    fn hops_from(&self, from: usize) -> BTreeMap<usize, usize> {
        let mut seen = BTreeMap::from([(from, 0)]);
        let mut queue = VecDeque::from([from]);
        while let Some(i) = queue.pop_front() {
            let d = seen[&i];
            for j in &self.peers[i].links {
                if !seen.contains_key(j) {
                    seen.insert(*j, d + 1);
                    queue.push_back(*j);
                }
            }
        }
        seen
    }

    /// The number of connected components among the live peers.
    fn components(&self) -> usize {
        let mut left: BTreeSet<usize> = self.live().into_iter().collect();
        let mut count = 0;
        while let Some(first) = left.pop_first() {
            count += 1;
            for i in self.hops_from(first).keys() {
                left.remove(i);
            }
        }
        count
    }

    fn is_connected(&self) -> bool {
        self.components() <= 1
    }

    fn max_degree(&self) -> usize {
        self.live().iter().map(|i| self.peers[*i].links.len()).max().unwrap_or(0)
    }

    /// How many live peers have each degree.
    fn degrees(&self) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        for i in self.live() {
            *out.entry(self.peers[i].links.len()).or_default() += 1;
        }
        out
    }

    /// The largest hop count between two live peers (the graph must be connected).
    fn diameter(&self) -> usize {
        self.live().iter().filter_map(|i| self.hops_from(*i).values().max().copied()).max().unwrap_or(0)
    }

    fn edges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            out.extend(p.links.iter().filter(|j| **j > i).map(|j| (i, *j)));
        }
        out
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn fully_connected_factory() -> Factory {
    Box::new(|_, _| Box::new(FullyConnected::new()))
}

#[test]
fn fully_connected_links_every_pair() {
    let mut sim = Sim::new(12, 1, fully_connected_factory());
    assert!(sim.settle(HOUR));
    assert_eq!(sim.edges().len(), 12 * 11 / 2);
    assert_eq!(sim.elapsed(), Duration::ZERO, "no timers: everything happens at once");
}

#[test]
fn fully_connected_accepts_every_offer() {
    let own = PublicKey::from_bytes([1; 32]);
    let state = SwarmState { own, connected: vec![], candidates: vec![], all: vec![own] };
    assert!(FullyConnected::new().on_offer(Instant::now(), &state, PublicKey::from_bytes([2; 32])));
}

fn star_sim(n: usize, centre_index: usize) -> Sim {
    // Keys are drawn in the same order as Sim::new sorts them, so compute the centre's key first.
    let mut rng = SmallRng::seed_from_u64(7);
    let mut keys: Vec<PublicKey> = (0..n).map(|_| PublicKey::random_from(&mut rng)).collect();
    keys.sort();
    let centre = keys[centre_index];
    Sim::new(n, 7, Box::new(move |_, _| Box::new(Star::new(centre))))
}

#[test]
fn star_links_every_leaf_to_the_centre_only() {
    let mut sim = star_sim(10, 4);
    assert!(sim.settle(HOUR));
    assert_eq!(sim.peers[4].links, (0..10).filter(|i| *i != 4).collect());
    for i in (0..10).filter(|i| *i != 4) {
        assert_eq!(sim.peers[i].links, BTreeSet::from([4]), "leaf {i}");
    }
}

#[test]
fn star_refuses_offers_between_leaves() {
    let [centre, a, b] = [[1; 32], [2; 32], [3; 32]].map(PublicKey::from_bytes);
    let mut leaf = Star::new(centre);
    let state =
        SwarmState { own: a, connected: vec![], candidates: vec![centre, b], all: vec![centre, a, b] };
    let now = Instant::now();
    assert!(!leaf.on_offer(now, &state, b), "leaf to leaf");
    assert!(leaf.on_offer(now, &state, centre), "centre to leaf");
    let mut hub = Star::new(centre);
    let hub_state =
        SwarmState { own: centre, connected: vec![], candidates: vec![a, b], all: vec![centre, a, b] };
    assert!(hub.on_offer(now, &hub_state, a), "leaf to centre");
    assert!(hub.update(now, &hub_state).is_empty(), "the centre does not originate");
}

#[test]
fn star_leaf_drops_links_to_other_leaves() {
    let mut sim = star_sim(6, 0);
    sim.link(1, 2);
    sim.link(3, 5);
    assert!(sim.settle(HOUR));
    for i in 1..6 {
        assert_eq!(sim.peers[i].links, BTreeSet::from([0]), "leaf {i}");
    }
}

/// Runs MMST with `n` peers from `seed` until it settles, and checks the two invariants.
fn settled_mmst(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::mmst(n, seed, MmstConfig::default());
    let quiet = sim.settle(HOUR);
    assert!(quiet, "seed {seed}: still changing after an hour");
    assert!(sim.is_connected(), "seed {seed}: {} components", sim.components());
    assert!(sim.max_degree() <= 4, "seed {seed}: degrees {:?}", sim.degrees());
    sim
}

#[test]
fn mmst_200_peers_settle_connected_within_max_degree() {
    let sim = settled_mmst(200, 42);
    eprintln!(
        "200 peers: degrees {:?}, diameter {}, {} changes ({} refused offers), settled after {:?}",
        sim.degrees(),
        sim.diameter(),
        sim.changes,
        sim.refused,
        sim.elapsed(),
    );
    assert!(sim.degrees().keys().all(|d| *d >= 2), "every peer keeps its two ring links");
}

#[test]
fn mmst_stays_connected_while_a_tenth_of_peers_leave_and_rejoin() {
    for seed in [1, 2, 3] {
        let mut sim = settled_mmst(200, seed);
        churn(&mut sim, 20, 3, seed);
        eprintln!(
            "churn seed {seed}: 3 rounds passed; degrees {:?}, diameter {}, {} changes, {:?} virtual",
            sim.degrees(),
            sim.diameter(),
            sim.changes,
            sim.elapsed()
        );
    }
}

#[test]
fn mmst_is_deterministic_for_a_seed() {
    let run = |seed| {
        let mut sim = settled_mmst(60, seed);
        sim.leave(5);
        sim.leave(17);
        sim.settle(HOUR);
        (sim.edges(), sim.elapsed(), sim.log)
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).0, run(10).0);
}

#[test]
fn mmst_acts_the_same_when_every_peer_is_updated_after_every_change() {
    let run = |update_everyone| {
        let mut sim = Sim::mmst(60, 4, MmstConfig::default());
        sim.update_everyone = update_everyone;
        check_settled(&mut sim, "cold start");
        churn(&mut sim, 6, 2, 4);
        (sim.edges(), sim.elapsed(), sim.log)
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn mmst_makes_at_most_one_change_per_interval() {
    // The harness asserts the gap on every change; check also that the limiter is what spreads
    // the changes out (a cold start takes many intervals, not one burst).
    let sim = settled_mmst(50, 3);
    assert!(sim.elapsed() >= Duration::from_secs(10), "settled in {:?}", sim.elapsed());

    let own = PublicKey::from_bytes([0x80; 32]);
    let others: Vec<PublicKey> = (1..=6u8).map(|b| PublicKey::from_bytes([b; 32])).collect();
    let state = SwarmState { own, connected: vec![], candidates: others.clone(), all: others };
    let mut mmst = Mmst::new(1);
    let t0 = Instant::now();
    assert_eq!(mmst.update(t0, &state).len(), 1);
    assert!(mmst.update(t0 + Duration::from_secs(9), &state).is_empty());
    assert_eq!(mmst.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(mmst.update(t0 + Duration::from_secs(10), &state).len(), 1);
}

/// Keys whose first byte is `b`, the rest zero.
fn key(b: u8) -> PublicKey {
    let mut bytes = [0; 32];
    bytes[0] = b;
    PublicKey::from_bytes(bytes)
}

#[test]
fn mmst_above_max_disconnects_the_farthest() {
    // own = 0x10; ring neighbours are 0x0f (below) and 0x11 (above); 0xf0 is the farthest by XOR.
    let own = key(0x10);
    let connected = vec![key(0x0f), key(0x11), key(0x12), key(0x30), key(0xf0)];
    let state = SwarmState { own, connected: connected.clone(), candidates: vec![], all: connected };
    for keep_ring in [true, false] {
        let mut mmst = Mmst::with_config(MmstConfig::default().with_keep_ring(keep_ring), 1);
        assert_eq!(mmst.update(Instant::now(), &state), vec![Action::Disconnect(key(0xf0))]);
    }
}

#[test]
fn mmst_above_max_keeps_its_ring_neighbours() {
    // The farthest peer, 0xff, is also own's ring predecessor (the ring wraps), so 0x80 goes.
    let own = key(0x00);
    let connected = vec![key(0x01), key(0x02), key(0x03), key(0x80), key(0xff)];
    let state = SwarmState { own, connected: connected.clone(), candidates: vec![], all: connected };
    let mut mmst = Mmst::new(1);
    assert_eq!(mmst.update(Instant::now(), &state), vec![Action::Disconnect(key(0x80))]);
    assert_eq!(xor_distance(&own, &key(0xff)).iter().max(), Some(&0xff));
}

#[test]
fn mmst_accepts_offers_up_to_max_except_from_ring_neighbours() {
    let own = key(0x40);
    let connected = vec![key(0x01), key(0x02), key(0x03), key(0x04)];
    let state = SwarmState {
        own,
        connected: connected.clone(),
        candidates: vec![key(0x41), key(0x90)],
        all: connected,
    };
    let mut mmst = Mmst::new(1);
    let now = Instant::now();
    assert!(!mmst.on_offer(now, &state, key(0x90)), "full, and 0x90 is not a ring neighbour");
    assert!(mmst.on_offer(now, &state, key(0x41)), "the ring successor is always accepted");
    let three = SwarmState { connected: state.connected[..3].to_vec(), ..state.clone() };
    assert!(mmst.on_offer(now, &three, key(0x90)), "room for a fourth");
    assert!(!mmst.on_offer(now, &three, own), "never itself");
}

#[test]
fn mmst_handles_an_empty_or_inconsistent_state() {
    let own = key(1);
    let mut mmst = Mmst::new(1);
    let now = Instant::now();
    let empty = SwarmState { own, connected: vec![], candidates: vec![], all: vec![] };
    assert!(mmst.update(now, &empty).is_empty());
    assert_eq!(mmst.poll_timeout(), None);
    // own listed everywhere, duplicates, unsorted: no panic, never a link to itself.
    let odd = SwarmState {
        own,
        connected: vec![own, key(9), key(9)],
        candidates: vec![own, key(3), key(2)],
        all: vec![],
    };
    for action in mmst.update(now, &odd) {
        assert_ne!(action, Action::Connect(own));
        assert_ne!(action, Action::Disconnect(own));
    }
    let config = MmstConfig::default().with_originate(0).with_max_peers(0).with_sample_size(0);
    let mut degenerate = Mmst::with_config(config, 1);
    let _ = degenerate.update(now, &odd);
    let _ = degenerate.on_offer(now, &odd, key(5));
}

#[test]
fn plain_dxos_rules_can_partition() {
    // DXOS's rules alone (no ring): count the 200-peer runs that end split into islands.
    let plain = MmstConfig::default().with_keep_ring(false);
    let mut split = 0;
    for seed in 0..10 {
        let mut sim = Sim::mmst(200, seed, plain);
        sim.settle(HOUR);
        assert!(sim.max_degree() <= 4);
        if !sim.is_connected() {
            split += 1;
        }
        eprintln!("plain seed {seed}: {} components, degrees {:?}", sim.components(), sim.degrees());
    }
    eprintln!("plain DXOS rules: {split} of 10 runs split");
    assert!(split > 0, "expected the plain rules to split some runs");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mmst_small_swarms_settle_connected_within_max_degree(n in 5usize..=40, seed in any::<u64>()) {
        let mut sim = Sim::mmst(n, seed, MmstConfig::default());
        prop_assert!(sim.settle(HOUR), "still changing after an hour");
        prop_assert!(sim.is_connected(), "{} components", sim.components());
        prop_assert!(sim.max_degree() <= 4, "degrees {:?}", sim.degrees());
    }
}

#[test]
fn mmst_peer_above_max_sheds_its_farthest_links_one_per_interval() {
    let mut sim = settled_mmst(40, 11);
    // Force three extra links onto peer 20, from peers far from it in key order that have room
    // (so only peer 20 is above max and only it sheds links).
    let extra: Vec<usize> = [0, 1, 2, 3, 4, 5, 34, 35, 36, 37, 38, 39]
        .into_iter()
        .filter(|j| !sim.peers[20].links.contains(j) && sim.peers[*j].links.len() < 4)
        .take(3)
        .collect();
    assert_eq!(extra.len(), 3);
    for j in &extra {
        sim.link(20, *j);
    }
    let before = sim.peers[20].links.len();
    assert!(before > 4);
    let own = sim.peers[20].key;
    let ring = [19, 21];
    let mut expected: Vec<usize> =
        sim.peers[20].links.iter().copied().filter(|j| !ring.contains(j)).collect();
    expected.sort_by_key(|j| std::cmp::Reverse(xor_distance(&own, &sim.peers[*j].key)));
    let start = sim.log.len();
    assert!(sim.settle(HOUR));
    let dropped: Vec<(Duration, usize)> = sim.log[start..]
        .iter()
        .filter(|(_, i, a)| *i == 20 && matches!(a, Action::Disconnect(_)))
        .map(|(t, _, a)| match a {
            Action::Disconnect(k) => (*t, sim.index(k).expect("known")),
            Action::Connect(_) => unreachable!(),
        })
        .collect();
    let dropped_peers: Vec<usize> = dropped.iter().map(|(_, j)| *j).collect();
    assert_eq!(dropped_peers, expected[..before - 4].to_vec(), "farthest first");
    assert!(dropped.windows(2).all(|w| w[1].0 - w[0].0 >= Duration::from_secs(10)));
    assert!(sim.is_connected());
    assert!(sim.max_degree() <= 4);
}

#[test]
fn mmst_stops_asking_refusing_peers_until_the_swarm_changes() {
    // Ring neighbours connected; two other candidates that (in this scenario) refuse every offer.
    let own = key(0x40);
    let state = SwarmState {
        own,
        connected: vec![key(0x3f), key(0x41)],
        candidates: vec![key(0x01), key(0xf0)],
        all: vec![key(0x01), key(0x3f), key(0x41), key(0xf0)],
    };
    let mut mmst = Mmst::new(5);
    let t0 = Instant::now();
    let secs = |s| t0 + Duration::from_secs(s);
    assert_eq!(mmst.update(t0, &state), vec![Action::Connect(key(0x01))], "the nearest first");
    assert_eq!(mmst.update(secs(10), &state), vec![Action::Connect(key(0xf0))], "then the next");
    assert!(mmst.update(secs(20), &state).is_empty(), "every candidate tried: give up");
    assert_eq!(mmst.poll_timeout(), None);
    assert!(mmst.update(secs(600), &state).is_empty(), "still the same swarm");
    let changed = SwarmState { candidates: vec![key(0x01), key(0x50), key(0xf0)], ..state };
    assert_eq!(mmst.update(secs(610), &changed), vec![Action::Connect(key(0x50))], "a new peer: try again");
}

/// Seeds per swarm size in the soak: spread over the range the long soak used (200 per size),
/// so each run checks every size with differently drawn keys.
const SOAK_SEEDS_PER_SIZE: u64 = 6;
/// Seeds of the 200-peer part of the soak (six rounds of churn each).
const SOAK_LARGE_SEEDS: std::ops::Range<u64> = 100..103;

/// MMST swarms of every size from 5 to 40 and of 200 peers, several seeds each, churn after
/// settling: connected and within the degree bound every time it settles. A shortened form of a
/// longer soak (200 seeds per size, 40 large seeds), sized for the normal suite (a few seconds
/// in debug builds); raise the two constants above for a long run.
#[test]
fn mmst_soak_many_sizes_and_seeds_stay_connected_under_churn() {
    let stride = 200 / SOAK_SEEDS_PER_SIZE;
    for n in 5..=40 {
        for seed in (0..SOAK_SEEDS_PER_SIZE).map(|i| i * stride + n as u64 % stride) {
            let mut sim = settled_mmst(n, seed * 7919 + n as u64);
            churn(&mut sim, (n / 5).max(1), 1, seed);
        }
    }
    for seed in SOAK_LARGE_SEEDS {
        let mut sim = settled_mmst(200, seed);
        churn(&mut sim, 20, 6, seed);
    }
}

/// `rounds` times: `count` random peers leave, the swarm settles, they rejoin, it settles; checks
/// connectivity and the degree bound after each settle.
fn churn(sim: &mut Sim, count: usize, rounds: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed + 1000);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..sim.peers.len()).collect();
        order.shuffle(&mut rng);
        let leaving = &order[..count];
        for i in leaving {
            sim.leave(*i);
        }
        check_settled(sim, &format!("seed {seed} round {round}, after leaving"));
        for i in leaving {
            sim.rejoin(*i);
        }
        check_settled(sim, &format!("seed {seed} round {round}, after rejoining"));
    }
}

fn check_settled(sim: &mut Sim, what: &str) {
    assert!(sim.settle(HOUR), "{what}: still changing after an hour");
    assert!(sim.is_connected(), "{what}: {} components", sim.components());
    assert!(sim.max_degree() <= 4, "{what}: degrees {:?}", sim.degrees());
}
