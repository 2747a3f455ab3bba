//! What the other servers hold, as they told this one: per server, per topic, its members.
//!
//! Pure bookkeeping (no I/O, the clock passed in), so every rule is tested here: stale news is
//! ignored by sequence number, snapshots replace what a server held in a topic, and a server that
//! goes silent, says goodbye or is forgotten takes its members with it.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use mesh_proto::Timestamp;

use super::ServerId;
use crate::hub::Key;

/// A membership change to apply to the hub.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// `server` holds `peer` in `topic`.
    Present { topic: Key, peer: Key, server: ServerId, since: Timestamp },
    /// `server` no longer holds `peer` in `topic`.
    Absent { topic: Key, peer: Key, server: ServerId },
}

/// How long a departure is remembered, so that a snapshot it overtook is still recognised as
/// older news for that peer.
const TOMBSTONE: Duration = Duration::from_secs(30);

/// The last news of one peer from one server: present since a time, or gone.
#[derive(Debug, Clone, Copy)]
struct News {
    seq: u64,
    since: Option<Timestamp>,
    at: Instant,
}

#[derive(Debug, Default)]
struct RemoteTopic {
    peers: HashMap<Key, News>,
    present: usize,
    /// The sequence number of the last snapshot applied: it spoke for every peer, so news older
    /// than it is stale whatever peer it is about.
    floor: u64,
    /// When that snapshot was applied, for dropping the entry once nothing is left to remember.
    floor_at: Option<Instant>,
    /// A snapshot arriving in parts: its sequence number and the members so far.
    pending: Option<(u64, HashMap<Key, Timestamp>)>,
}

impl RemoteTopic {
    /// Applies news of `peer` unless newer news of it was applied already.
    fn apply(&mut self, topic: &Key, peer: &Key, news: News, server: ServerId, max: usize) -> Option<Change> {
        let old = self.peers.get(peer).copied();
        if news.seq < self.floor || old.is_some_and(|old| old.seq >= news.seq) {
            return None;
        }
        let was_present = old.is_some_and(|old| old.since.is_some());
        match news.since {
            Some(since) => {
                if !was_present && self.present >= max {
                    return None;
                }
                self.present += usize::from(!was_present);
                self.peers.insert(peer.clone(), news);
                let unchanged = old.and_then(|old| old.since) == Some(since);
                (!unchanged).then(|| Change::Present {
                    topic: topic.clone(),
                    peer: peer.clone(),
                    server,
                    since,
                })
            }
            None => {
                self.peers.insert(peer.clone(), news);
                self.present -= usize::from(was_present);
                was_present.then(|| Change::Absent { topic: topic.clone(), peer: peer.clone(), server })
            }
        }
    }

    fn members(&self) -> impl Iterator<Item = &Key> {
        self.peers.iter().filter(|(_, news)| news.since.is_some()).map(|(peer, _)| peer)
    }
}

#[derive(Debug)]
struct RemoteServer {
    last_heard: Instant,
    topics: HashMap<Key, RemoteTopic>,
}

/// The other servers, their topics and members.
#[derive(Debug)]
pub(crate) struct Remote {
    servers: HashMap<ServerId, RemoteServer>,
    /// A server not heard from for this long is gone.
    timeout: Duration,
    /// The most members kept per server and topic, and the most servers.
    max_members: usize,
    max_servers: usize,
}

impl Remote {
    pub(crate) fn new(timeout: Duration, max_members: usize, max_servers: usize) -> Self {
        Self { servers: HashMap::new(), timeout, max_members, max_servers }
    }

    /// How many servers are alive as far as this one knows.
    pub(crate) fn servers(&self) -> usize {
        self.servers.len()
    }

    /// Server `server` spoke. Returns true when it was not known to be alive (new, or back after
    /// being given up): it should then be asked for its members.
    pub(crate) fn heard(&mut self, server: ServerId, now: Instant) -> bool {
        if let Some(known) = self.servers.get_mut(&server) {
            known.last_heard = now;
            return false;
        }
        if self.servers.len() >= self.max_servers {
            return false;
        }
        self.servers.insert(server, RemoteServer { last_heard: now, topics: HashMap::new() });
        true
    }

    /// One member joined (`since` set) or left a topic on `server`.
    pub(crate) fn presence(
        &mut self,
        server: ServerId,
        seq: u64,
        topic: &Key,
        peer: &Key,
        since: Option<Timestamp>,
        now: Instant,
    ) -> Vec<Change> {
        let max = self.max_members;
        let Some(known) = self.servers.get_mut(&server) else { return Vec::new() };
        let state = known.topics.entry(topic.clone()).or_default();
        state.apply(topic, peer, News { seq, since, at: now }, server, max).into_iter().collect()
    }

