//! A signal server that introduces each peer to a bounded view of the swarm, for large simulations.
//!
//! DXOS's signal server tells every peer about every other, so a swarm of n peers costs n² messages
//! and every swarm core holds n peers: fine for hundreds, not for 10,000 in one process. With a
//! view of `v`, a joining peer is introduced (both ways) to its `v / 8` nearest live peers in key
//! order on each side and to `v - 2·(v / 8)` others drawn from the seeded generator. When a peer
//! goes, the peers that knew it hear PeerLeft, and the live peers around its place in key order are
//! introduced to each other, so every peer always knows its key-order neighbours (which MMST's ring
//! needs). Views grow as later peers pick earlier ones, to about twice `v` on average.

use std::collections::{BTreeMap, BTreeSet};

use mesh_keys::PublicKey;
use rand::{RngExt, SeedableRng, rngs::SmallRng};

/// Who knows whom, and the live peers in key order and in a vector to sample from.
#[derive(Debug)]
pub(super) struct Directory {
    view: usize,
    rng: SmallRng,
    /// Live peers, sorted.
    sorted: BTreeSet<PublicKey>,
    /// Live peers in a vector (swap-removed), for uniform sampling.
    live: Vec<PublicKey>,
    /// Each live peer's index in `live`.
    index: BTreeMap<PublicKey, usize>,
    /// For each live peer, the live peers it was introduced to (the relation is symmetric).
    known: BTreeMap<PublicKey, BTreeSet<PublicKey>>,
}

impl Directory {
    pub(super) fn new(view: usize, seed: u64) -> Self {
        Self {
            view: view.max(2),
            rng: SmallRng::seed_from_u64(seed),
            sorted: BTreeSet::new(),
            live: Vec::new(),
            index: BTreeMap::new(),
            known: BTreeMap::new(),
        }
    }

    /// How many key-order neighbours on each side a peer is introduced to.
    fn side(&self) -> usize {
        (self.view / 8).max(1)
    }

    /// `peer` joins (or restarts): the pairs to introduce, each once. A restarted peer is
    /// introduced again to everyone it knew.
    pub(super) fn join(&mut self, peer: PublicKey) -> Vec<(PublicKey, PublicKey)> {
        if let Some(known) = self.known.get(&peer) {
            return known.iter().map(|other| (peer, *other)).collect();
        }
        let mut picked: BTreeSet<PublicKey> = BTreeSet::new();
        let side = self.side();
        picked.extend(self.sorted.range(..peer).rev().take(side));
        picked.extend(self.sorted.range(peer..).take(side));
        let want = self.view.min(self.live.len());
        // Bounded attempts: a small swarm may have fewer distinct peers than asked for.
        for _ in 0..want.saturating_mul(4) {
            if picked.len() >= want {
                break;
            }
            let at = self.rng.random_range(0..self.live.len());
            picked.insert(self.live[at]);
        }
        self.sorted.insert(peer);
        self.index.insert(peer, self.live.len());
        self.live.push(peer);
        self.known.insert(peer, BTreeSet::new());
        picked.into_iter().filter_map(|other| self.introduce(peer, other)).collect()
    }

    /// `peer` is gone: the peers that knew it, and the pairs around its place to introduce.
    pub(super) fn leave(&mut self, peer: PublicKey) -> (Vec<PublicKey>, Vec<(PublicKey, PublicKey)>) {
        let Some(known) = self.known.remove(&peer) else { return (Vec::new(), Vec::new()) };
        for other in &known {
            if let Some(set) = self.known.get_mut(other) {
                set.remove(&peer);
            }
        }
        self.sorted.remove(&peer);
        if let Some(at) = self.index.remove(&peer) {
            self.live.swap_remove(at);
            if let Some(moved) = self.live.get(at) {
                self.index.insert(*moved, at);
            }
        }
        let side = self.side();
        let mut window: Vec<PublicKey> = self.sorted.range(..peer).rev().take(side).copied().collect();
        window.reverse();
        window.extend(self.sorted.range(peer..).take(side));
        let mut pairs = Vec::new();
        for (i, a) in window.iter().enumerate() {
            for b in window.iter().skip(i + 1).take(side) {
                pairs.extend(self.introduce(*a, *b));
            }
        }
        (known.into_iter().collect(), pairs)
    }

    /// Records that `a` and `b` know each other; the pair if they did not already.
    fn introduce(&mut self, a: PublicKey, b: PublicKey) -> Option<(PublicKey, PublicKey)> {
        if a == b {
            return None;
        }
        let fresh = self.known.entry(a).or_default().insert(b);
        self.known.entry(b).or_default().insert(a);
        fresh.then_some((a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key as key;

    #[test]
    fn neighbours_are_reintroduced_when_a_peer_between_them_goes() {
        let mut directory = Directory::new(8, 1);
        for byte in 1..=20 {
            directory.join(key(byte));
        }
        let (_, _) = directory.leave(key(10));
        assert!(directory.known[&key(9)].contains(&key(11)));
        assert!(directory.known.values().all(|set| !set.contains(&key(10))));
    }
}
