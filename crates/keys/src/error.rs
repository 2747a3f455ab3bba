/// Why bytes or text could not be read as a key or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    /// The input had the wrong number of bytes (or, for text, hex characters / 2).
    #[error("expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Bytes the type holds.
        expected: usize,
        /// Bytes the input held.
        actual: usize,
    },
    /// The text was not hexadecimal.
    #[error("invalid hex character {character:?} at index {index}")]
    InvalidHex {
        /// The offending character.
        character: char,
        /// Its position in the text.
        index: usize,
    },
    /// The text had an odd number of hex characters.
    #[error("hex text has an odd length")]
    OddLength,
}

impl From<hex::FromHexError> for ParseKeyError {
    fn from(err: hex::FromHexError) -> Self {
        match err {
            hex::FromHexError::InvalidHexCharacter { c, index } => Self::InvalidHex { character: c, index },
            hex::FromHexError::OddLength => Self::OddLength,
            // Decoding into a fixed array reports the wrong size this way; callers check lengths first.
            hex::FromHexError::InvalidStringLength => Self::OddLength,
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key's bytes are not a valid ed25519 point, so nothing can be signed by it.
    #[error("public key is not a valid ed25519 key")]
    InvalidKey,
    /// The signature does not match the message and key.
    #[error("signature does not match")]
    Mismatch,
}
