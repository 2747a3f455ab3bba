//! Party security: which peers a party's swarm admits.
//!
//! - [`admission`]: credentials that admit a peer key to a party, issued by the party key or by a
//!   delegate it named, with an optional expiry, verified as a chain from the party key down.
//! - [`connection`]: each side of a connection proves its peer key over that connection (bound to
//!   the transport) and, in a party, presents its admission; nothing else runs until it passed.
//! - [`invitation`]: a member lets a new peer in with a one-time code; both prove they know its
//!   secret without sending it (SPAKE2), and the member issues the admission.

pub mod admission;
pub mod connection;
pub mod invitation;

pub use admission::{Admission, AdmissionError, Credential};
pub use connection::{AuthError, AuthStats, Authenticator, PartyPolicy};
pub use invitation::{InvitationCode, InvitationError, Invitations, Redemption};
