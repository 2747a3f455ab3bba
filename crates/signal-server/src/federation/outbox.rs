//! What the hub hands to the federation task: which topics and inboxes changed here, messages for
//! peers this server does not hold, and the messages seen lately (to drop copies).
//!
//! The hub never waits on NATS: changes are marked dirty and coalesce until the task looks (the
//! task then reads the hub's current state, so nothing is lost however many changes piled up),
//! and relayed messages go through a bounded queue, dropped when it is full, as a full client
//! queue drops them: the reliable messenger above resends.

use std::{
    collections::{HashSet, VecDeque},
    mem,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::{hub::Key, metrics::Metrics};

/// Messages waiting to be published; more are dropped.
const RELAY_QUEUE: usize = 4096;
/// The most messages remembered at once; the oldest are forgotten first.
const REMEMBERED: usize = 65_536;

/// Topics and inboxes whose local state changed since the federation task last looked.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) topics: HashSet<Key>,
    pub(crate) inboxes: HashSet<Key>,
}

#[derive(Debug, Default)]
struct Recent {
    digests: HashSet<[u8; 16]>,
    order: VecDeque<(Instant, [u8; 16])>,
}

/// The hub's side of the federation.
#[derive(Debug)]
pub(crate) struct Outbox {
    dirty: Mutex<Dirty>,
    wake: Notify,
    relays: mpsc::Sender<(Key, Bytes)>,
    recent: Mutex<Recent>,
    /// How long a message is remembered to drop its copies. Copies sent through several servers
    /// arrive within milliseconds; a messenger resends after a second or more, and a resend must
    /// not be dropped.
    window: Duration,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// An outbox, and the receiving end of its relay queue for the federation task.
    pub(crate) fn new(window: Duration, metrics: Arc<Metrics>) -> (Arc<Self>, mpsc::Receiver<(Key, Bytes)>) {
        let (relays, receiver) = mpsc::channel(RELAY_QUEUE);
        let outbox = Self {
            dirty: Mutex::default(),
            wake: Notify::new(),
            relays,
            recent: Mutex::default(),
            window,
            metrics,
        };
        (Arc::new(outbox), receiver)
    }

    /// The local members of `topic` changed.
    pub(crate) fn topic_changed(&self, topic: &Key) {
        if lock(&self.dirty).topics.insert(topic.clone()) {
            self.wake.notify_one();
        }
    }

    /// `peer`'s first inbox here opened, or its last closed.
    pub(crate) fn inbox_changed(&self, peer: &Key) {
        if lock(&self.dirty).inboxes.insert(peer.clone()) {
            self.wake.notify_one();
        }
    }

    /// Hands a message for `recipient`, which has no inbox here, to the other servers.
    pub(crate) fn relay(&self, recipient: &Key, message: &Bytes) {
        if self.relays.try_send((recipient.clone(), message.clone())).is_err() {
            self.metrics.federation_dropped.inc();
        }
    }

    /// Whether `message`, arriving `now`, was not seen within the window (and remembers it).
    pub(crate) fn first_sighting(&self, message: &[u8], now: Instant) -> bool {
        let hash = blake3::hash(message);
        let mut digest = [0; 16];
        digest.copy_from_slice(&hash.as_bytes()[..16]);
        let mut recent = lock(&self.recent);
        while let Some((at, old)) = recent.order.front().copied() {
            if now.duration_since(at) < self.window && recent.order.len() < REMEMBERED {
                break;
            }
            recent.order.pop_front();
            recent.digests.remove(&old);
        }
        if !recent.digests.insert(digest) {
            self.metrics.federation_duplicates.inc();
            return false;
        }
        recent.order.push_back((now, digest));
        true
    }

    /// Waits until a topic or inbox changed, and takes what changed.
    pub(crate) async fn changes(&self) -> Dirty {
        loop {
            let dirty = self.take_changes();
            if !dirty.topics.is_empty() || !dirty.inboxes.is_empty() {
                return dirty;
            }
            self.wake.notified().await;
        }
    }

    /// Takes what changed, if anything.
    pub(crate) fn take_changes(&self) -> Dirty {
        mem::take(&mut *lock(&self.dirty))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid sets.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_dropped_but_the_next_message_and_a_later_resend_are_not() {
        let (outbox, _relays) = Outbox::new(Duration::from_millis(500), Arc::new(Metrics::new()));
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        assert!(outbox.first_sighting(b"one", at(0)));
        assert!(!outbox.first_sighting(b"one", at(100)), "a copy arriving at once is dropped");
        assert!(outbox.first_sighting(b"two", at(200)));
        assert!(outbox.first_sighting(b"one", at(1_000)), "a resend after the window goes through");
        assert_eq!(outbox.metrics.federation_duplicates.get(), 1);
    }

    #[tokio::test]
    async fn changes_coalesce_until_taken() {
        let (outbox, _relays) = Outbox::new(Duration::from_millis(500), Arc::new(Metrics::new()));
        let topic = Key::from_static(b"topic");
        outbox.topic_changed(&topic);
        outbox.topic_changed(&topic);
        outbox.inbox_changed(&Key::from_static(b"peer"));
        let dirty = outbox.changes().await;
        assert_eq!((dirty.topics.len(), dirty.inboxes.len()), (1, 1));
    }
}
