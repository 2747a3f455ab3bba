//! The shared state: who is in which topic, whose inbox is open where, and which keys are claimed by
//! authenticated sessions.
//!
//! State is split into shards by key, each behind its own short-held lock, so joins and relays on
//! different topics and recipients never wait for each other. Nothing here awaits: deliveries to
//! other connections are `try_send`s on their bounded queues.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use bytes::Bytes;
use mesh_proto::{
    Message, Timestamp,
    dxos::mesh::signal::{SwarmEvent, swarm_event},
};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// A topic or peer key as the client sent it (DXOS clients may use any bytes as a topic).
pub(crate) type Key = Bytes;

const SHARDS: usize = 64;

/// What the hub sends to a connection's task.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded `SwarmEvent` for the Join stream `stream`.
    Event { stream: i32, event: Bytes },
    /// An encoded `Message` for the inbox stream `stream`.
    Message { stream: i32, message: Bytes },
    /// The Join or inbox stream `stream` is withdrawn: an authenticated session claimed its key.
    Revoke { stream: i32 },
}

/// How the hub reaches one connection.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) conn: u64,
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// Set to close a connection that cannot keep up with swarm events. Its queue is full when
    /// this is set, so its task is awake to see the flag: a plain atomic is enough, and cheaper
    /// to check on every wake-up than a cancellation token.
    pub(crate) overloaded: Arc<AtomicBool>,
}

/// One open stream of one connection.
#[derive(Debug, Clone)]
struct Registration {
    endpoint: Endpoint,
    stream: i32,
    authenticated: bool,
}

impl Registration {
    fn is(&self, conn: u64, stream: i32) -> bool {
        self.endpoint.conn == conn && self.stream == stream
    }
}

