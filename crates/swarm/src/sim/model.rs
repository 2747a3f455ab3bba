//! The seeded network model of [`Sim`](super::Sim): latency, loss and partitions.
//!
//! Latency is per pair of peers, not per message: each pair gets a fixed one-way delay drawn from a
//! [`Latency`] distribution by hashing the seed with both keys (think of it as the distance
//! between them), and signaling (PeerAvailable / PeerLeft) gets one per receiving peer the same way.
//! A fixed delay per pair keeps each pair's messages in order, as one path through the signal
//! server would; only losses reorder them, as the reliable messenger's retries do.
//!
//! Loss applies to swarm messages, the ones the reliable messenger carries: a lost attempt is
//! retried after 1 s, then 2 s, 4 s… (so it arrives 1 s, 3 s, 7 s… late), and a message still
//! lost once the next retry would come after `undeliverable_after` is reported undeliverable.
//!
//! A partition splits the peers into groups by a hash of their key (so peers joining during the
//! partition have a group too): swarm messages between groups are undeliverable and transports
//! between groups close and do not come up. Signaling membership (PeerAvailable / PeerLeft) still
//! reaches everyone, as from a signal server every group can reach.

use std::time::Duration;

use mesh_keys::PublicKey;
use rand::{RngExt, rngs::SmallRng};

/// A split of the peers into `groups` groups, each peer's group fixed by its key and `salt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// How many groups (0 and 1 mean no split).
    pub groups: u32,
    /// Mixed into the hash so different partitions split differently.
    pub salt: u64,
}

impl Partition {
    /// The group of `peer`.
    pub fn group(&self, peer: &PublicKey) -> u32 {
        let groups = u64::from(self.groups.max(1));
        // The remainder is below `groups`, itself a u32.
        u32::try_from(key_hash(self.salt, peer) % groups).unwrap_or(0)
    }
}

/// How one-way delays are spread over the pairs of peers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Every pair the same.
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform {
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// Log-normal around `median` with shape `sigma`, capped at [`LOG_NORMAL_CAP`] × `median`:
    /// most pairs close to the median and a long tail of distant ones, the shape of round trips
    /// measured across the internet.
    LogNormal {
        /// Half the pairs are closer than this.
        median: Duration,
        /// The spread of the logarithm (0.5 puts 95 % of pairs within 0.37–2.7 × the median).
        sigma: f64,
    },
}

/// The longest log-normal delay, as a multiple of the median, so one pair cannot stall a run.
pub const LOG_NORMAL_CAP: f64 = 20.0;

impl Latency {
    /// The delay fixed by `hash` (uniform over the 64-bit hashes).
    pub fn delay(&self, hash: u64) -> Duration {
        match *self {
            Self::Fixed(delay) => delay,
            Self::Uniform { min, max } => spread(min, max.saturating_sub(min), hash),
            Self::LogNormal { median, sigma } => {
                let factor = (sigma * standard_normal(hash)).exp().min(LOG_NORMAL_CAP);
                median.mul_f64(factor)
            }
        }
    }

    /// The mean delay over all pairs (for the log-normal, of the uncapped distribution).
    pub fn mean(&self) -> Duration {
        match *self {
            Self::Fixed(delay) => delay,
            Self::Uniform { min, max } => (min + max) / 2,
            Self::LogNormal { median, sigma } => median.mul_f64((sigma * sigma / 2.0).exp()),
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::Fixed(Duration::from_millis(5))
    }
}

/// A standard normal draw fixed by `hash` (Box–Muller on its two 32-bit halves).
fn standard_normal(hash: u64) -> f64 {
    // Both halves map into (0, 1]: the logarithm below never sees zero.
    let u1 = ((hash >> 32) as f64 + 1.0) / 4_294_967_296.0;
    let u2 = ((hash & 0xffff_ffff) as f64) / 4_294_967_296.0;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// splitmix64's finaliser: a well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash of `key` under `seed`, for deriving per-peer seeds and the like.
pub fn key_hash(seed: u64, key: &PublicKey) -> u64 {
    key.as_bytes().chunks(8).fold(mix(seed), |acc, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        mix(acc ^ u64::from_le_bytes(word))
    })
}

/// `base + jitter × (hash / 2⁶⁴)`: a delay in `[base, base + jitter]` fixed by `hash`.
pub(super) fn spread(base: Duration, jitter: Duration, hash: u64) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    let nanos = jitter.as_nanos();
    let extra = nanos.saturating_mul(u128::from(hash)) >> 64;
    base + Duration::from_nanos(u64::try_from(extra).unwrap_or(u64::MAX))
}

