//! The message ids a peer saw lately, in bounded memory.
//!
//! Two generations: new ids go into the current one; it becomes the previous one (and the old
//! previous one is forgotten) once a period passes or it is full. An id is thus remembered for at
//! least one period unless more than a generation's worth of new ids arrive in that time, and
//! never more than two generations are held.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use mesh_keys::PublicKey;

#[derive(Debug)]
pub(crate) struct Seen {
    current: HashSet<PublicKey>,
    previous: HashSet<PublicKey>,
    /// Ids per generation at most.
    capacity: usize,
    period: Duration,
    rotated_at: Instant,
}

impl Seen {
    pub(crate) fn new(capacity: usize, period: Duration, now: Instant) -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
            capacity: capacity.max(1),
            period,
            rotated_at: now,
        }
    }

    /// Records `id`; returns whether it is new.
    pub(crate) fn insert(&mut self, id: PublicKey, now: Instant) -> bool {
        if now.saturating_duration_since(self.rotated_at) >= self.period {
            self.rotate(now);
        }
        if self.current.contains(&id) || self.previous.contains(&id) {
            return false;
        }
        if self.current.len() >= self.capacity {
            self.rotate(now);
        }
        self.current.insert(id);
        true
    }

    /// Whether `id` was seen lately.
    pub(crate) fn contains(&self, id: &PublicKey) -> bool {
        self.current.contains(id) || self.previous.contains(id)
    }

    /// Ids held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn rotate(&mut self, now: Instant) {
        self.previous = std::mem::take(&mut self.current);
        self.rotated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_within_a_period() {
        let now = Instant::now();
        let mut seen = Seen::new(16, Duration::from_secs(60), now);
        let id = PublicKey::random();
        assert!(seen.insert(id, now));
        assert!(!seen.insert(id, now + Duration::from_secs(59)));
        // One rotation later it is still known; two rotations forget it.
        assert!(!seen.insert(id, now + Duration::from_secs(61)));
        assert!(seen.insert(id, now + Duration::from_secs(200)));
    }

    #[test]
    fn memory_stays_within_two_generations() {
        let now = Instant::now();
        let mut seen = Seen::new(100, Duration::from_secs(3600), now);
        for _ in 0..10_000 {
            assert!(seen.insert(PublicKey::random(), now));
            assert!(seen.len() <= 200);
        }
        // The last full generation is still remembered.
        let recent = PublicKey::random();
        seen.insert(recent, now);
        for _ in 0..99 {
            seen.insert(PublicKey::random(), now);
        }
        assert!(!seen.insert(recent, now));
    }
}