impl Endpoint {
    /// Queues a swarm event; a connection whose queue is full is closed rather than left with a
    /// wrong view of the swarm.
    fn send_event(&self, stream: i32, event: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Outbound::Event { stream, event }) {
            self.overloaded.store(true, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Member {
    since: Timestamp,
    registrations: Vec<Registration>,
}

#[derive(Debug, Default)]
struct Topic {
    members: HashMap<Key, Member>,
}

struct Sharded<T> {
    shards: Vec<Mutex<HashMap<Key, T>>>,
    hasher: RandomState,
}

impl<T> Sharded<T> {
    fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn lock(&self, key: &[u8]) -> MutexGuard<'_, HashMap<Key, T>> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // A poisoned shard means a panic while it was held, which is a bug; its map is still
        // structurally valid, so keep serving rather than take the whole server down.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Membership, inboxes and key claims for the whole server.
///
/// Locks are taken one at a time (never a second shard while holding one), so they cannot
/// deadlock.
pub(crate) struct Hub {
    topics: Sharded<Topic>,
    /// The topics each peer is a member of, to find its registrations when its key is claimed.
    memberships: Sharded<HashSet<Key>>,
    inboxes: Sharded<Vec<Registration>>,
    claims: Sharded<usize>,
    metrics: Arc<Metrics>,
}

fn encode_event(event: swarm_event::Event) -> Bytes {
    Bytes::from(SwarmEvent { event: Some(event) }.encode_to_vec())
}

fn peer_available(peer: &Key, since: Timestamp) -> Bytes {
    encode_event(swarm_event::Event::PeerAvailable(swarm_event::PeerAvailable {
        peer: peer.to_vec(),
        since: Some(since),
        until: None,
        announce_back_to_host: None,
    }))
}

fn peer_left(peer: &Key) -> Bytes {
    encode_event(swarm_event::Event::PeerLeft(swarm_event::PeerLeft { peer: peer.to_vec() }))
}

impl Hub {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            topics: Sharded::new(),
            memberships: Sharded::new(),
            inboxes: Sharded::new(),
            claims: Sharded::new(),
            metrics,
        }
    }

    /// Adds stream `stream` of `endpoint` as `peer` in `topic`. Returns the PeerAvailable events of
    /// the other members, for the joiner; the other members are told about the joiner.
    pub(crate) fn join(
        &self,
        topic: &Key,
        peer: &Key,
        endpoint: &Endpoint,
        stream: i32,
        authenticated: bool,
        now: SystemTime,
    ) -> Vec<Bytes> {
        let mut topics = self.topics.lock(topic);
        let state = match topics.entry(topic.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.metrics.topics.inc();
                entry.insert(Topic::default())
            }
        };
        let registration = Registration { endpoint: endpoint.clone(), stream, authenticated };
        let since = match state.members.entry(peer.clone()) {
            Entry::Occupied(entry) => {
                let member = entry.into_mut();
                member.registrations.push(registration);
                member.since
            }
            Entry::Vacant(entry) => {
                self.metrics.members.inc();
                let since = Timestamp::from(now);
                entry.insert(Member { since, registrations: vec![registration] });
                since
            }
        };

        let announcement = peer_available(peer, since);
        let mut for_joiner = Vec::new();
        for (key, member) in state.members.iter().filter(|(key, _)| *key != peer) {
            for other in &member.registrations {
                other.endpoint.send_event(other.stream, announcement.clone());
            }
            for_joiner.push(peer_available(key, member.since));
        }
        drop(topics);
        self.memberships.lock(peer).entry(peer.clone()).or_default().insert(topic.clone());
        for_joiner
    }

    /// Removes stream `stream` of connection `conn` from `topic`; when it was the peer's last
    /// registration there, the other members get PeerLeft.
    pub(crate) fn leave(&self, topic: &Key, peer: &Key, conn: u64, stream: i32) {
        self.remove_registrations(topic, peer, |registration| registration.is(conn, stream));
    }

    /// Removes the registrations of `peer` in `topic` that `matches` picks, and the member itself
    /// with its last registration (announcing PeerLeft). Returns the removed registrations.
    fn remove_registrations(
        &self,
        topic: &Key,
        peer: &Key,
        matches: impl Fn(&Registration) -> bool,
    ) -> Vec<Registration> {
        let mut topics = self.topics.lock(topic);
        let Some(state) = topics.get_mut(topic) else { return Vec::new() };
        let Some(member) = state.members.get_mut(peer) else { return Vec::new() };
        let (removed, kept) = std::mem::take(&mut member.registrations).into_iter().partition(|r| matches(r));
        member.registrations = kept;
        if !member.registrations.is_empty() {
            return removed;
        }
        state.members.remove(peer);
        self.metrics.members.dec();
        let departure = peer_left(peer);
        for member in state.members.values() {
            for other in &member.registrations {
                other.endpoint.send_event(other.stream, departure.clone());
            }
        }
        if state.members.is_empty() {
            topics.remove(topic);
            self.metrics.topics.dec();
        }
        drop(topics);
        let mut memberships = self.memberships.lock(peer);
        if let Some(joined) = memberships.get_mut(peer) {
            joined.remove(topic);
            if joined.is_empty() {
                memberships.remove(peer);
            }
        }
        removed
    }

    /// Opens an inbox stream for `peer`.
    pub(crate) fn subscribe(&self, peer: &Key, endpoint: &Endpoint, stream: i32, authenticated: bool) {
        let registration = Registration { endpoint: endpoint.clone(), stream, authenticated };
        self.inboxes.lock(peer).entry(peer.clone()).or_default().push(registration);
    }

    /// Closes an inbox stream.
    pub(crate) fn unsubscribe(&self, peer: &Key, conn: u64, stream: i32) {
        let mut inboxes = self.inboxes.lock(peer);
        if let Some(registrations) = inboxes.get_mut(peer) {
            registrations.retain(|registration| !registration.is(conn, stream));
            if registrations.is_empty() {
                inboxes.remove(peer);
            }
        }
    }

    /// Delivers an encoded `Message` to every open inbox of `recipient`; returns how many took it.
    pub(crate) fn relay(&self, recipient: &Key, message: &Bytes) -> usize {
        let inboxes = self.inboxes.lock(recipient);
        let Some(registrations) = inboxes.get(recipient) else { return 0 };
        let mut delivered = 0;
        for registration in registrations {
            let outbound = Outbound::Message { stream: registration.stream, message: message.clone() };
            match registration.endpoint.tx.try_send(outbound) {
                Ok(()) => delivered += 1,
                // Relay is best effort: the reliable messenger above resends.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.messages_dropped.inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.metrics.messages_relayed.inc_by(delivered as u64);
        delivered
    }

    /// Whether an authenticated session holds `peer`.
    pub(crate) fn is_claimed(&self, peer: &Key) -> bool {
        self.claims.lock(peer).contains_key(peer)
    }

    /// Records that an authenticated session holds `peer`, and withdraws what unauthenticated
    /// sessions opened as `peer` (its joins and its inboxes): from now on only proven holders use it.
    pub(crate) fn claim(&self, peer: &Key) {
        *self.claims.lock(peer).entry(peer.clone()).or_default() += 1;
        let topics: Vec<Key> = self
            .memberships
            .lock(peer)
            .get(peer)
            .map(|joined| joined.iter().cloned().collect())
            .unwrap_or_default();
        for topic in topics {
            for revoked in self.remove_registrations(&topic, peer, |registration| !registration.authenticated)
            {
                let _ = revoked.endpoint.tx.try_send(Outbound::Revoke { stream: revoked.stream });
            }
        }
        let mut inboxes = self.inboxes.lock(peer);
        if let Some(registrations) = inboxes.get_mut(peer) {
            registrations.retain(|registration| {
                if !registration.authenticated {
                    let _ =
                        registration.endpoint.tx.try_send(Outbound::Revoke { stream: registration.stream });
                }
                registration.authenticated
            });
        }
    }

    /// Releases one authenticated session's hold on `peer`.
    pub(crate) fn release(&self, peer: &Key) {
        let mut claims = self.claims.lock(peer);
        if let Some(count) = claims.get_mut(peer) {
            *count -= 1;
            if *count == 0 {
                claims.remove(peer);
            }
        }
    }
}
