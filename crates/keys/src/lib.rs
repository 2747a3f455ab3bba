//! Keys for mesh: who a peer is, which party it belongs to, and the topic it meets others on.
//!
//! - [`PublicKey`]: 32 bytes, the identity of a peer or a party. Its text form is 64 lowercase hex
//!   characters, and its order is byte order (which the swarm's glare rules rely on).
//! - [`SecretKey`] and [`Keypair`]: an ed25519 signing key and the public key it belongs to.
//! - [`Signature`]: a detached ed25519 signature, checked with [`PublicKey::verify`].
//! - [`DiscoveryKey`]: the topic a swarm meets on, a domain-separated blake3 hash of the party key, so
//!   signal servers never learn the party key itself.
//!
//! ```
//! use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
//!
//! let peer = Keypair::generate();
//! let signature = peer.sign(b"hello");
//! peer.public().verify(b"hello", &signature).expect("signed by this key");
//!
//! let party: PublicKey = "0101010101010101010101010101010101010101010101010101010101010101".parse()?;
//! let topic = DiscoveryKey::from_party(&party);
//! assert_ne!(topic.as_bytes(), party.as_bytes());
//! # Ok::<(), mesh_keys::ParseKeyError>(())
//! ```

mod bytes32;
mod discovery;
mod error;
mod keypair;
mod public_key;

pub use discovery::DiscoveryKey;
pub use error::{ParseKeyError, SignatureError};
pub use keypair::{Keypair, SIGNATURE_LEN, SecretKey, Signature};
pub use public_key::PublicKey;

/// The length in bytes of every key in this crate.
pub const KEY_LEN: usize = 32;
