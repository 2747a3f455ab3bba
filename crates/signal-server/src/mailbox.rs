//! What the hub has to tell one connection beyond relayed messages: swarm events for its Join
//! streams and the streams withdrawn from it.
//!
//! Swarm events are not queued one per change: for each stream and peer the mailbox keeps only
//! the net change the client has not been told yet. A burst of joins therefore becomes a snapshot
//! of at most one entry per peer, written as the connection drains, and never overflows a queue.
//! Per stream, the entries are bounded by the peers the client knows plus the topic's members, so
//! by twice the topic member limit.
//!
//! The hub posts while holding a topic's lock; the mailbox's own lock is a leaf (nothing is locked
//! while it is held), so the lock order is always topic, then mailbox.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use mesh_proto::Timestamp;

use crate::hub::Key;

/// A membership change the hub reports to one member stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    /// The peer is in the topic since `since`. `new` says it was not a member before (rather
    /// than joining again from another stream while still a member).
    Available { since: Timestamp, new: bool },
    /// The peer left the topic.
    Left,
}

/// What one member stream has not been told yet about one peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unsent {
    /// The client does not know the peer, which arrived: PeerAvailable.
    Arrived(Timestamp),
    /// The client knows the peer, which joined again from another stream: PeerAvailable again.
    Reannounced(Timestamp),
    /// The client knows the peer, which left: PeerLeft.
    Left,
    /// The client knows the peer, which left and came back: PeerLeft, then PeerAvailable, so the
    /// client drops what it held for the old session (DXOS keeps a set of peers: a PeerAvailable
    /// alone would be a repeat it ignores).
    Rejoined(Timestamp),
}

impl Unsent {
    /// The net change after `change` follows `previous` (`None`: nothing unsent). `None` means
    /// the client needs to hear nothing: the peer came and went before it was told.
    fn then(previous: Option<Self>, change: Change) -> Option<Self> {
        use Unsent::*;
        match (previous, change) {
            (None, Change::Available { since, new: true }) => Some(Arrived(since)),
            (None, Change::Available { since, new: false }) => Some(Reannounced(since)),
            (None | Some(Reannounced(_) | Rejoined(_) | Left), Change::Left) => Some(Left),
            (Some(Arrived(_)), Change::Left) => None,
            (Some(Arrived(_)), Change::Available { since, .. }) => Some(Arrived(since)),
            (Some(Reannounced(_)), Change::Available { since, .. }) => Some(Reannounced(since)),
            (Some(Left | Rejoined(_)), Change::Available { since, .. }) => Some(Rejoined(since)),
        }
    }
}

/// Everything waiting for a connection, taken at once by its task.
#[derive(Debug, Default)]
pub(crate) struct Post {
    /// Per Join stream, the unsent change per peer.
    pub(crate) events: HashMap<i32, HashMap<Key, Unsent>>,
    /// Streams withdrawn because an authenticated session claimed their key.
    pub(crate) revoked: Vec<i32>,
}

impl Post {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.revoked.is_empty()
    }
}

