//! The star topology: every leaf connects to one centre, and to nothing else.
//!
//! For a hub (a bot, a server peer) and its clients. Leaves originate, the centre only accepts, which
//! halves the offers compared with DXOS (whose centre also originates) and leaves no glare to settle.
//! A leaf drops any other connection, whoever opened it, so a leaf that learns the centre late (or
//! a peer that switched topology) converges to the star.

use std::time::Instant;

use mesh_keys::PublicKey;

use super::{Action, SwarmState, Topology};

/// Leaves connect only to `centre`; only offers with the centre at one end are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Star {
    /// The peer every leaf connects to.
    pub centre: PublicKey,
}

impl Star {
    /// A star around `centre`.
    pub const fn new(centre: PublicKey) -> Self {
        Self { centre }
    }
}

impl Topology for Star {
    fn update(&mut self, _now: Instant, state: &SwarmState) -> Vec<Action> {
        if state.own == self.centre {
            // The centre waits for its leaves.
            return Vec::new();
        }
        let mut actions: Vec<Action> =
            state.connected.iter().filter(|p| **p != self.centre).map(|p| Action::Disconnect(*p)).collect();
        if state.candidates.contains(&self.centre) && !state.connected.contains(&self.centre) {
            actions.push(Action::Connect(self.centre));
        }
        actions
    }

    fn on_offer(&mut self, _now: Instant, state: &SwarmState, peer: PublicKey) -> bool {
        state.own == self.centre || peer == self.centre
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
