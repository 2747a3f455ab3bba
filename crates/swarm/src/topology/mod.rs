//! Topologies: which peers of a swarm this peer connects to, and which offers it accepts.
//!
//! The swarm owns the connections; a topology only decides. It is a sans-IO policy: the swarm calls
//! [`Topology::update`] whenever its state changes (a peer appears or leaves, a connection opens or
//! closes) and whenever the instant from [`Topology::poll_timeout`] passes, and executes the
//! [`Action`]s it gets back; it asks [`Topology::on_offer`] before answering a remote offer. Time is a
//! parameter and randomness is seeded, so the same inputs always give the same decisions, on real
//! sockets and on a virtual clock alike.
//!
//! Three policies match DXOS 0.8.3's (MESH-SPEC §5):
//! - [`FullyConnected`]: every peer connects to every other; for small swarms.
//! - [`Star`]: every leaf connects to one centre only; for a hub (a bot, a server) and its clients.
//! - [`Mmst`]: a sparse, bounded-degree graph ("mostly-minimal spanning tree") for large swarms, which
//!   unlike DXOS's keeps the swarm connected; see [`mmst`] for the rules and why.
//!
//! [`xor_distance`] is the metric MMST prefers peers by.

mod fully_connected;
pub mod mmst;
mod rate_limit;
mod ring;
mod star;
mod xor;

use std::time::Instant;

use mesh_keys::PublicKey;

pub use fully_connected::FullyConnected;
pub use mmst::{Mmst, MmstConfig};
pub use star::Star;
pub use xor::xor_distance;

/// What the swarm knows, passed to the topology on every call.
///
/// Every list is sorted by key bytes and holds no duplicates; `connected` and `candidates` are
/// disjoint and neither holds `own`. A topology must still not panic if a caller breaks this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmState {
    /// This peer's key.
    pub own: PublicKey,
    /// Peers with a connection (in any state but closed), sorted.
    pub connected: Vec<PublicKey>,
    /// Peers that advertise and may be connected to, not in `connected`, sorted.
    pub candidates: Vec<PublicKey>,
    /// Every known peer, sorted, including those that no longer advertise.
    pub all: Vec<PublicKey>,
}

/// A change the topology asks the swarm to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Open a connection to this peer (send it an offer).
    Connect(PublicKey),
    /// Close the connection to this peer.
    Disconnect(PublicKey),
}

/// A policy deciding which connections a swarm keeps.
///
/// Implementations are sans-IO: they never read the clock, sleep or touch a socket.
pub trait Topology: Send + std::fmt::Debug {
    /// The swarm changed (or a timeout the topology asked for passed): what should it do now?
    fn update(&mut self, now: Instant, state: &SwarmState) -> Vec<Action>;

    /// A remote peer offers a connection: accept it?
    fn on_offer(&mut self, now: Instant, state: &SwarmState, peer: PublicKey) -> bool;

    /// When `update` should be called again even if nothing changes (MMST's rate limit), if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}
