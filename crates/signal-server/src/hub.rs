//! The shared state: who is in which topic, whose inbox is open where, and which keys are claimed by
//! authenticated sessions.
//!
//! State is split into shards by key, each behind its own short-held lock, so joins and relays on
//! different topics and recipients never wait for each other. Nothing here awaits: relayed
//! messages are `try_send`s on the recipients' bounded queues, and swarm events and withdrawals
//! are posted to their [`Mailbox`]es, which coalesce instead of growing.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use mesh_proto::Timestamp;
use mesh_signal::view::IntroductionView;
use tokio::sync::mpsc;

use crate::{
    IntroductionView as ViewConfig, Limits, RateLimit,
    federation::{Outbox, ServerId},
    limiter::TokenBucket,
    mailbox::{Change, Mailbox, Posted},
    metrics::Metrics,
};

mod topic;

use topic::{Member, Topic};

/// A topic or peer key as the client sent it (DXOS clients may use any bytes as a topic).
pub(crate) type Key = Bytes;

const SHARDS: usize = 64;

/// What the hub queues for a connection's task.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded `Message` for the inbox stream `stream`.
    Message { stream: i32, message: Bytes },
    /// The connection's [`Mailbox`] has something: wake up and take it.
    Wake,
}

/// How the hub reaches one connection: relayed messages go through its bounded queue (dropped
/// when full: the reliable messenger resends), swarm events and withdrawals through its
/// [`Mailbox`], which coalesces instead of overflowing.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) conn: u64,
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) mailbox: Arc<Mailbox>,
}

/// One open stream of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) endpoint: Endpoint,
    pub(crate) stream: i32,
    /// Whether the session proved the stream's key.
    pub(crate) authenticated: bool,
}

impl Registration {
    fn is(&self, conn: u64, stream: i32) -> bool {
        self.endpoint.conn == conn && self.stream == stream
    }

    fn post_event(&self, peer: &Key, change: Change, metrics: &Metrics) {
        let posted = self.endpoint.mailbox.post_event(self.stream, peer, change);
        if posted.coalesced {
            metrics.events_coalesced.inc();
        }
        self.endpoint.wake(posted);
    }

    fn revoke(&self) {
        self.endpoint.wake(self.endpoint.mailbox.post_revoke(self.stream));
    }
}

impl Endpoint {
    fn wake(&self, posted: Posted) {
        // A full queue needs no wake-up: the connection is awake to drain it, and it looks at its
        // mailbox every time round.
        if posted.wake {
            let _ = self.tx.try_send(Outbound::Wake);
        }
    }
}

/// Why the hub refused a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    /// The topic's join rate limit is spent.
    RateLimited,
    /// The topic has as many join streams as it may.
    TopicFull,
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
/// Shard locks are taken one at a time (never a second shard while holding one); the only lock
/// taken under one is a connection's mailbox lock, under which nothing is taken. So they cannot
/// deadlock.
pub(crate) struct Hub {
    max_topic_members: usize,
    max_inboxes_per_peer: usize,
    join_rate_per_topic: RateLimit,
    /// The bounded view's settings, its seed drawn.
    introduction_view: Option<ViewConfig>,
    topics: Sharded<Topic>,
    /// The topics each peer is a member of, to find its registrations when its key is claimed.
    memberships: Sharded<HashSet<Key>>,
    inboxes: Sharded<Vec<Registration>>,
    claims: Sharded<usize>,
    metrics: Arc<Metrics>,
    /// Where local membership and inbox changes go for the federated servers, when federated.
    outbox: Option<Arc<Outbox>>,
}

impl Hub {
    pub(crate) fn new(metrics: Arc<Metrics>, limits: &Limits, outbox: Option<Arc<Outbox>>) -> Self {
        Self {
            max_topic_members: limits.max_topic_members,
            max_inboxes_per_peer: limits.max_inboxes_per_peer,
            join_rate_per_topic: limits.join_rate_per_topic,
            introduction_view: limits
                .introduction_view
                .map(|view| ViewConfig { seed: Some(view.seed.unwrap_or_else(rand::random)), ..view }),
            topics: Sharded::new(),
            memberships: Sharded::new(),
            inboxes: Sharded::new(),
            claims: Sharded::new(),
            metrics,
            outbox,
        }
    }