    /// One part of a snapshot of `server`'s members in `topic`. With the last part, what the
    /// snapshot says replaces what the server held there, peer by peer, except where news newer
    /// than the snapshot was applied already.
    pub(crate) fn snapshot(
        &mut self,
        server: ServerId,
        seq: u64,
        topic: &Key,
        members: impl IntoIterator<Item = (Key, Timestamp)>,
        last: bool,
        now: Instant,
    ) -> Vec<Change> {
        let max = self.max_members;
        let Some(known) = self.servers.get_mut(&server) else { return Vec::new() };
        let state = known.topics.entry(topic.clone()).or_default();
        let pending = match &mut state.pending {
            Some((pending_seq, pending)) if *pending_seq == seq => pending,
            slot => &mut slot.insert((seq, HashMap::new())).1,
        };
        for (peer, since) in members {
            if pending.len() < max {
                pending.insert(peer, since);
            }
        }
        if !last {
            return Vec::new();
        }
        let (_, snapshot) = state.pending.take().unwrap_or_default();
        if seq <= state.floor {
            return Vec::new();
        }
        state.floor = seq;
        state.floor_at = Some(now);
        let gone: Vec<Key> = state.members().filter(|peer| !snapshot.contains_key(*peer)).cloned().collect();
        let mut changes = Vec::new();
        for peer in gone {
            changes.extend(state.apply(topic, &peer, News { seq, since: None, at: now }, server, max));
        }
        for (peer, since) in snapshot {
            changes.extend(state.apply(topic, &peer, News { seq, since: Some(since), at: now }, server, max));
        }
        changes
    }

    /// `server` is gone (it said goodbye): every member it held leaves.
    pub(crate) fn gone(&mut self, server: ServerId) -> Vec<Change> {
        let Some(gone) = self.servers.remove(&server) else { return Vec::new() };
        let mut changes = Vec::new();
        for (topic, state) in gone.topics {
            changes.extend(state.members().map(|peer| Change::Absent {
                topic: topic.clone(),
                peer: peer.clone(),
                server,
            }));
        }
        changes
    }

