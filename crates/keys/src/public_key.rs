use ed25519_dalek::{Verifier, VerifyingKey};

use crate::{KEY_LEN, Signature, SignatureError, bytes32::key_type_impls};

/// The 32-byte public key of a peer or a party.
///
/// Any 32 bytes make a `PublicKey`: DXOS uses the same type for random message and session ids, so
/// only [`PublicKey::verify`] asks whether the bytes are a real ed25519 point. Keys order by their
/// bytes, which equals the order of their hex text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

key_type_impls!(PublicKey);

impl PublicKey {
    /// A key of random bytes from the operating system's generator, as DXOS uses for message and
    /// session ids.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// A key of random bytes from `rng`, for reproducible simulations.
    pub fn random_from<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Checks that `signature` was made over `message` by the secret key of this public key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::InvalidKey)?;
        key.verify(message, &signature.to_dalek()).map_err(|_| SignatureError::Mismatch)
    }
}