    /// Adds `registration` as `peer` in `topic`, unless the topic is full or its join rate is
    /// spent. Returns the other members and their arrival times, for the joiner; the other members
    /// are told about the joiner.
    pub(crate) fn join(
        &self,
        topic: &Key,
        peer: &Key,
        registration: Registration,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Vec<(Key, Timestamp)>, JoinRefusal> {
        let mut topics = self.topics.lock(topic);
        let state = topics.entry(topic.clone()).or_insert_with(|| self.new_topic(now));
        let refusal = if state.streams >= self.max_topic_members {
            Some(JoinRefusal::TopicFull)
        } else if !state.joins.try_take(now) {
            Some(JoinRefusal::RateLimited)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // An empty topic is not kept, so its fresh rate limit costs nothing.
            if state.members.is_empty() {
                topics.remove(topic);
            }
            return Err(refusal);
        }
        if state.members.is_empty() {
            self.metrics.topics.inc();
        }
        state.streams += 1;
        let (new, first_here) = match state.members.entry(peer.clone()) {
            Entry::Occupied(entry) => {
                let member = entry.into_mut();
                let first_here = member.registrations.is_empty();
                if first_here {
                    state.remote_only -= 1;
                }
                member.registrations.push(registration);
                (false, first_here)
            }
            Entry::Vacant(entry) => {
                self.metrics.members.inc();
                entry.insert(Member::local(Timestamp::from(wall), registration));
                (true, true)
            }
        };
        let for_joiner = state.arrive(peer, new, &self.metrics);
        drop(topics);
        self.memberships.lock(peer).entry(peer.clone()).or_default().insert(topic.clone());
        if first_here && let Some(outbox) = &self.outbox {
            outbox.topic_changed(topic);
        }
        Ok(for_joiner)
    }

    fn new_topic(&self, now: Instant) -> Topic {
        let view = self.introduction_view.map(|view| {
            IntroductionView::new(view.view, view.seed.unwrap_or_default())
                .everyone_up_to(view.everyone_up_to)
        });
        Topic::new(TokenBucket::new(self.join_rate_per_topic, now), view)
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
        let (removed, kept): (Vec<_>, _) =
            std::mem::take(&mut member.registrations).into_iter().partition(|r| matches(r));
        member.registrations = kept;
        state.streams -= removed.len();
        if removed.is_empty() || !member.registrations.is_empty() {
            return removed;
        }
        if member.is_gone() {
            state.members.remove(peer);
            self.metrics.members.dec();
            state.depart(peer, &self.metrics);
        } else {
            // Other servers still hold the peer: it stays a member here.
            state.remote_only += 1;
        }
        if state.members.is_empty() {
            topics.remove(topic);
            self.metrics.topics.dec();
        }
        drop(topics);
        if let Some(outbox) = &self.outbox {
            outbox.topic_changed(topic);
        }
        let mut memberships = self.memberships.lock(peer);
        if let Some(joined) = memberships.get_mut(peer) {
            joined.remove(topic);
            if joined.is_empty() {
                memberships.remove(peer);
            }
        }
        removed
    }

    /// Opens an inbox stream for `peer`, unless it has as many as it may. Returns whether it did.
    pub(crate) fn subscribe(&self, peer: &Key, registration: Registration) -> bool {
        let mut inboxes = self.inboxes.lock(peer);
        if inboxes.get(peer).map_or(0, Vec::len) >= self.max_inboxes_per_peer {
            return false;
        }
        let registrations = inboxes.entry(peer.clone()).or_default();
        registrations.push(registration);
        let first = registrations.len() == 1;
        drop(inboxes);
        if first && let Some(outbox) = &self.outbox {
            outbox.inbox_changed(peer);
        }
        true
    }

    /// Closes an inbox stream.
    pub(crate) fn unsubscribe(&self, peer: &Key, conn: u64, stream: i32) {
        let mut inboxes = self.inboxes.lock(peer);
        if let Some(registrations) = inboxes.get_mut(peer) {
            registrations.retain(|registration| !registration.is(conn, stream));
            if registrations.is_empty() {
                inboxes.remove(peer);
                drop(inboxes);
                if let Some(outbox) = &self.outbox {
                    outbox.inbox_changed(peer);
                }
            }
        }
    }

    /// Whether `peer` has an inbox open on this server.
    pub(crate) fn has_inbox(&self, peer: &Key) -> bool {
        self.inboxes.lock(peer).contains_key(peer)
    }

    /// Delivers an encoded `Message` from a client to every open inbox of `recipient`; when
    /// federated and no inbox here took it, hands it to the servers that hold the recipient.
    pub(crate) fn relay(&self, recipient: &Key, message: &Bytes) {
        let Some(outbox) = &self.outbox else {
            self.deliver(recipient, message);
            return;
        };
        // A client using several servers sends through each: what arrives twice goes on once.
        if !outbox.first_sighting(message, Instant::now()) {
            return;
        }
        if self.deliver(recipient, message) == 0 {
            outbox.relay(recipient, message);
        }
    }

    /// Delivers an encoded `Message` to every open inbox of `recipient` here; returns how many
    /// took it.
    pub(crate) fn deliver(&self, recipient: &Key, message: &Bytes) -> usize {
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
        // Withdrawals go through the mailboxes, which never drop them: a connection whose queue
        // is full still learns that its streams are gone.
        for topic in topics {
            for revoked in self.remove_registrations(&topic, peer, |registration| !registration.authenticated)
            {
                revoked.revoke();
            }
        }
        let mut inboxes = self.inboxes.lock(peer);
        if let Some(registrations) = inboxes.get_mut(peer) {
            registrations.retain(|registration| {
                if !registration.authenticated {
                    registration.revoke();
                }
                registration.authenticated
            });
            if registrations.is_empty() {
                inboxes.remove(peer);
                drop(inboxes);
                if let Some(outbox) = &self.outbox {
                    outbox.inbox_changed(peer);
                }
            }
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

    /// Another server holds `peer` in `topic` since `since`. Ignored for topics without local
    /// members (nobody here to tell) and beyond the topic's member limit.
    pub(crate) fn remote_present(&self, topic: &Key, peer: &Key, server: ServerId, since: Timestamp) {
        let mut topics = self.topics.lock(topic);
        let Some(state) = topics.get_mut(topic) else { return };
        match state.members.entry(peer.clone()) {
            Entry::Occupied(entry) => {
                let member = entry.into_mut();
                if !member.servers.contains(&server) {
                    member.servers.push(server);
                }
            }
            Entry::Vacant(entry) => {
                if state.remote_only >= self.max_topic_members {
                    self.metrics.federation_members_refused.inc();
                    return;
                }
                self.metrics.members.inc();
                state.remote_only += 1;
                entry.insert(Member::remote(since, server));
                state.arrive(peer, true, &self.metrics);
            }
        }
    }

    /// Server `server` no longer holds `peer` in `topic`.
    pub(crate) fn remote_absent(&self, topic: &Key, peer: &Key, server: ServerId) {
        let mut topics = self.topics.lock(topic);
        let Some(state) = topics.get_mut(topic) else { return };
        let Some(member) = state.members.get_mut(peer) else { return };
        member.servers.retain(|held| *held != server);
        if !member.is_gone() {
            return;
        }
        state.members.remove(peer);
        state.remote_only -= 1;
        self.metrics.members.dec();
        state.depart(peer, &self.metrics);
        if state.members.is_empty() {
            topics.remove(topic);
            self.metrics.topics.dec();
        }
    }

    /// The members of `topic` with streams on this server, and their arrival times.
    pub(crate) fn local_members(&self, topic: &Key) -> Vec<(Key, Timestamp)> {
        let topics = self.topics.lock(topic);
        let Some(state) = topics.get(topic) else { return Vec::new() };
        state.local_members().map(|(peer, member)| (peer.clone(), member.since)).collect()
    }

    /// Every topic with members on this server.
    pub(crate) fn local_topics(&self) -> Vec<Key> {
        let mut local = Vec::new();
        for shard in &self.topics.shards {
            let topics = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            local
                .extend(topics.iter().filter(|(_, state)| state.streams > 0).map(|(topic, _)| topic.clone()));
        }
        local
    }
}