/// The hash that fixes the one-way delay between `a` and `b` (the same both ways).
pub(super) fn pair_hash(seed: u64, a: &PublicKey, b: &PublicKey) -> u64 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    key_hash(key_hash(seed, low), high)
}

/// The extra delay of a swarm message under `loss`: `Some(0)` when its first attempt arrives,
/// `Some(1 s | 3 s | 7 s …)` after retries, `None` when the messenger gives up within
/// `undeliverable_after`. Draws nothing when `loss` is zero.
pub(super) fn retry_delay(rng: &mut SmallRng, loss: f64, undeliverable_after: Duration) -> Option<Duration> {
    if loss <= 0.0 {
        return Some(Duration::ZERO);
    }
    let mut extra = Duration::ZERO;
    let mut wait = Duration::from_secs(1);
    while rng.random_bool(loss.min(1.0)) {
        extra += wait;
        if extra >= undeliverable_after {
            return None;
        }
        wait *= 2;
    }
    Some(extra)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn retries_follow_the_messenger_schedule() {
        let mut rng = SmallRng::seed_from_u64(1);
        let ten = Duration::from_secs(10);
        assert_eq!(retry_delay(&mut rng, 0.0, ten), Some(Duration::ZERO));
        assert_eq!(retry_delay(&mut rng, 1.0, ten), None);
        let allowed = [0, 1, 3, 7].map(Duration::from_secs);
        for _ in 0..100 {
            if let Some(extra) = retry_delay(&mut rng, 0.5, ten) {
                assert!(allowed.contains(&extra), "{extra:?}");
            }
        }
    }

    #[test]
    fn log_normal_delays_centre_on_the_median_with_a_capped_tail() {
        let median = Duration::from_millis(50);
        let latency = Latency::LogNormal { median, sigma: 0.5 };
        let mut delays: Vec<Duration> = (0..10_000u64).map(|i| latency.delay(mix(i))).collect();
        delays.sort_unstable();
        let middle = delays[delays.len() / 2];
        assert!(middle > median.mul_f64(0.95) && middle < median.mul_f64(1.05), "{middle:?}");
        assert!(delays[delays.len() * 99 / 100] > median.mul_f64(2.5), "a tail beyond 2.5 × the median");
        assert!(delays.iter().all(|d| *d <= median.mul_f64(LOG_NORMAL_CAP)));
        let mean = delays.iter().sum::<Duration>() / 10_000;
        let expected = latency.mean();
        assert!(mean > expected.mul_f64(0.95) && mean < expected.mul_f64(1.05), "{mean:?} vs {expected:?}");
    }

    #[test]
    fn uniform_delays_stay_within_bounds() {
        let (min, max) = (Duration::from_millis(30), Duration::from_millis(70));
        let latency = Latency::Uniform { min, max };
        assert_eq!(latency.delay(0), min);
        assert!((0..1000u64).map(|i| latency.delay(mix(i))).all(|d| d >= min && d <= max));
        assert_eq!(latency.mean(), Duration::from_millis(50));
    }

    #[test]
    fn spread_stays_in_range() {
        let base = Duration::from_millis(30);
        let jitter = Duration::from_millis(40);
        assert_eq!(spread(base, jitter, 0), base);
        assert!(spread(base, jitter, u64::MAX) <= base + jitter);
        assert_eq!(spread(base, Duration::ZERO, 12345), base);
    }
}
