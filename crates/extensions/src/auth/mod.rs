//! Party security: which peers a party's swarm admits.
//!
//! - [`admission`]: credentials that admit a peer key to a party, issued by the party key or by a
//!   delegate it named, with an optional expiry, verified as a chain from the party key down.

pub mod admission;

pub use admission::{Admission, AdmissionError, Credential};
