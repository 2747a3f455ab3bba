//! Packing messages into `google.protobuf.Any` the way DXOS does.
//!
//! DXOS writes two forms of `type_url`: the payload of an RPC [`Request`](crate::dxos::rpc::Request)
//! carries the type's full name with a leading dot (`.dxos.mesh.signal.JoinRequest`, from
//! protobufjs's `fullName`), while payloads nested inside messages carry it without one
//! (`dxos.mesh.swarm.SwarmMessage`). Readers accept both.

use prost::{Message, Name};

use crate::Any;

/// Why an `Any` could not be read as the expected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    /// The `type_url` names another type.
    #[error("expected a {expected} payload, got type_url {actual:?}")]
    TypeMismatch {
        /// The full name of the expected type.
        expected: String,
        /// The `type_url` found.
        actual: String,
    },
    /// The bytes are not a valid message of the expected type.
    #[error("malformed {type_name} payload: {source}")]
    Decode {
        /// The full name of the expected type.
        type_name: String,
        /// What the decoder found.
        source: prost::DecodeError,
    },
}

/// Packs a message nested inside another: `type_url` is the full name, without a leading dot.
pub fn pack<M: Message + Name>(message: &M) -> Any {
    Any { type_url: M::full_name(), value: message.encode_to_vec() }
}

/// Packs an RPC request or response payload: `type_url` is the full name with a leading dot.
pub fn pack_request<M: Message + Name>(message: &M) -> Any {
    Any { type_url: format!(".{}", M::full_name()), value: message.encode_to_vec() }
}

/// Whether `type_url` names `M`, with or without a leading dot or a `type.googleapis.com/` style prefix.
pub fn is<M: Name>(any: &Any) -> bool {
    type_name(&any.type_url) == M::full_name()
}

/// The type name in a `type_url`: without a leading dot or a `domain/` prefix.
pub fn type_name(type_url: &str) -> &str {
    let name = type_url.rsplit_once('/').map_or(type_url, |(_, name)| name);
    name.strip_prefix('.').unwrap_or(name)
}

/// Reads an `Any` as `M`, checking its `type_url`.
pub fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, UnpackError> {
    if !is::<M>(any) {
        return Err(UnpackError::TypeMismatch { expected: M::full_name(), actual: any.type_url.clone() });
    }
    decode_value(any)
}

/// Reads an `Any` as `M` whatever its `type_url` says, as an RPC server does: it knows the type from
/// the method name.
pub fn decode_value<M: Message + Name + Default>(any: &Any) -> Result<M, UnpackError> {
    M::decode(any.value.as_slice())
        .map_err(|source| UnpackError::Decode { type_name: M::full_name(), source })
}
