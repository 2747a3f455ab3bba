//! This peer's Noise static key, and the signature that ties it to the peer key.
//!
//! Noise authenticates X25519 static keys; mesh peers are known by ed25519 keys, and signaling
//! tells each side which ed25519 key the remote has. So each side sends, in its encrypted
//! handshake payload, its peer key's signature over `"mesh noise static key v1\n"` followed by
//! its static public key, and checks that the remote's static key carries a signature by the
//! key signaling named. The signature says whose the static key is; the handshake proves the
//! remote holds that static key's private half, for this handshake only. The domain keeps the
//! signature from meaning anything to any other use of the peer key.

use mesh_keys::{Keypair, PublicKey, SIGNATURE_LEN, Signature};
use zeroize::Zeroizing;

use super::{NoiseError, handshake::builder};

/// What a static key's signature is over, before the key itself.
const DOMAIN: &[u8] = b"mesh noise static key v1\n";

/// The length of the handshake payload each side sends: the signature.
pub(super) const PAYLOAD_LEN: usize = SIGNATURE_LEN;

/// An X25519 key pair for Noise, signed by a peer key.
pub(super) struct StaticKey {
    private: Zeroizing<Vec<u8>>,
    #[cfg(test)]
    public: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey").finish_non_exhaustive()
    }
}

impl StaticKey {
    /// A fresh static key, signed by `identity`.
    pub(super) fn generate(identity: &Keypair) -> Result<Self, NoiseError> {
        let keypair = builder()?.generate_keypair().map_err(|_| NoiseError::Setup)?;
        let signature = identity.sign(&signed_bytes(&keypair.public));
        Ok(Self {
            private: Zeroizing::new(keypair.private),
            #[cfg(test)]
            public: keypair.public,
            signature,
        })
    }

    /// The private half, for the handshake.
    pub(super) fn private(&self) -> &[u8] {
        &self.private
    }

    /// The handshake payload: the peer key's signature over the static key.
    pub(super) fn payload(&self) -> &[u8; PAYLOAD_LEN] {
        self.signature.as_bytes()
    }
}

/// Checks that `payload`, the remote's handshake payload, is `expected`'s signature over the
/// remote's static key.
pub(super) fn verify(expected: &PublicKey, remote_static: &[u8], payload: &[u8]) -> Result<(), NoiseError> {
    let signature = Signature::try_from_slice(payload).map_err(|_| NoiseError::WrongPeer)?;
    expected.verify(&signed_bytes(remote_static), &signature).map_err(|_| NoiseError::WrongPeer)
}

fn signed_bytes(static_public: &[u8]) -> Vec<u8> {
    [DOMAIN, static_public].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_static_key_verifies_for_its_peer_only() {
        let (peer, other) = (Keypair::generate(), Keypair::generate());
        let key = StaticKey::generate(&peer).unwrap();
        let public = key.public.clone();
        verify(&peer.public(), &public, key.payload()).unwrap();
        assert!(matches!(verify(&other.public(), &public, key.payload()), Err(NoiseError::WrongPeer)));

        let another = StaticKey::generate(&peer).unwrap();
        assert!(matches!(verify(&peer.public(), &public, another.payload()), Err(NoiseError::WrongPeer)));
        assert!(matches!(verify(&peer.public(), &public, &key.payload()[1..]), Err(NoiseError::WrongPeer)));
        assert!(matches!(verify(&peer.public(), &public, &[]), Err(NoiseError::WrongPeer)));
    }
}