    /// Gives up servers silent for longer than the timeout (their members leave), and forgets
    /// old departures. Returns the changes and the servers given up.
    pub(crate) fn expire(&mut self, now: Instant) -> (Vec<Change>, Vec<ServerId>) {
        let silent: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(_, server)| now.saturating_duration_since(server.last_heard) > self.timeout)
            .map(|(id, _)| *id)
            .collect();
        let changes = silent.iter().flat_map(|server| self.gone(*server)).collect();
        for server in self.servers.values_mut() {
            server.topics.retain(|_, topic| {
                topic.peers.retain(|_, news| {
                    news.since.is_some() || now.saturating_duration_since(news.at) < TOMBSTONE
                });
                let recent = topic.floor_at.is_some_and(|at| now.saturating_duration_since(at) < TOMBSTONE);
                !topic.peers.is_empty() || topic.pending.is_some() || recent
            });
        }
        (changes, silent)
    }

    /// This server stopped listening to `topic`: what the others held there is forgotten.
    pub(crate) fn forget_topic(&mut self, topic: &Key) -> Vec<Change> {
        let mut changes = Vec::new();
        for (server, state) in &mut self.servers {
            if let Some(forgotten) = state.topics.remove(topic) {
                changes.extend(forgotten.members().map(|peer| Change::Absent {
                    topic: topic.clone(),
                    peer: peer.clone(),
                    server: *server,
                }));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn key(name: &str) -> Key {
        Key::copy_from_slice(name.as_bytes())
    }

    fn since() -> Timestamp {
        Timestamp { seconds: 1, nanos: 0 }
    }

    fn remote(now: Instant) -> Remote {
        let mut remote = Remote::new(3 * SECOND, 100, 10);
        assert!(remote.heard(7, now), "a new server is news");
        assert!(!remote.heard(7, now), "a known one is not");
        remote
    }

    #[test]
    fn a_snapshot_overtaken_by_a_departure_keeps_the_departure_and_the_other_members() {
        let now = Instant::now();
        let mut remote = remote(now);
        let (topic, gone, stays) = (key("t"), key("gone"), key("stays"));
        // The departure (seq 2) arrives before the snapshot taken earlier (seq 1).
        assert_eq!(remote.presence(7, 2, &topic, &gone, None, now), vec![], "unknown peer leaving: nothing");
        let changes =
            remote.snapshot(7, 1, &topic, [(gone.clone(), since()), (stays.clone(), since())], true, now);
        assert_eq!(
            changes,
            vec![Change::Present { topic: topic.clone(), peer: stays, server: 7, since: since() }]
        );
        assert_eq!(
            remote.presence(7, 2, &topic, &gone, Some(since()), now),
            vec![],
            "a repeated seq is stale"
        );
    }

    #[test]
    fn a_snapshot_replaces_what_the_server_held_once_complete() {
        let now = Instant::now();
        let mut remote = remote(now);
        let topic = key("t");
        remote.presence(7, 1, &topic, &key("old"), Some(since()), now);
        assert_eq!(remote.snapshot(7, 2, &topic, [(key("a"), since())], false, now), vec![]);
        let changes = remote.snapshot(7, 2, &topic, [(key("b"), since())], true, now);
        assert!(changes.contains(&Change::Absent { topic: topic.clone(), peer: key("old"), server: 7 }));
        let present = changes.iter().filter(|change| matches!(change, Change::Present { .. })).count();
        assert_eq!(present, 2, "both parts' members are present");
    }

    #[test]
    fn a_silent_server_takes_its_members_with_it() {
        let now = Instant::now();
        let mut remote = remote(now);
        remote.presence(7, 1, &key("t"), &key("p"), Some(since()), now);
        assert_eq!(remote.expire(now + 2 * SECOND).0, vec![], "not silent long enough");
        let (changes, gone) = remote.expire(now + 4 * SECOND);
        assert_eq!(gone, vec![7]);
        assert_eq!(changes, vec![Change::Absent { topic: key("t"), peer: key("p"), server: 7 }]);
        let unknown = remote.presence(7, 2, &key("t"), &key("q"), Some(since()), now);
        assert_eq!(unknown, vec![], "a server given up is unknown until heard again");
        assert!(remote.heard(7, now + 5 * SECOND), "back: news again");
    }

    #[test]
    fn members_and_servers_are_bounded() {
        let now = Instant::now();
        let mut remote = Remote::new(SECOND, 2, 1);
        remote.heard(1, now);
        assert!(!remote.heard(2, now), "beyond the server limit");
        let topic = key("t");
        for (seq, name) in ["a", "b", "c"].iter().enumerate() {
            remote.presence(1, seq as u64 + 1, &topic, &key(name), Some(since()), now);
        }
        assert_eq!(remote.forget_topic(&topic).len(), 2);
    }

    mod reordering {
        use std::collections::BTreeSet;

        use proptest::{collection::vec, prelude::*, sample::Index};

        use super::*;

        /// What one server does with its peers in one topic.
        #[derive(Debug, Clone)]
        enum Op {
            Join(u8),
            Leave(u8),
            Snapshot,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![(0u8..6).prop_map(Op::Join), (0u8..6).prop_map(Op::Leave), Just(Op::Snapshot)]
        }

        /// A message as the server would publish it.
        #[derive(Debug, Clone)]
        enum Published {
            Presence(u8, bool),
            Snapshot(BTreeSet<u8>),
        }

        proptest! {
            /// However NATS reorders one server's presence changes and snapshots, and whichever of
            /// them it loses, once a snapshot taken after the last change has arrived (as a
            /// resynchronisation sends) the receiver holds exactly the members the server holds.
            #[test]
            fn reordered_and_lost_news_ends_in_the_senders_state_after_a_snapshot(
                ops in vec(op(), 1..40),
                order in vec((any::<Index>(), any::<bool>()), 41),
            ) {
                let mut members = BTreeSet::new();
                let mut published = Vec::new();
                for op in ops {
                    match op {
                        Op::Join(peer) => if members.insert(peer) { published.push(Published::Presence(peer, true)) },
                        Op::Leave(peer) => if members.remove(&peer) { published.push(Published::Presence(peer, false)) },
                        Op::Snapshot => published.push(Published::Snapshot(members.clone())),
                    }
                }
                published.push(Published::Snapshot(members.clone()));
                let last = published.len() as u64;
                let mut pending: Vec<(u64, Published)> =
                    published.into_iter().enumerate().map(|(seq, message)| (seq as u64 + 1, message)).collect();
                let now = Instant::now();
                let mut remote = Remote::new(SECOND, 100, 10);
                remote.heard(7, now);
                let topic = key("t");
                let peer = |index: u8| Key::from(vec![index]);
                let mut held: BTreeSet<u8> = BTreeSet::new();
                let mut choices = order.into_iter();
                while !pending.is_empty() {
                    let (at, lost) =
                        choices.next().map_or((0, false), |(choice, lost)| (choice.index(pending.len()), lost));
                    let (seq, message) = pending.remove(at);
                    if lost && seq != last {
                        continue;
                    }
                    let changes = match message {
                        Published::Presence(index, present) => {
                            remote.presence(7, seq, &topic, &peer(index), present.then(since), now)
                        }
                        Published::Snapshot(set) => {
                            remote.snapshot(7, seq, &topic, set.iter().map(|index| (peer(*index), since())), true, now)
                        }
                    };
                    for change in changes {
                        match change {
                            Change::Present { peer, .. } => held.insert(peer[0]),
                            Change::Absent { peer, .. } => held.remove(&peer[0]),
                        };
                    }
                }
                prop_assert_eq!(held, members);
            }
        }
    }
}
