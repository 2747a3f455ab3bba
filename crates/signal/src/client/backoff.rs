//! Reconnect delays: from a minimum, doubling to a maximum, with jitter so that many clients of a
//! restarted server do not all come back at the same instant.

use std::time::Duration;

use rand::{RngExt, SeedableRng, rngs::SmallRng};

pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: SmallRng,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self { min, max, next: min, rng: SmallRng::seed_from_u64(seed) }
    }

    /// The delay before the next attempt: the current step ±25%.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(self.rng.random_range(0.75..=1.25))
    }

    /// A connection succeeded: start again from the minimum.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 7);
        let steps: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let nominal = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
        for (delay, nominal) in steps.iter().zip(nominal) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *delay >= nominal.mul_f64(0.75) && *delay <= nominal.mul_f64(1.25),
                "{delay:?} vs {nominal:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(125));
    }
}
