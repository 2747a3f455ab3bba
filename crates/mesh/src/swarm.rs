//! [`Swarm`]: one joined topic, with its gossip, presence and extensions.

use std::sync::Arc;

use mesh_extensions::{
    auth::{Admission, AuthStats, Authenticator, PartyPolicy},
    blobs::{self, Blobs, BlobsConfig},
    gossip::{Gossip, GossipConfig},
    presence::{Presence, PresenceConfig},
};
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_swarm::{Event, NetworkManager, SwarmHandle, topology::Topology};
use mesh_teleport::Extension;
use tokio::sync::{broadcast, watch};

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
    security: Option<Security>,
}

/// Who a swarm's connections admit.
#[derive(Debug, Clone)]
enum Security {
    /// Any peer that proves its key over the connection.
    Authenticated,
    /// Members of a party, presenting this peer's admission.
    Party { policy: PartyPolicy, admission: Admission },
}

impl std::fmt::Debug for JoinOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.extensions.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("JoinOptions")
            .field("gossip", &self.gossip)
            .field("presence", &self.presence)
            .field("blobs", &self.blobs)
            .field("extensions", &names)
            .field("security", &self.security)
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

    /// Every connection starts with each side proving its peer key over that connection
    /// (extension `dxos.mesh.teleport.auth`, bound to the transport); gossip, presence, blobs
    /// and the extensions below run only once the remote passed. DXOS peers, which do not prove
    /// their keys this way, are refused.
    pub fn authenticated(mut self) -> Self {
        self.security = Some(Security::Authenticated);
        self
    }

    /// As [`JoinOptions::authenticated`], and every remote must also present an admission to
    /// `policy`'s party (a credential chain from the party key), as this peer presents
    /// `admission`. Revoking a key in `policy` refuses it from then on.
    pub fn party(mut self, policy: PartyPolicy, admission: Admission) -> Self {
        self.security = Some(Security::Party { policy, admission });
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

/// What every connection of a swarm runs.
struct SwarmExtensions {
    gossip: Gossip,
    blobs: Blobs,
    own: Vec<(String, MakeExtension)>,
}

impl SwarmExtensions {
    fn add_to(&self, teleport: &mesh_teleport::Teleport) {
        // Names were checked when the first connection added them; a closed connection refuses
        // every extension and is going anyway.
        let _ = self.gossip.attach(teleport);
        let _ = teleport.add_extension(blobs::EXTENSION, self.blobs.extension());
        for (name, make) in &self.own {
            let _ = teleport.add_extension_arc(name, make());
        }
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
    auth: Option<Arc<Authenticator>>,
}

impl Swarm {
    pub(crate) async fn join(
        manager: &NetworkManager,
        key: &Keypair,
        topic: DiscoveryKey,
        topology: Box<dyn Topology>,
        options: JoinOptions,
    ) -> Result<Self, Error> {
        let gossip = Gossip::new(manager.own(), options.gossip);
        let presence = Presence::spawn(gossip.clone(), options.presence);
        let blobs = Blobs::new(options.blobs);
        let auth = options.security.map(|security| {
            let authenticator = Authenticator::new(key.clone());
            Arc::new(match security {
                Security::Authenticated => authenticator,
                Security::Party { policy, admission } => {
                    authenticator.with_policy(policy).with_admission(admission)
                }
            })
        });
        let extensions =
            SwarmExtensions { gossip: gossip.clone(), blobs: blobs.clone(), own: options.extensions };
        let protocol =
            TeleportProtocol::authenticated(auth.clone(), move |teleport| extensions.add_to(teleport));
        let handle = manager.join(topic, topology, Arc::new(protocol)).await?;
        Ok(Self { topic, handle, gossip, presence, blobs, auth })
    }

    /// Remotes that passed and were refused by connection authentication, if the swarm asks
    /// for it ([`JoinOptions::authenticated`], [`JoinOptions::party`]).
    pub fn auth_stats(&self) -> Option<watch::Receiver<AuthStats>> {
        self.auth.as_ref().map(|auth| auth.watch_stats())
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
