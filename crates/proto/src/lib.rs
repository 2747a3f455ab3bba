//! The MESH wire messages, compatible with DXOS 0.8.3, as [prost] types.
//!
//! The types are generated from the `.proto` files in the workspace's `proto/` directory by
//! `cargo xtask proto` and committed; `cargo xtask proto --check` fails when they are stale.
//! Packages map to modules: `dxos.mesh.signal` is [`dxos::mesh::signal`], mesh's own additions
//! live in [`mesh::v1`].
//!
//! Beside the generated types this crate has:
//! - [`Any`], [`Struct`], [`Value`] and [`ListValue`]: well-known types that encode exactly as
//!   protobufjs does (fields in insertion order, empty values written), so decoding and re-encoding
//!   gives the JavaScript encoder's bytes back.
//! - [`any`]: packing messages into `google.protobuf.Any` with the DXOS `type_url` conventions.
//! - conversions between [`dxos::keys::PublicKey`] and [`mesh_keys::PublicKey`].
//!
//! ```
//! use mesh_proto::{Message, any, dxos::mesh::signal::JoinRequest};
//!
//! let join = JoinRequest { swarm: vec![1; 32], peer: vec![2; 32], metadata: None };
//! let payload = any::pack_request(&join);
//! assert_eq!(payload.type_url, ".dxos.mesh.signal.JoinRequest");
//! let decoded: JoinRequest = any::unpack(&payload)?;
//! assert_eq!(decoded, join);
//! # Ok::<(), mesh_proto::any::UnpackError>(())
//! ```

pub mod any;
#[cfg(feature = "proptest")]
pub mod arbitrary;
pub mod auth;
mod generated;
mod keys;
pub mod wkt;

pub use generated::{dxos, mesh};
pub use keys::KeyFieldError;
pub use prost::{self, Message, Name};
pub use prost_types::Timestamp;
pub use wkt::{Any, ListValue, NullValue, Struct, Value};
