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
//! Below a threshold ([`IntroductionView::everyone_up_to`]) a newcomer is introduced to every
//! live peer, as DXOS does; peers introduced that way while every live peer was are kept as a
//! clique rather than as pairs, so a small topic costs no more than its member list.
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
    /// Newcomers to fewer live peers than this meet them all.
    everyone_up_to: usize,
    rng: SmallRng,
    /// Live peers, sorted.
    sorted: BTreeSet<K>,
    /// Live peers in a vector (swap-removed), for uniform sampling.
    live: Vec<K>,
    /// Each live peer's index in `live`.
    index: BTreeMap<K, usize>,
    /// For each live peer, the live peers it was introduced to (the relation is symmetric),
    /// besides the clique.
    known: BTreeMap<K, BTreeSet<K>>,
    /// Live peers that all know each other, without pairs in `known`.
    clique: BTreeSet<K>,
}

impl<K: Ord + Clone> IntroductionView<K> {
    /// A view of about `view` peers per newcomer (at least 2), drawn with the generator `seed`.
    pub fn new(view: usize, seed: u64) -> Self {
        Self {
            view: view.max(2),
            everyone_up_to: 0,
            rng: SmallRng::seed_from_u64(seed),
            sorted: BTreeSet::new(),
            live: Vec::new(),
            index: BTreeMap::new(),
            known: BTreeMap::new(),
            clique: BTreeSet::new(),
        }
    }

    /// Introduces a newcomer to every live peer while there are fewer than `peers` of them (DXOS's
    /// everyone-to-everyone for small swarms); the bounded view applies above.
    pub fn everyone_up_to(mut self, peers: usize) -> Self {
        self.everyone_up_to = peers;
        self
    }

    /// How many key-order neighbours on each side a peer is introduced to.
    fn side(&self) -> usize {
        (self.view / 8).max(1)
    }

    /// `peer` joins (or restarts): the pairs to introduce, each once, the newcomer first. A
    /// restarted peer is introduced again to everyone it knew.
    pub fn join(&mut self, peer: K) -> Vec<(K, K)> {
        if self.known.contains_key(&peer) {
            return self.known(&peer).map(|other| (peer.clone(), other.clone())).collect();
        }
        let everyone = self.live.len() < self.everyone_up_to || self.live.len() <= self.view;
        let picked: BTreeSet<K> = if everyone { self.sorted.clone() } else { self.sample(&peer) };
        let joins_clique = everyone && self.clique.len() == self.live.len();
        self.sorted.insert(peer.clone());
        self.index.insert(peer.clone(), self.live.len());
        self.live.push(peer.clone());
        self.known.insert(peer.clone(), BTreeSet::new());
        if joins_clique {
            self.clique.insert(peer.clone());
            return picked.into_iter().map(|other| (peer.clone(), other)).collect();
        }
        picked.into_iter().filter_map(|other| self.introduce(peer.clone(), other)).collect()
    }

    /// The bounded view for a newcomer: its key-order neighbours and random others.
    fn sample(&mut self, peer: &K) -> BTreeSet<K> {
        let mut picked: BTreeSet<K> = BTreeSet::new();
        let side = self.side();
        picked.extend(self.sorted.range(..peer).rev().take(side).cloned());
        picked.extend(self.sorted.range(peer..).take(side).cloned());
        let want = self.view.min(self.live.len());
        // Bounded attempts: a small swarm may have fewer distinct peers than asked for.
        for _ in 0..want.saturating_mul(4) {
            if picked.len() >= want {
                break;
            }
            let at = self.rng.random_range(0..self.live.len());
            picked.insert(self.live[at].clone());
        }
        picked
    }

    /// `peer` is gone: the peers that knew it (to tell that it left), and the pairs around its
    /// place to introduce.
    pub fn leave(&mut self, peer: &K) -> (Vec<K>, Vec<(K, K)>) {
        let Some(mut known) = self.known.remove(peer) else { return (Vec::new(), Vec::new()) };
        for other in &known {
            if let Some(set) = self.known.get_mut(other) {
                set.remove(peer);
            }
        }
        if self.clique.remove(peer) {
            known.extend(self.clique.iter().cloned());
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
        if a == b || (self.clique.contains(&a) && self.clique.contains(&b)) {
            return None;
        }
        let fresh = self.known.entry(a.clone()).or_default().insert(b.clone());
        self.known.entry(b.clone()).or_default().insert(a.clone());
        fresh.then_some((a, b))
    }

    /// The live peers `peer` was introduced to.
    pub fn known<'a>(&'a self, peer: &'a K) -> impl Iterator<Item = &'a K> {
        let clique = self.clique.contains(peer).then_some(&self.clique).into_iter().flatten();
        self.known.get(peer).into_iter().flatten().chain(clique.filter(move |other| *other != peer))
    }

    /// How many peers are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no peer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
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

    #[test]
    fn small_swarms_meet_everyone_and_a_clique_member_leaving_is_told_to_all() {
        let mut view = IntroductionView::new(4, 3).everyone_up_to(10);
        for key in 0u8..10 {
            assert_eq!(
                view.join(key).len(),
                usize::from(key),
                "below the threshold a newcomer meets everyone"
            );
        }
        assert!(view.join(10).len() <= 4, "above it, the view");
        let (knew, _) = view.leave(&0);
        assert!((1u8..10).all(|key| knew.contains(&key)), "every clique member knew the one leaving");
        assert!(view.known.values().all(|set| set.len() <= 4), "the clique holds no pairs");
    }
}
