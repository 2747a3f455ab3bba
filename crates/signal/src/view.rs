//! A bounded introduction view: which members of a large swarm each newcomer is introduced to.
//!
//! DXOS's signal server tells every member about every other, so a swarm of n peers costs n²
//! messages and every peer holds n candidates: fine for hundreds, not for 10,000. With a view of
//! `v`, a joining peer is introduced (both ways) to its `v / 8` nearest live peers in key order on
//! each side and to `v - 2·(v / 8)` others drawn from a seeded generator. When a peer goes, the
//! peers that knew it hear that it left, and the live peers around its place in key order are
//! introduced to each other, so every peer always knows its key-order neighbours (which MMST's
//! ring needs). Views grow as later peers pick earlier ones, to about twice `v` on average.
//!
//! Pure and seeded: the same joins and leaves with the same seed give the same introductions,
//! which is how the simulator (`mesh-swarm`'s `sim`) and a signal server can be checked against
//! each other.

use std::collections::{BTreeMap, BTreeSet};

use rand::{RngExt, SeedableRng, rngs::SmallRng};

/// Who knows whom, and the live peers in key order and in a vector to sample from. `K` is a peer
/// key: `PublicKey` in the simulator, the raw key bytes in a server.
#[derive(Debug)]
pub struct IntroductionView<K> {
    view: usize,
    rng: SmallRng,
    /// Live peers, sorted.
    sorted: BTreeSet<K>,
    /// Live peers in a vector (swap-removed), for uniform sampling.
    live: Vec<K>,
    /// Each live peer's index in `live`.
    index: BTreeMap<K, usize>,
    /// For each live peer, the live peers it was introduced to (the relation is symmetric).
    known: BTreeMap<K, BTreeSet<K>>,
}

impl<K: Ord + Clone> IntroductionView<K> {
    /// A view of about `view` peers per newcomer (at least 2), drawn with the generator `seed`.
    pub fn new(view: usize, seed: u64) -> Self {
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

    /// `peer` joins (or restarts): the pairs to introduce, each once, the newcomer first. A
    /// restarted peer is introduced again to everyone it knew.
    pub fn join(&mut self, peer: K) -> Vec<(K, K)> {
        if let Some(known) = self.known.get(&peer) {
            return known.iter().map(|other| (peer.clone(), other.clone())).collect();
        }
        let mut picked: BTreeSet<K> = BTreeSet::new();
        let side = self.side();
        picked.extend(self.sorted.range(..&peer).rev().take(side).cloned());
        picked.extend(self.sorted.range(&peer..).take(side).cloned());
        let want = self.view.min(self.live.len());
        // Bounded attempts: a small swarm may have fewer distinct peers than asked for.
        for _ in 0..want.saturating_mul(4) {
            if picked.len() >= want {
                break;
            }
            let at = self.rng.random_range(0..self.live.len());
            picked.insert(self.live[at].clone());
        }
        self.sorted.insert(peer.clone());
        self.index.insert(peer.clone(), self.live.len());
        self.live.push(peer.clone());
        self.known.insert(peer.clone(), BTreeSet::new());
        picked.into_iter().filter_map(|other| self.introduce(peer.clone(), other)).collect()
    }

    /// `peer` is gone: the peers that knew it (to tell that it left), and the pairs around its
    /// place to introduce.
    pub fn leave(&mut self, peer: &K) -> (Vec<K>, Vec<(K, K)>) {
        let Some(known) = self.known.remove(peer) else { return (Vec::new(), Vec::new()) };
        for other in &known {
            if let Some(set) = self.known.get_mut(other) {
                set.remove(peer);
            }
        }
        self.sorted.remove(peer);
        if let Some(at) = self.index.remove(peer) {
            self.live.swap_remove(at);
            if let Some(moved) = self.live.get(at) {
                self.index.insert(moved.clone(), at);
            }
        }
        let side = self.side();
        let mut window: Vec<K> = self.sorted.range(..peer).rev().take(side).cloned().collect();
        window.reverse();
        window.extend(self.sorted.range(peer..).take(side).cloned());
        let mut pairs = Vec::new();
        for (i, a) in window.iter().enumerate() {
            for b in window.iter().skip(i + 1).take(side) {
                pairs.extend(self.introduce(a.clone(), b.clone()));
            }
        }
        (known.into_iter().collect(), pairs)
    }

    /// Records that `a` and `b` know each other; the pair if they did not already.
    fn introduce(&mut self, a: K, b: K) -> Option<(K, K)> {
        if a == b {
            return None;
        }
        let fresh = self.known.entry(a.clone()).or_default().insert(b.clone());
        self.known.entry(b.clone()).or_default().insert(a.clone());
        fresh.then_some((a, b))
    }

    /// The live peers `peer` was introduced to.
    pub fn known(&self, peer: &K) -> impl Iterator<Item = &K> {
        self.known.get(peer).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_reintroduced_when_a_peer_between_them_goes() {
        let mut view = IntroductionView::new(8, 1);
        for key in 1u8..=20 {
            view.join(key);
        }
        let (_, _) = view.leave(&10);
        assert!(view.known(&9).any(|key| *key == 11));
        assert!(view.known.values().all(|set| !set.contains(&10)));
    }

    #[test]
    fn a_newcomer_meets_at_most_about_the_view_and_the_same_seed_gives_the_same_introductions() {
        let run = |seed| {
            let mut view = IntroductionView::new(16, seed);
            (0u16..500).map(|key| view.join(key)).collect::<Vec<_>>()
        };
        let introductions = run(7);
        assert!(introductions.iter().all(|pairs| pairs.len() <= 16), "each newcomer meets at most the view");
        assert!(introductions[499].len() >= 8, "a late newcomer still meets a good share of the view");
        assert_eq!(introductions, run(7), "seeded: the same input gives the same introductions");
        assert_ne!(introductions, run(8));
    }
}
