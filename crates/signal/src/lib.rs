//! Signaling for mesh: how peers find each other and exchange messages before they are connected.
//!
//! - [`Client`]: one signal server over WebSocket (`ws://` or `wss://`), speaking the DXOS 0.8.3
//!   protocol. It proves its keys first when given any, reconnects with backoff, restores its
//!   joins and inboxes after every reconnect, keeps the connection alive with `__ping__` and
//!   WebSocket Pings, and treats a server that stops answering as gone.
//! - [`Manager`]: several servers at once; joins and sends go to all, duplicates are dropped.
//! - [`MemoryNetwork`]: an in-memory signal network behind the same [`Signal`] trait, for unit
//!   tests and simulation.
//! - [`Messenger`]: reliable messages on top of any [`Signal`]: acknowledgements (only of what a
//!   listener took), resends with backoff, duplicate suppression, and listeners routed by
//!   recipient, payload type and filter.
//!
//! ```no_run
//! use mesh_keys::{DiscoveryKey, Keypair};
//! use mesh_signal::{Client, Event, Signal};
//!
//! # async fn run() -> Result<(), mesh_signal::SignalError> {
//! let me = Keypair::generate().public();
//! let topic = DiscoveryKey::from_party(&Keypair::generate().public());
//! let client = Client::connect("ws://127.0.0.1:4000/.well-known/dx/signal")?;
//! let mut events = client.events();
//! client.join(topic, me).await?;
//! while let Ok(event) = events.recv().await {
//!     if let Event::PeerAvailable { peer, .. } = event {
//!         println!("{peer} is here");
//!     }
//! }
//! # Ok(()) }
//! ```

mod api;
mod client;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manager;
mod memory;
mod messenger;
pub mod view;

pub use api::Signal;
pub use client::{Client, ClientConfig, Timeouts};
pub use error::SignalError;
pub use event::{ConnectionState, Event, SignalMessage};
pub use manager::{Manager, Merge};
pub use memory::{MemoryNetwork, MemorySignal};
pub use messenger::{
    Messenger, MessengerConfig, MessengerCore, Output as MessengerOutput, Token as MessengerToken,
};
