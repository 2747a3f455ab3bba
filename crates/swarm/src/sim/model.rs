//! The seeded network model of [`Sim`](super::Sim): latency, loss and partitions.
//!
//! Latency is per pair of peers, not per message: each pair gets a fixed one-way delay drawn from
//! `message_latency + [0, jitter]` by hashing the seed with both keys (think of it as the distance
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

/// The one-way delay between `a` and `b` (the same both ways).
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
    fn spread_stays_in_range() {
        let base = Duration::from_millis(30);
        let jitter = Duration::from_millis(40);
        assert_eq!(spread(base, jitter, 0), base);
        assert!(spread(base, jitter, u64::MAX) <= base + jitter);
        assert_eq!(spread(base, Duration::ZERO, 12345), base);
    }
}
