//! Network managers running real swarms over the in-memory network, and over TCP and WebRTC
//! through the real signal server, with a small protocol that proves both ends talk.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Hello, PATIENCE, join_fully_connected, managers, topic, wait_event};
use mesh_keys::{Keypair, PublicKey};
use mesh_signal::{Client, MemoryNetwork};
use mesh_swarm::{Event, NetworkManager, topology::FullyConnected};
use mesh_transport::{
    TransportFactory, memory::MemoryTransportFactory, tcp::TcpTransportFactory,
    webrtc::WebRtcTransportFactory,
};
use tokio::sync::mpsc;

#[tokio::test]
async fn four_peers_connect_fully_over_the_in_memory_network() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let managers = managers(4, || Arc::new(network.client()), |_| transports.clone()).await;
    let (mut swarms, keys) = join_fully_connected(&managers).await;

    // One leaves; the others see it go.
    let mut events = swarms[0].events();
    let leaving = swarms.pop().unwrap();
    leaving.leave().await.unwrap();
    let gone = keys[3];
    wait_event(&mut events, "the others see the peer that left disconnect", |event| {
        matches!(event, Event::Disconnected { peer, .. } if peer == gone).then_some(())
    })
    .await;
}

#[tokio::test]
async fn three_peers_connect_over_tcp_through_the_signal_server() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    // Each with its key pair: the links are authenticated, as `mesh peer` makes them.
    let transports = |pair: &Keypair| -> Arc<dyn TransportFactory> {
        Arc::new(TcpTransportFactory::default().with_identity(pair.clone()))
    };
    let authenticated = managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), transports).await;
    join_fully_connected(&authenticated).await;

    // Without key pairs the links take the plain DXOS path, and form all the same.
    let plain = |_: &Keypair| -> Arc<dyn TransportFactory> { Arc::new(TcpTransportFactory::default()) };
    let plain = managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), plain).await;
    join_fully_connected(&plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_connect_over_webrtc_through_the_signal_server() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let transports: Arc<dyn TransportFactory> = Arc::new(WebRtcTransportFactory::loopback());
    let managers =
        managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), |_| transports.clone()).await;
    let (swarms, _) = join_fully_connected(&managers).await;
    for swarm in swarms {
        swarm.leave().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_swarms_and_repeated_joins_on_new_topics() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let managers = managers(2, || Arc::new(network.client()), |_| transports.clone()).await;
    let keys: Vec<PublicKey> = managers.iter().map(NetworkManager::own).collect();
    for round in 0..3 {
        let (tx, mut hellos) = mpsc::unbounded_channel();
        let protocol = Arc::new(Hello(tx));
        let (first, second) = (topic(), topic());
        let mut swarms = Vec::new();
        for manager in &managers {
            swarms.push(manager.join(first, Box::new(FullyConnected), protocol.clone()).await.unwrap());
            swarms.push(manager.join(second, Box::new(FullyConnected), protocol.clone()).await.unwrap());
        }
        // Two topics: each ordered pair says hello once per topic.
        let mut seen = Vec::new();
        tokio::time::timeout(PATIENCE, async {
            while seen.len() < 4 {
                seen.push(hellos.recv().await.unwrap());
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: {seen:?}"));
        assert_eq!(seen.iter().filter(|(own, _)| *own == keys[0]).count(), 2);
        for swarm in swarms {
            swarm.leave().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_connects_through_a_server_that_introduces_a_bounded_view() {
    use mesh_signal_server::{Config, IntroductionView, Limits, RateLimit, Server};
    use mesh_swarm::topology::Mmst;

    const PEERS: usize = 120;
    const VIEW: usize = 8;
    let unlimited = RateLimit { per_second: 1e6, burst: 1_000_000 };
    let limits = Limits {
        introduction_view: Some(IntroductionView::new(VIEW, 0)),
        join_rate_per_topic: unlimited,
        ..Limits::default()
    };
    let server = Server::start(Config::default().with_limits(limits)).await.unwrap();
    let url = server.url();
    let transports = |_: &Keypair| -> Arc<dyn TransportFactory> { Arc::new(TcpTransportFactory::default()) };
    let managers = managers(PEERS, || Arc::new(Client::connect(url.clone()).unwrap()), transports).await;
    let keys: Vec<PublicKey> = managers.iter().map(NetworkManager::own).collect();
    let (tx, mut hellos) = mpsc::unbounded_channel();
    let protocol = Arc::new(Hello(tx));
    let topic = topic();
    let mut swarms = Vec::new();
    for (seed, manager) in managers.iter().enumerate() {
        swarms.push(manager.join(topic, Box::new(Mmst::new(seed as u64)), protocol.clone()).await.unwrap());
    }
    // Each peer meets only about the view, yet the connections the swarm makes join everyone.
    let mut components = Components::new(&keys);
    tokio::time::timeout(PATIENCE * 3, async {
        while components.count() > 1 {
            let (me, from) = hellos.recv().await.expect("hellos");
            components.join(me, from);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the swarm stayed in {} pieces", components.count()));
}

/// Union-find over peers: which are connected, through connections seen so far.
struct Components {
    index: std::collections::HashMap<PublicKey, usize>,
    parent: Vec<usize>,
    count: usize,
}

impl Components {
    fn new(keys: &[PublicKey]) -> Self {
        let index = keys.iter().enumerate().map(|(i, key)| (*key, i)).collect();
        Self { index, parent: (0..keys.len()).collect(), count: keys.len() }
    }

    fn root(&mut self, mut at: usize) -> usize {
        while self.parent[at] != at {
            self.parent[at] = self.parent[self.parent[at]];
            at = self.parent[at];
        }
        at
    }

    fn join(&mut self, a: PublicKey, b: PublicKey) {
        let (a, b) = (self.root(self.index[&a]), self.root(self.index[&b]));
        if a != b {
            self.parent[a] = b;
            self.count -= 1;
        }
    }

    fn count(&self) -> usize {
        self.count
    }
}
