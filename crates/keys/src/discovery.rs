use crate::{KEY_LEN, PublicKey, bytes32::key_type_impls};

/// The blake3 key-derivation context for discovery keys; changing it changes every topic.
const DISCOVERY_CONTEXT: &str = "mesh discovery key v1";

/// The topic a swarm meets on: a hash of the party key.
///
/// Signal servers see only discovery keys, never party keys. DXOS clients may use any 32 bytes as
/// a topic, so [`DiscoveryKey::from_bytes`] accepts them as they are.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiscoveryKey([u8; KEY_LEN]);

key_type_impls!(DiscoveryKey);

impl DiscoveryKey {
    /// Derives the topic of a party: blake3 in key-derivation mode, with a context of its own so the
    /// hash cannot collide with any other use of the party key.
    pub fn from_party(party: &PublicKey) -> Self {
        Self(blake3::derive_key(DISCOVERY_CONTEXT, party.as_bytes()))
    }
}

impl From<PublicKey> for DiscoveryKey {
    /// Uses a public key's bytes as a topic unchanged, as DXOS does when a topic is a key.
    fn from(key: PublicKey) -> Self {
        Self(key.to_bytes())
    }
}
