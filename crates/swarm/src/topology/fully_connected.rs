//! The fully connected topology: every peer connects to every other.
//!
//! The simplest policy and DXOS's default for small swarms: the number of connections grows with the
//! square of the swarm, so use it only where that is cheap. Offers from both ends of a pair at once
//! are the swarm's glare rules to settle (the lower key wins), not the topology's.

use std::time::Instant;

use mesh_keys::PublicKey;

use super::{Action, SwarmState, Topology};

/// Connects to every candidate and accepts every offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FullyConnected;

impl FullyConnected {
    /// The fully connected topology.
    pub const fn new() -> Self {
        Self
    }
}

impl Topology for FullyConnected {
    fn update(&mut self, _now: Instant, state: &SwarmState) -> Vec<Action> {
        state.candidates.iter().filter(|p| **p != state.own).map(|p| Action::Connect(*p)).collect()
    }

    fn on_offer(&mut self, _now: Instant, _state: &SwarmState, _peer: PublicKey) -> bool {
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
