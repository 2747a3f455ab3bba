//! [`Swarm`]: one joined topic, with its gossip, presence and extensions.

use std::sync::Arc;

use mesh_extensions::{
    blobs::{self, Blobs, BlobsConfig},
    gossip::{Gossip, GossipConfig},
    presence::{Presence, PresenceConfig},
};
use mesh_keys::DiscoveryKey;
use mesh_swarm::{Event, NetworkManager, SwarmHandle, topology::Topology};
use mesh_teleport::Extension;
use tokio::sync::broadcast;

use crate::{Error, TeleportProtocol};

type MakeExtension = Arc<dyn Fn() -> Arc<dyn Extension> + Send + Sync>;

/// How to run a swarm's connections: gossip and presence settings, and extensions of your own.
#[derive(Default, Clone)]
#[must_use]
pub struct JoinOptions {
    gossip: GossipConfig,
    presence: PresenceConfig,
    blobs: BlobsConfig,
    extensions: Vec<(String, MakeExtension)>,
}

impl std::fmt::Debug for JoinOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.extensions.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("JoinOptions")
            .field("gossip", &self.gossip)
            .field("presence", &self.presence)
            .field("blobs", &self.blobs)
            .field("extensions", &names)
            .finish()
    }
}

impl JoinOptions {
    /// Gossip with `config` (its mode, bounds and name).
    pub fn gossip(mut self, config: GossipConfig) -> Self {
        self.gossip = config;
        self
    }

    /// Presence with `config` (its timings and identity).
    pub fn presence(mut self, config: PresenceConfig) -> Self {
        self.presence = config;
        self
    }

    /// Blob sync with `config` (its bounds).
    pub fn blobs(mut self, config: BlobsConfig) -> Self {
        self.blobs = config;
        self
    }

    /// Runs the extension `name` on every connection, a new one from `make` each time. It opens
    /// on a connection when the remote added the same name.
    pub fn extension<E, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        E: Extension,
        F: Fn() -> E + Send + Sync + 'static,
    {
        let make: MakeExtension = Arc::new(move || Arc::new(make()) as Arc<dyn Extension>);
        self.extensions.push((name.into(), make));
        self
    }
}

/// A joined swarm. Dropping it (or [`Swarm::leave`]) leaves.
#[derive(Debug)]
pub struct Swarm {
    topic: DiscoveryKey,
    handle: SwarmHandle,
    gossip: Gossip,
    presence: Presence,
    blobs: Blobs,
}

impl Swarm {
    pub(crate) async fn join(
        manager: &NetworkManager,
        topic: DiscoveryKey,
        topology: Box<dyn Topology>,
        options: JoinOptions,
    ) -> Result<Self, Error> {
        let gossip = Gossip::new(manager.own(), options.gossip);
        let presence = Presence::spawn(gossip.clone(), options.presence);
        let blobs = Blobs::new(options.blobs);
        let (for_connections, for_blobs, extensions) = (gossip.clone(), blobs.clone(), options.extensions);
        let protocol = TeleportProtocol::new(move |teleport| {
            // Names were checked when the first connection added them; a closed connection
            // refuses every extension and is going anyway.
            let _ = for_connections.attach(teleport);
            let _ = teleport.add_extension(blobs::EXTENSION, for_blobs.extension());
            for (name, make) in &extensions {
                let _ = teleport.add_extension_arc(name, make());
            }
        });
        let handle = manager.join(topic, topology, Arc::new(protocol)).await?;
        Ok(Self { topic, handle, gossip, presence, blobs })
    }

    /// The swarm's topic.
    pub fn topic(&self) -> DiscoveryKey {
        self.topic
    }

    /// Messages to and from every peer of the swarm.
    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// Who is online in the swarm.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Blobs to share with and fetch from the peers of the swarm.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The swarm's connection events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.handle.events()
    }

    /// Leaves the swarm: tells signaling and closes its connections.
    pub async fn leave(self) -> Result<(), Error> {
        Ok(self.handle.leave().await?)
    }
}
