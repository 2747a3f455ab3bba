//! At most so many connections being set up at once; the rest wait their turn in arrival order.

use std::collections::VecDeque;

use mesh_keys::PublicKey;

/// Places for connections being set up, keyed by session id.
#[derive(Debug)]
pub(crate) struct Limiter {
    max: usize,
    active: Vec<PublicKey>,
    waiting: VecDeque<(PublicKey, PublicKey)>,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        Self { max: max.max(1), active: Vec::new(), waiting: VecDeque::new() }
    }

    /// Asks for a place for `session` (of `peer`); true if it has one now, otherwise it waits.
    pub(crate) fn request(&mut self, peer: PublicKey, session: PublicKey) -> bool {
        if self.active.len() < self.max {
            self.active.push(session);
            true
        } else {
            self.waiting.push_back((peer, session));
            false
        }
    }

    /// Whether a request now would get a place at once.
    pub(crate) fn has_room(&self) -> bool {
        self.active.len() < self.max
    }

    /// `session` is set up or gone; returns the (peer, session) pairs that got a place.
    pub(crate) fn done(&mut self, session: PublicKey) -> Vec<(PublicKey, PublicKey)> {
        self.active.retain(|active| *active != session);
        self.waiting.retain(|(_, waiting)| *waiting != session);
        let mut granted = Vec::new();
        while self.active.len() < self.max {
            let Some((peer, session)) = self.waiting.pop_front() else { break };
            self.active.push(session);
            granted.push((peer, session));
        }
        granted
    }

    /// Sessions holding a place.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key as key;

    #[test]
    fn waits_in_order_and_hands_places_on() {
        let mut limiter = Limiter::new(2);
        assert!(limiter.request(key(1), key(11)));
        assert!(limiter.request(key(2), key(12)));
        assert!(!limiter.request(key(3), key(13)));
        assert!(!limiter.request(key(4), key(14)));
        assert_eq!(limiter.done(key(14)), vec![], "a waiting session that is gone just leaves the queue");
        assert_eq!(limiter.done(key(11)), vec![(key(3), key(13))]);
        assert_eq!(limiter.active(), 2);
    }
}
