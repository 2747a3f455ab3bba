//! Conversions between key messages and [`mesh_keys`] types.

use crate::dxos::keys::PublicKey as PublicKeyMessage;

/// A key field that did not hold a 32-byte key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key field holds {0} bytes, expected 32")]
pub struct KeyFieldError(pub usize);

impl From<mesh_keys::PublicKey> for PublicKeyMessage {
    fn from(key: mesh_keys::PublicKey) -> Self {
        Self { data: key.as_bytes().to_vec() }
    }
}

impl TryFrom<&PublicKeyMessage> for mesh_keys::PublicKey {
    type Error = KeyFieldError;

    fn try_from(message: &PublicKeyMessage) -> Result<Self, Self::Error> {
        Self::try_from_slice(&message.data).map_err(|_| KeyFieldError(message.data.len()))
    }
}

impl PublicKeyMessage {
    /// The key, if the message holds exactly 32 bytes.
    pub fn to_key(&self) -> Result<mesh_keys::PublicKey, KeyFieldError> {
        self.try_into()
    }
}
