//! The text and byte forms shared by every 32-byte key type.

use crate::{KEY_LEN, ParseKeyError};

/// Reads exactly [`KEY_LEN`] bytes.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<[u8; KEY_LEN], ParseKeyError> {
    bytes.try_into().map_err(|_| ParseKeyError::InvalidLength { expected: KEY_LEN, actual: bytes.len() })
}

/// Reads 64 hex characters, either case.
pub(crate) fn from_hex(text: &str) -> Result<[u8; KEY_LEN], ParseKeyError> {
    if text.len() != KEY_LEN * 2 {
        return Err(if text.len() % 2 == 1 {
            ParseKeyError::OddLength
        } else {
            ParseKeyError::InvalidLength { expected: KEY_LEN, actual: text.len() / 2 }
        });
    }
    let mut bytes = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut bytes)?;
    Ok(bytes)
}

/// Implements the conversions and formatting that every 32-byte key type shares.
macro_rules! key_type_impls {
    ($name:ident) => {
        impl $name {
            /// Wraps 32 bytes.
            pub const fn from_bytes(bytes: [u8; $crate::KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Reads a key from a slice, which must hold exactly 32 bytes.
            pub fn try_from_slice(bytes: &[u8]) -> Result<Self, $crate::ParseKeyError> {
                $crate::bytes32::from_slice(bytes).map(Self)
            }

            /// The key's bytes.
            pub const fn as_bytes(&self) -> &[u8; $crate::KEY_LEN] {
                &self.0
            }

            /// The key's bytes, by value.
            pub const fn to_bytes(self) -> [u8; $crate::KEY_LEN] {
                self.0
            }

            /// The text form: 64 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for logs.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ParseKeyError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::bytes32::from_hex(text).map(Self)
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = $crate::ParseKeyError;

            fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
                Self::try_from_slice(bytes)
            }
        }

        impl From<[u8; $crate::KEY_LEN]> for $name {
            fn from(bytes: [u8; $crate::KEY_LEN]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }
    };
}

pub(crate) use key_type_impls;
