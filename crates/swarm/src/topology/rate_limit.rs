//! A one-change-per-interval limiter with a wake-up instant, for MMST.
//!
//! DXOS's MMST makes at most one change per 10 s so a swarm settles gradually instead of flapping;
//! ours does the same but, being sans-IO, also says when the next change is allowed so the swarm
//! can call back then ([`super::Topology::poll_timeout`]) instead of waiting for an unrelated event.

use std::time::{Duration, Instant};

/// Allows one change per `interval` and remembers when a refused change may be retried.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    /// The least time between two changes.
    interval: Duration,
    /// When the last change was made, if ever.
    last: Option<Instant>,
    /// When a change that was wanted but refused becomes allowed, if one is pending.
    wake: Option<Instant>,
}

impl RateLimit {
    /// A limiter that allows the first change at once.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self { interval, last: None, wake: None }
    }

    /// The earliest instant the next change is allowed, or `None` if it is allowed at any time.
    /// An instant beyond what `Instant` can hold means never.
    fn next_allowed(&self) -> Option<Instant> {
        self.last.map(|last| last.checked_add(self.interval).unwrap_or(last))
    }

    /// Whether a change is allowed at `now`. A clock that went backwards counts as no time passed.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.interval,
        }
    }

    /// Records a change made at `now`.
    pub(crate) fn record(&mut self, now: Instant) {
        self.last = Some(now);
        self.wake = None;
    }

    /// Records that a change was wanted at `now` but not allowed: wake up when it is.
    pub(crate) fn defer(&mut self) {
        self.wake = self.next_allowed();
    }

    /// Records that nothing is wanted.
    pub(crate) fn idle(&mut self) {
        self.wake = None;
    }

    /// When the owner wants to be called again.
    pub(crate) const fn wake(&self) -> Option<Instant> {
        self.wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_change_per_interval() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(10));
        assert!(limit.ready(t0));
        limit.record(t0);
        assert!(!limit.ready(t0 + Duration::from_secs(9)));
        limit.defer();
        assert_eq!(limit.wake(), Some(t0 + Duration::from_secs(10)));
        assert!(limit.ready(t0 + Duration::from_secs(10)));
        limit.idle();
        assert_eq!(limit.wake(), None);
    }

    #[test]
    fn clock_going_backwards_is_not_a_change_window() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut limit = RateLimit::new(Duration::from_secs(10));
        limit.record(t0);
        assert!(!limit.ready(t0 - Duration::from_secs(50)));
    }
}
