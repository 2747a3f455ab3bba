//! Extensions that run over every mesh connection: what a swarm is for.
//!
//! Each is a [`mesh_teleport::Extension`] made per connection by a value shared across the
//! connections of one swarm (or several): add the extension to each connection's Teleport under
//! its name, and use the shared value to send and receive.
//!
//! - [`gossip`]: messages spread through the swarm, each delivered once per peer, wire-compatible
//!   with DXOS 0.8.3's `dxos.mesh.teleport.gossip`; flooding as DXOS does, or a tree mode between
//!   mesh peers that sends far fewer duplicate copies.
//! - [`blobs`]: content-addressed blobs verified piece by piece as they arrive (BLAKE3 verified
//!   streaming), whose transfers resume where they were cut.
//! - [`presence`]: who is online in the swarm and whom each peer is connected to, announced over
//!   gossip as DXOS 0.8.3's `Presence` does.
//! - [`auth`]: party admission: credentials, delegations, expiry and revocation.

pub mod auth;
pub mod blobs;
pub mod gossip;
mod message_port;
pub mod presence;
