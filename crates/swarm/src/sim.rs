//! A deterministic, virtual-time network of swarm cores: signaling, the reliable messenger and the
//! transports are modelled, everything else is the real [`Swarm`].
//!
//! Each node is one peer's [`Swarm`] for one topic. Messages between nodes arrive after a latency;
//! a transport connects once both sides opened it and the responder received the initiator's
//! signal (as with TCP's `{port}`), so signal batching and buffering are exercised too. Nothing
//! here reads a clock: the harness jumps from one event to the next, so thousands of peers run in
//! little time and the same seed always gives the same run.
//!
//! A seeded network model ([`model`]) adds per-pair latency, message loss (as the reliable
//! messenger's retries) and partitions; a bounded signaling view (`SimConfig::view`, see
//! `mesh_signal::view`) makes swarms of 10,000 peers affordable. With the defaults (one fixed latency, no loss,
//! no partition, everyone told about everyone) the network behaves exactly as before they existed.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    time::{Duration, Instant},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{Struct, dxos::mesh::swarm::SwarmMessage};
use mesh_transport::TransportError;
use rand::{SeedableRng, rngs::SmallRng};

use crate::{ConnectionError, Event, Output, Swarm};

pub mod model;

use mesh_signal::view::IntroductionView;
pub use model::{Latency, Partition};

/// How the modelled network behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One-way delays of signaling messages and PeerAvailable / PeerLeft: each pair of peers
    /// (and each peer's path to the signal server) gets one, drawn from `seed` (see [`model`]).
    pub latency: Latency,
    /// Time from both sides opening a transport to it being up.
    pub transport_delay: Duration,
    /// How long the reliable messenger tries before reporting a message undeliverable.
    pub undeliverable_after: Duration,
    /// Probability that one attempt of a swarm message is lost (the messenger retries it).
    pub loss: f64,
    /// Peers each joining peer is introduced to (see `mesh_signal::view`); `None` tells everyone about
    /// everyone, as DXOS's signal server does.
    pub view: Option<usize>,
    /// Seeds the latencies, the losses and the bounded view.
    pub seed: u64,
    /// Keep every event for [`Sim::events`]; large runs turn this off to bound memory.
    pub record_events: bool,
}

/// What the modelled signaling and messenger carried so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Swarm messages (offers, answers, signal batches) delivered.
    pub messages: u64,
    /// PeerAvailable notices delivered.
    pub available: u64,
    /// PeerLeft notices delivered.
    pub left: u64,
    /// Swarm messages that arrived late after lost attempts.
    pub retried: u64,
    /// Swarm messages reported undeliverable (lost, partitioned or to a peer that is gone).
    pub undeliverable: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            transport_delay: Duration::from_millis(20),
            undeliverable_after: Duration::from_secs(10),
            loss: 0.0,
            view: None,
            seed: 0,
            record_events: true,
        }
    }
}

#[derive(Debug, Clone)]
enum Delivery {
    Available { to: PublicKey, peer: PublicKey },
    Left { to: PublicKey, peer: PublicKey },
    Message { from: PublicKey, to: PublicKey, message: SwarmMessage, incarnation: u64 },
    Undeliverable { to: PublicKey, peer: PublicKey, session: PublicKey, incarnation: u64 },
    Connected { to: PublicKey, peer: PublicKey, session: PublicKey, incarnation: u64 },
    Closed { to: PublicKey, peer: PublicKey, session: PublicKey, incarnation: u64 },
}

struct Node {
    swarm: Swarm,
    /// Bumped on every restart, so deliveries to an earlier incarnation are dropped.
    incarnation: u64,
}

/// A transport being opened or open between two nodes.
#[derive(Debug, Default)]
struct Link {
    opened: BTreeSet<PublicKey>,
    initiator: Option<PublicKey>,
    /// The responder received the initiator's signal.
    signalled: bool,
    up: bool,
}

