//! One door to mesh, for services and bots that join swarms.
//!
//! A [`Node`] is one peer: its key, its signal servers and how it connects. [`Node::join`] enters
//! the swarm of a topic and returns a [`Swarm`] with the extensions that run over every one of
//! its connections: [`gossip`] (messages to every peer of the swarm), [`presence`] (who is online),
//! [`blobs`] (content-addressed data fetched verified from any peer holding it) and any of your
//! own ([`JoinOptions::extension`]).
//!
//! ```no_run
//! use mesh::{DiscoveryKey, Node, PublicKey, topology::Mmst};
//!
//! # async fn run(party: PublicKey) -> Result<(), mesh::Error> {
//! let node = Node::builder().signal(["wss://signal.example/.well-known/dx/signal"]).spawn().await?;
//! let swarm = node.join(DiscoveryKey::from_party(&party), Mmst::new(1)).await?;
//! let mut chat = swarm.gossip().subscribe("chat");
//! swarm.gossip().post("chat", mesh::Any { type_url: "example.Text".into(), value: b"hi".to_vec() });
//! while let Some(message) = chat.recv().await {
//!     println!("{}: {:?}", message.origin.short(), message.payload.value);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The layers below stay available for those who need one of them alone: [`signal`],
//! [`transport`], [`swarm_core`] and [`teleport`].

mod error;
mod node;
mod protocol;
mod swarm;

pub use error::Error;
pub use mesh_extensions::{auth, blobs, gossip, presence};
pub use mesh_keys::{DiscoveryKey, Keypair, PublicKey, SecretKey};
pub use mesh_proto::Any;
pub use mesh_signal as signal;
pub use mesh_swarm as swarm_core;
pub use mesh_swarm::topology;
pub use mesh_teleport as teleport;
pub use mesh_teleport::{Extension, ExtensionContext, ExtensionError};
pub use mesh_transport as transport;
pub use node::{Node, NodeBuilder};
pub use protocol::TeleportProtocol;
pub use swarm::{JoinOptions, Swarm};
