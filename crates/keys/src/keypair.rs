use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroize;

use crate::{KEY_LEN, ParseKeyError, PublicKey, bytes32};

/// The length in bytes of a [`Signature`].
pub const SIGNATURE_LEN: usize = 64;

/// An ed25519 secret key (its 32-byte seed). Wiped from memory when dropped; never printed.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps a 32-byte seed.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a seed from a slice, which must hold exactly 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, ParseKeyError> {
        bytes32::from_slice(bytes).map(Self)
    }

    /// The seed's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The text form: 64 lowercase hex characters. Handle with care: this is the secret.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::str::FromStr for SecretKey {
    type Err = ParseKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        bytes32::from_hex(text.trim()).map(Self)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A signing key and its public key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// A new key pair from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_secret(&SecretKey(rand::random()))
    }

    /// A new key pair from `rng`, for reproducible simulations and tests.
    pub fn generate_from<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; KEY_LEN];
        rng.fill_bytes(&mut seed);
        let pair = Self::from_secret(&SecretKey(seed));
        seed.zeroize();
        pair
    }

    /// The key pair of a secret key.
    pub fn from_secret(secret: &SecretKey) -> Self {
        let signing = SigningKey::from_bytes(&secret.0);
        let public = PublicKey::from_bytes(signing.verifying_key().to_bytes());
        Self { signing, public }
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// A copy of the secret key.
    pub fn secret(&self) -> SecretKey {
        SecretKey(self.signing.to_bytes())
    }

    /// Signs `message` (ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// A detached ed25519 signature: 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps 64 bytes.
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a signature from a slice, which must hold exactly 64 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, ParseKeyError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| ParseKeyError::InvalidLength { expected: SIGNATURE_LEN, actual: bytes.len() })
    }

    /// The signature's bytes.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }

    pub(crate) fn to_dalek(self) -> ed25519_dalek::Signature {
        ed25519_dalek::Signature::from_bytes(&self.0)
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}