/// A virtual network of swarm nodes on one topic.
pub struct Sim {
    config: SimConfig,
    topic: DiscoveryKey,
    now: Instant,
    nodes: BTreeMap<PublicKey, Node>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    deliveries: BTreeMap<u64, Delivery>,
    next_seq: u64,
    links: BTreeMap<PublicKey, Link>,
    events: Vec<(Instant, PublicKey, Event)>,
    /// Links that never come up (to test timeouts).
    broken_links: bool,
    /// Nodes whose swarm may have outputs waiting.
    dirty: BTreeSet<PublicKey>,
    /// (when, node): each node's timer as last seen; stale entries are skipped.
    timers: BinaryHeap<Reverse<(Instant, PublicKey)>>,
    /// Draws message losses.
    rng: SmallRng,
    /// The current split of the network, if any.
    partition: Option<Partition>,
    /// The bounded signaling view, if `config.view` is set.
    directory: Option<IntroductionView<PublicKey>>,
    stats: SimStats,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.nodes.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// An empty network for `topic`, starting at `start`.
    pub fn new(config: SimConfig, topic: DiscoveryKey, start: Instant) -> Self {
        let rng = SmallRng::seed_from_u64(model::mix(config.seed));
        let directory = config.view.map(|view| IntroductionView::new(view, model::mix(config.seed ^ 0x5157)));
        Self {
            rng,
            partition: None,
            directory,
            stats: SimStats::default(),
            config,
            topic,
            now: start,
            nodes: BTreeMap::new(),
            queue: BinaryHeap::new(),
            deliveries: BTreeMap::new(),
            next_seq: 0,
            links: BTreeMap::new(),
            events: Vec::new(),
            broken_links: false,
            dirty: BTreeSet::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Makes every transport opened from now on never come up.
    pub fn break_links(&mut self, broken: bool) {
        self.broken_links = broken;
    }

    /// Adds a node (a peer joining the topic); the others learn of it through signaling.
    pub fn join(&mut self, swarm: Swarm) {
        let own = swarm.own();
        let incarnation = self.nodes.get(&own).map_or(0, |node| node.incarnation + 1);
        let others: Vec<PublicKey> = self.nodes.keys().copied().filter(|k| *k != own).collect();
        self.nodes.insert(own, Node { swarm, incarnation });
        self.dirty.insert(own);
        if let Some(directory) = &mut self.directory {
            for (a, b) in directory.join(own) {
                self.introduce(a, b);
            }
            return;
        }
        for other in others {
            self.introduce(other, own);
        }
    }

    /// Removes a node as if its process died: its transports drop, and signaling reports it gone.
    pub fn crash(&mut self, peer: PublicKey) {
        if self.nodes.remove(&peer).is_none() {
            return;
        }
        let sessions: Vec<PublicKey> = self
            .links
            .iter()
            .filter(|(_, link)| link.opened.contains(&peer))
            .map(|(session, _)| *session)
            .collect();
        for session in sessions {
            self.drop_link(session, peer);
        }
        if let Some(directory) = &mut self.directory {
            let (knew, pairs) = directory.leave(&peer);
            for other in knew {
                self.schedule(self.server_delay(&other), Delivery::Left { to: other, peer });
            }
            for (a, b) in pairs {
                self.introduce(a, b);
            }
            return;
        }
        let others: Vec<PublicKey> = self.nodes.keys().copied().collect();
        for other in others {
            self.schedule(self.server_delay(&other), Delivery::Left { to: other, peer });
        }
    }

    /// Makes a node leave cleanly: it closes its connections, then signaling reports it gone.
    pub fn leave(&mut self, peer: PublicKey) {
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&peer) {
            node.swarm.leave(now);
        }
        self.drain(peer);
        self.crash(peer);
    }

    /// The swarm of `peer`.
    pub fn swarm(&self, peer: &PublicKey) -> Option<&Swarm> {
        self.nodes.get(peer).map(|node| &node.swarm)
    }

    /// Every node's peers with a connection that is up.
    pub fn connections(&self) -> BTreeMap<PublicKey, Vec<PublicKey>> {
        self.nodes.iter().map(|(key, node)| (*key, node.swarm.connected())).collect()
    }

    /// The events the nodes reported so far, with when and by whom (none if
    /// [`SimConfig::record_events`] is off).
    pub fn events(&self) -> &[(Instant, PublicKey, Event)] {
        &self.events
    }

    /// The live nodes, sorted.
    pub fn peers(&self) -> impl Iterator<Item = &PublicKey> {
        self.nodes.keys()
    }

    /// How many nodes are live.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is live.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// What signaling and the messenger carried so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The current partition, if any.
    pub fn partition(&self) -> Option<Partition> {
        self.partition
    }

    /// Splits the network (`Some`) or heals it (`None`). Transports between groups of the new
    /// split close at once, with an error at both ends; swarm messages between groups are
    /// undeliverable from now on. Messages already on their way still arrive.
    pub fn set_partition(&mut self, partition: Option<Partition>) {
        self.partition = partition.filter(|p| p.groups > 1);
        if self.partition.is_none() {
            return;
        }
        let cut: Vec<(PublicKey, Vec<PublicKey>)> = self
            .links
            .iter()
            .filter(|(_, link)| {
                let mut ends = link.opened.iter();
                matches!((ends.next(), ends.next()), (Some(a), Some(b)) if !self.reachable(a, b))
            })
            .map(|(session, link)| (*session, link.opened.iter().copied().collect()))
            .collect();
        for (session, ends) in cut {
            self.links.remove(&session);
            if let [a, b] = ends[..] {
                for (to, from) in [(a, b), (b, a)] {
                    let incarnation = self.incarnation(&to);
                    self.schedule(Duration::ZERO, Delivery::Closed { to, peer: from, session, incarnation });
                }
            }
        }
    }

    /// Whether `a` and `b` are on the same side of the current partition.
    pub fn reachable(&self, a: &PublicKey, b: &PublicKey) -> bool {
        self.partition.is_none_or(|p| p.group(a) == p.group(b))
    }

    /// Closes `peer`'s transport of its connection to `remote` with an error, as a failing
    /// network would.
    pub fn fail_connection(&mut self, peer: PublicKey, remote: PublicKey) {
        let sessions: Vec<PublicKey> = self
            .links
            .iter()
            .filter(|(_, link)| link.opened.contains(&peer) && link.opened.contains(&remote))
            .map(|(session, _)| *session)
            .collect();
        for session in sessions {
            self.links.remove(&session);
            for (to, from) in [(peer, remote), (remote, peer)] {
                let incarnation = self.incarnation(&to);
                self.schedule(Duration::ZERO, Delivery::Closed { to, peer: from, session, incarnation });
            }
        }
    }

    /// Runs until `deadline`, or until nothing is left to happen.
    ///
    /// Only nodes that received something are drained, and timers sit in a heap, so a step costs
    /// little however many nodes there are.
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            while let Some(key) = self.dirty.pop_first() {
                self.drain(key);
                if let Some(at) = self.nodes.get(&key).and_then(|node| node.swarm.poll_timeout()) {
                    self.timers.push(Reverse((at, key)));
                }
            }
            let next_delivery = self.queue.peek().map(|Reverse((at, _))| *at);
            let next_timer = self.next_timer();
            let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else { break };
            if next > deadline {
                break;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
                if at > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(delivery) = self.deliveries.remove(&seq) {
                    self.deliver(delivery);
                }
            }
            let now = self.now;
            while let Some(Reverse((at, key))) = self.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.timers.pop();
                if let Some(node) = self.nodes.get_mut(&key)
                    && node.swarm.poll_timeout().is_some_and(|due| due <= now)
                {
                    node.swarm.handle_timeout(now);
                    self.dirty.insert(key);
                }
            }
        }
        self.now = self.now.max(deadline);
    }

    /// The earliest timer still current (stale heap entries are dropped on the way).
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            let current = self.nodes.get(&key).and_then(|node| node.swarm.poll_timeout());
            if current == Some(at) {
                return Some(at);
            }
            self.timers.pop();
            if let Some(current) = current {
                self.timers.push(Reverse((current, key)));
            }
        }
        None
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline);
    }

    fn incarnation(&self, peer: &PublicKey) -> u64 {
        self.nodes.get(peer).map_or(u64::MAX, |node| node.incarnation)
    }

    /// Tells `a` about `b` and `b` about `a` (the bounded view's introductions).
    fn introduce(&mut self, a: PublicKey, b: PublicKey) {
        self.schedule(self.server_delay(&a), Delivery::Available { to: a, peer: b });
        self.schedule(self.server_delay(&b), Delivery::Available { to: b, peer: a });
    }

    /// The signal server's delay to `to`.
    fn server_delay(&self, to: &PublicKey) -> Duration {
        self.config.latency.delay(model::key_hash(self.config.seed, to))
    }

    /// The modelled one-way delay between `a` and `b` (the same both ways), before any loss.
    pub fn pair_delay(&self, a: &PublicKey, b: &PublicKey) -> Duration {
        self.config.latency.delay(model::pair_hash(self.config.seed, a, b))
    }

    fn schedule(&mut self, delay: Duration, delivery: Delivery) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse((self.now + delay, seq)));
        self.deliveries.insert(seq, delivery);
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        let to = match &delivery {
            Delivery::Available { to, .. }
            | Delivery::Left { to, .. }
            | Delivery::Message { to, .. }
            | Delivery::Undeliverable { to, .. }
            | Delivery::Connected { to, .. }
            | Delivery::Closed { to, .. } => *to,
        };
        self.dirty.insert(to);
        match &delivery {
            Delivery::Available { .. } => self.stats.available += 1,
            Delivery::Left { .. } => self.stats.left += 1,
            Delivery::Message { .. } => self.stats.messages += 1,
            Delivery::Undeliverable { .. } => self.stats.undeliverable += 1,
            Delivery::Connected { .. } | Delivery::Closed { .. } => {}
        }
        let Some(node) = self.nodes.get_mut(&to) else { return };
        let incarnation = match &delivery {
            Delivery::Available { .. } | Delivery::Left { .. } => None,
            Delivery::Message { incarnation, .. }
            | Delivery::Undeliverable { incarnation, .. }
            | Delivery::Connected { incarnation, .. }
            | Delivery::Closed { incarnation, .. } => Some(*incarnation),
        };
        // Meant for an earlier incarnation of a peer that restarted since.
        if incarnation.is_some_and(|i| i != node.incarnation) {
            return;
        }
        let swarm = &mut node.swarm;
        match delivery {
            Delivery::Available { peer, .. } => swarm.handle_peer_available(now, peer),
            Delivery::Left { peer, .. } => swarm.handle_peer_left(now, peer),
            Delivery::Message { from, message, .. } => swarm.handle_message(now, from, message),
            Delivery::Undeliverable { peer, session, .. } => swarm.handle_undeliverable(now, peer, session),
            Delivery::Connected { peer, session, .. } => swarm.handle_transport_connected(now, peer, session),
            Delivery::Closed { peer, session, .. } => {
                let error = ConnectionError::Transport(TransportError::Closed);
                swarm.handle_transport_closed(now, peer, session, Some(error));
            }
        }
    }

    /// Carries out everything `peer`'s swarm asked for.
    fn drain(&mut self, peer: PublicKey) {
        loop {
            let Some(output) = self.nodes.get_mut(&peer).and_then(|node| node.swarm.poll_output()) else {
                return;
            };
            self.execute(peer, output);
        }
    }

    fn execute(&mut self, from: PublicKey, output: Output) {
        match output {
            Output::Send { to, message } => {
                let fate = if self.nodes.contains_key(&to) && self.reachable(&from, &to) {
                    model::retry_delay(&mut self.rng, self.config.loss, self.config.undeliverable_after)
                } else {
                    None
                };
                if let Some(extra) = fate {
                    if !extra.is_zero() {
                        self.stats.retried += 1;
                    }
                    let incarnation = self.incarnation(&to);
                    let delay = self.pair_delay(&from, &to) + extra;
                    self.schedule(delay, Delivery::Message { from, to, message, incarnation });
                } else if let Some(session) = message.session_id.as_ref().and_then(|s| s.to_key().ok()) {
                    let incarnation = self.incarnation(&from);
                    let delay = self.config.undeliverable_after;
                    self.schedule(
                        delay,
                        Delivery::Undeliverable { to: from, peer: to, session, incarnation },
                    );
                }
            }
            Output::OpenTransport { peer, session, initiator, .. } => {
                let link = self.links.entry(session).or_default();
                link.opened.insert(from);
                if initiator {
                    link.initiator = Some(from);
                    // Like TCP's {port}: the initiator's transport announces itself to the responder.
                    let now = self.now;
                    if let Some(node) = self.nodes.get_mut(&from) {
                        node.swarm.handle_transport_signal(
                            now,
                            peer,
                            session,
                            Struct::new().with("link", session.to_hex()),
                        );
                    }
                }
                self.check_link(session, from, peer);
            }
            Output::SignalTransport { peer, session, .. } => {
                if let Some(link) = self.links.get_mut(&session)
                    && link.initiator == Some(peer)
                {
                    link.signalled = true;
                }
                self.check_link(session, from, peer);
            }
            Output::CloseTransport { peer, session } => {
                let _ = peer;
                self.drop_link(session, from);
            }
            Output::Event(event) => {
                if self.config.record_events {
                    self.events.push((self.now, from, event));
                }
            }
        }
    }

    /// Brings a link up once both sides opened it and the responder heard from the initiator.
    fn check_link(&mut self, session: PublicKey, a: PublicKey, b: PublicKey) {
        let broken = self.broken_links || !self.reachable(&a, &b);
        let Some(link) = self.links.get_mut(&session) else { return };
        if link.up || broken || link.opened.len() < 2 || !link.signalled {
            return;
        }
        link.up = true;
        for (to, peer) in [(a, b), (b, a)] {
            let incarnation = self.incarnation(&to);
            self.schedule(
                self.config.transport_delay,
                Delivery::Connected { to, peer, session, incarnation },
            );
        }
    }

    /// `closer` closed its end: the other end learns of it.
    fn drop_link(&mut self, session: PublicKey, closer: PublicKey) {
        let Some(link) = self.links.remove(&session) else { return };
        for other in link.opened.iter().copied().filter(|p| *p != closer) {
            let incarnation = self.incarnation(&other);
            self.schedule(
                self.pair_delay(&closer, &other),
                Delivery::Closed { to: other, peer: closer, session, incarnation },
            );
        }
    }

    /// The topic of this network.
    pub fn topic(&self) -> DiscoveryKey {
        self.topic
    }
}