/// What posting a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Posted {
    /// The mailbox was empty: the connection must be woken to take it.
    pub(crate) wake: bool,
    /// The change merged with one already waiting instead of adding an entry.
    pub(crate) coalesced: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    post: Mutex<Post>,
    /// Whether `post` may hold something: the connection checks this on every wake-up without
    /// taking the lock. Written only with the lock held.
    ready: AtomicBool,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Post> {
        // A poisoned lock means a panic while it was held, which is a bug; the post is still
        // structurally valid, so keep serving.
        self.post.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `change` of `peer` for Join stream `stream`.
    pub(crate) fn post_event(&self, stream: i32, peer: &Key, change: Change) -> Posted {
        let mut post = self.lock();
        let peers = post.events.entry(stream).or_default();
        let previous = peers.remove(peer);
        let coalesced = previous.is_some();
        if let Some(unsent) = Unsent::then(previous, change) {
            peers.insert(peer.clone(), unsent);
        } else if peers.is_empty() {
            post.events.remove(&stream);
        }
        Posted { wake: self.mark_ready(), coalesced }
    }

    /// Records that `stream` was withdrawn; its unsent events no longer matter.
    pub(crate) fn post_revoke(&self, stream: i32) -> Posted {
        let mut post = self.lock();
        post.events.remove(&stream);
        post.revoked.push(stream);
        Posted { wake: self.mark_ready(), coalesced: false }
    }

    /// Sets the ready flag; returns whether it was clear. Called with the lock held.
    fn mark_ready(&self) -> bool {
        !self.ready.swap(true, Ordering::Relaxed)
    }

    /// Whether something may be waiting.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Takes everything waiting.
    pub(crate) fn take(&self) -> Post {
        let mut post = self.lock();
        self.ready.store(false, Ordering::Relaxed);
        std::mem::take(&mut *post)
    }

    /// Drops what waits for `stream`, which the client closed: should it reuse the id, the new
    /// stream must get neither the old one's events nor its withdrawal (which would make the
    /// session forget a stream the hub still holds).
    pub(crate) fn forget(&self, stream: i32) {
        let mut post = self.lock();
        post.events.remove(&stream);
        post.revoked.retain(|revoked| *revoked != stream);
        if post.is_empty() {
            self.ready.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn new(seconds: i64) -> Change {
        Change::Available { since: at(seconds), new: true }
    }

    fn again(seconds: i64) -> Change {
        Change::Available { since: at(seconds), new: false }
    }

    fn net(changes: &[Change]) -> Option<Unsent> {
        let mailbox = Mailbox::default();
        let peer = Key::from_static(b"peer");
        for change in changes {
            mailbox.post_event(1, &peer, *change);
        }
        mailbox.take().events.get(&1).and_then(|peers| peers.get(&peer).copied())
    }

    #[test]
    fn a_peer_that_came_and_went_unseen_is_not_mentioned() {
        assert_eq!(net(&[new(1), Change::Left]), None);
        assert_eq!(net(&[new(1), Change::Left, new(2), Change::Left]), None);
    }

    #[test]
    fn a_known_peer_that_left_and_came_back_is_reported_as_both() {
        assert_eq!(net(&[Change::Left, new(2)]), Some(Unsent::Rejoined(at(2))));
        assert_eq!(net(&[Change::Left, new(2), Change::Left, new(3)]), Some(Unsent::Rejoined(at(3))));
        assert_eq!(net(&[Change::Left, new(2), Change::Left]), Some(Unsent::Left));
    }

    #[test]
    fn repeats_keep_the_latest_state() {
        assert_eq!(net(&[new(1), again(1)]), Some(Unsent::Arrived(at(1))));
        assert_eq!(net(&[again(1), again(4)]), Some(Unsent::Reannounced(at(4))));
        // A known peer announced again and then gone: the client must hear that it left.
        assert_eq!(net(&[again(1), Change::Left]), Some(Unsent::Left));
    }

    #[test]
    fn a_burst_becomes_one_entry_per_peer_and_one_wake_up() {
        let mailbox = Mailbox::default();
        let mut wakes = 0;
        let mut coalesced = 0;
        for round in 0..10 {
            for peer in 0..50u8 {
                let posted = mailbox.post_event(1, &Key::from(vec![peer]), new(round));
                wakes += usize::from(posted.wake);
                coalesced += usize::from(posted.coalesced);
            }
        }
        assert_eq!((wakes, coalesced), (1, 450));
        assert!(mailbox.is_ready());
        let post = mailbox.take();
        assert_eq!(post.events[&1].len(), 50);
        assert!(!mailbox.is_ready());
        assert!(mailbox.post_event(1, &Key::from_static(b"x"), new(1)).wake, "empty again");
    }

    #[test]
    fn revoking_a_stream_drops_its_events_and_forgetting_clears_them() {
        let mailbox = Mailbox::default();
        mailbox.post_event(1, &Key::from_static(b"a"), new(1));
        mailbox.post_event(2, &Key::from_static(b"a"), new(1));
        mailbox.post_revoke(1);
        mailbox.post_revoke(4);
        mailbox.forget(2);
        mailbox.forget(4);
        let post = mailbox.take();
        assert!(post.events.is_empty());
        assert_eq!(post.revoked, [1]);
        mailbox.post_event(3, &Key::from_static(b"a"), new(1));
        mailbox.forget(3);
        assert!(!mailbox.is_ready(), "nothing left to take");
    }
}
