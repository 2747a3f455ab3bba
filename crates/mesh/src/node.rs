//! [`Node`]: one peer, and the builder that starts it.

use std::sync::Arc;

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::{ClientConfig, Manager, Signal};
use mesh_swarm::{NetworkManager, SwarmConfig, topology::Topology};
use mesh_transport::{TransportFactory, tcp::TcpTransportFactory};

use crate::{Error, JoinOptions, Swarm};

/// Starts a [`Node`]: [`Node::builder`], then the settings, then [`NodeBuilder::spawn`].
#[derive(Default)]
#[must_use = "a builder does nothing until spawned"]
pub struct NodeBuilder {
    urls: Vec<String>,
    signaling: Option<Arc<dyn Signal>>,
    transport: Option<Arc<dyn TransportFactory>>,
    key: Option<Keypair>,
    swarm: SwarmConfig,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder").field("urls", &self.urls).finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// Signal servers to use (`ws://` or `wss://` URLs); the node proves its key to each.
    pub fn signal<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Signaling of your own instead of servers (an in-memory network in tests, say).
    pub fn signaling(mut self, signaling: Arc<dyn Signal>) -> Self {
        self.signaling = Some(signaling);
        self
    }

    /// How to connect to other peers. Default: TCP with this node's key, so links to other mesh
    /// peers are authenticated (see [`TcpTransportFactory`]).
    pub fn transport(mut self, transport: Arc<dyn TransportFactory>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// This node's key pair. Default: a new one.
    pub fn key(mut self, key: Keypair) -> Self {
        self.key = Some(key);
        self
    }

    /// Limits and timings of the node's swarms.
    pub fn swarm_config(mut self, config: SwarmConfig) -> Self {
        self.swarm = config;
        self
    }

    /// Connects to signaling and opens the node's inbox.
    pub async fn spawn(self) -> Result<Node, Error> {
        let key = self.key.unwrap_or_else(Keypair::generate);
        let signal: Arc<dyn Signal> = match (self.signaling, self.urls.is_empty()) {
            (Some(signaling), _) => signaling,
            (None, false) => {
                let configs =
                    self.urls.into_iter().map(|url| ClientConfig::new(url).with_identity(key.clone()));
                Arc::new(Manager::with_configs(configs)?)
            }
            (None, true) => return Err(Error::NoSignal),
        };
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::new(TcpTransportFactory::default().with_identity(key.clone())));
        let manager = NetworkManager::new(key.public(), signal.clone(), transport, self.swarm).await?;
        Ok(Node { key, signal, manager })
    }
}

/// One peer: signals, connects, and joins swarms. Dropping it (and its [`Swarm`]s) leaves them.
pub struct Node {
    key: Keypair,
    signal: Arc<dyn Signal>,
    manager: NetworkManager,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("peer", &self.key.public()).finish_non_exhaustive()
    }
}

impl Node {
    /// The way to start one.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's peer key.
    pub fn peer(&self) -> PublicKey {
        self.key.public()
    }

    /// The signaling the node uses (to watch its events, say).
    pub fn signaling(&self) -> &Arc<dyn Signal> {
        &self.signal
    }

    /// Joins the swarm of `topic`, keeping the connections `topology` asks for, with gossip and
    /// presence on each.
    pub async fn join(&self, topic: DiscoveryKey, topology: impl Topology + 'static) -> Result<Swarm, Error> {
        self.join_with(topic, topology, JoinOptions::default()).await
    }

    /// Joins as [`Node::join`] does, with the gossip, presence and extensions `options` give.
    pub async fn join_with(
        &self,
        topic: DiscoveryKey,
        topology: impl Topology + 'static,
        options: JoinOptions,
    ) -> Result<Swarm, Error> {
        Swarm::join(&self.manager, &self.key, topic, Box::new(topology), options).await
    }
}
