//! Teleport, the protocol on every mesh connection, wire-compatible with `@dxos/teleport` 0.8.3.
//!
//! One byte stream carries many channels: the [`framer`] cuts it into `u16`-length frames, the
//! [`balancer`] cuts messages into chunks of at most 8 KiB and interleaves channels fairly, and the
//! [`muxer`] opens channels by tag and carries `dxos.mesh.muxer.Command`s. Those three are one
//! sans-IO state machine, [`muxer::Muxer`]: bytes in, bytes and events out, time passed in. A thin
//! tokio [`driver`](Teleport::new) runs it over any `AsyncRead + AsyncWrite`.
//!
//! On top: channels as message [`Port`]s or byte [`Stream`]s with bounded send buffers,
//! [`Extension`]s that open once both sides added them, the built-in [`control`] extension
//! (registration and heartbeats), [`rpc::RpcPeer`] (`dxos.rpc` with the open/open_ack handshake)
//! and [`service::Router`] for serving prost-typed methods.
//!
//! Stream data is copied twice in user space end to end: into a message when written and out of it
//! when read. Outgoing frames point into the messages ([`payload::Segments`], written with vectored
//! writes) and incoming messages bigger than a chunk stay in the pieces they arrived in
//! ([`Payload`]) when those are large runs of their read buffer; small messages are copied out so
//! they never keep a whole read buffer alive.
//!
//! What a remote can make a connection hold is bounded: partial and unread messages count against
//! one receive budget ([`muxer::Config::receive_budget`]), unread data pauses reading, a partial
//! message that stalls ends the connection, and the extension names a remote registers are capped.
//!
//! ```
//! use async_trait::async_trait;
//! use mesh_keys::PublicKey;
//! use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Teleport};
//! use tokio::sync::mpsc;
//!
//! /// Sends "ping" if it is the initiator; answers "pong" otherwise.
//! struct Ping(mpsc::Sender<bytes::Bytes>);
//!
//! #[async_trait]
//! impl Extension for Ping {
//!     async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
//!         let port = ctx.create_port("ping", None)?;
//!         let done = self.0.clone();
//!         tokio::spawn(async move {
//!             if ctx.initiator() {
//!                 port.send("ping".into()).await?;
//!                 let answer = port.recv().await.unwrap_or_default();
//!                 let _ = done.send(answer).await;
//!             } else if let Some(_ping) = port.recv().await {
//!                 port.send("pong".into()).await?;
//!                 port.flushed().await;
//!             }
//!             Ok::<_, mesh_teleport::ChannelError>(())
//!         });
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (a_io, b_io) = tokio::io::duplex(64 << 10);
//! let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
//! let a = Teleport::new(a_io, Params::new(true, a_key, b_key));
//! let b = Teleport::new(b_io, Params::new(false, b_key, a_key));
//! let (tx, mut rx) = mpsc::channel(1);
//! a.add_extension("example", Ping(tx.clone())).unwrap();
//! b.add_extension("example", Ping(tx)).unwrap();
//! assert_eq!(rx.recv().await.unwrap(), "pong");
//! assert!(a.close().await.is_clean());
//! # }
//! ```

pub mod balancer;
mod channel;
mod command;
pub mod control;
mod driver;
mod error;
mod extension;
pub mod framer;
/// A test extension for interop tests and benchmarks (feature `testing`; not a stable API).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod hello;
pub mod muxer;
pub mod payload;
pub mod rpc;
pub mod service;
mod shared;
mod teleport;

pub use channel::{Port, STREAM_WRITE_CHUNK, Stream};
pub use error::{ChannelError, ExtensionError, ProtocolError, RpcError};
pub use extension::{Extension, ExtensionContext};
pub use muxer::{ChannelId, CloseReason};
pub use payload::Payload;
pub use teleport::{Params, Teleport};
