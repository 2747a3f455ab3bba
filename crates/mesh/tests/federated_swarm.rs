//! A mixed swarm over two federated signal servers: two real DXOS 0.8.3 peers
//! (`@dxos/network-manager`, TCP transport, Teleport) and two mesh peers, one of each kind on each
//! server, with NATS between the servers. Everyone connects to everyone and talks through a test
//! extension, though no two peers on different servers share a signal server.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../signal/tests/common/nats.rs"]
mod nats;

use std::sync::Arc;

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::Client;
use mesh_signal_server::{Config, Federation, Server};
use mesh_swarm::{NetworkManager, SwarmConfig, SwarmHandle, topology::FullyConnected};
use mesh_transport::tcp::TcpTransportFactory;
use tokio::sync::mpsc;

use common::{DxosPeer, wait_whole};

async fn rust_peer(
    url: &str,
    topic: DiscoveryKey,
    heard: &mpsc::UnboundedSender<(PublicKey, PublicKey)>,
) -> (PublicKey, SwarmHandle) {
    let pair = Keypair::generate();
    let key = pair.public();
    let tcp = TcpTransportFactory::default().with_identity(pair);
    let manager = NetworkManager::new(
        key,
        Arc::new(Client::connect(url).unwrap()),
        Arc::new(tcp),
        SwarmConfig::default(),
    )
    .await
    .unwrap();
    let swarm = manager.join(topic, Box::new(FullyConnected), common::hello_protocol(heard)).await.unwrap();
    (key, swarm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dxos_and_mesh_peers_on_two_federated_servers_form_one_swarm() {
    let nats = nats::NatsCluster::start(1).await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let config = Config::default().with_federation(Some(Federation::new([nats.url(0)])));
        servers.push(Server::start(config).await.unwrap());
    }
    let (first, second) = (servers[0].url(), servers[1].url());
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (heard_tx, mut heard) = mpsc::unbounded_channel();

    let mut dxos_a = DxosPeer::spawn("dxos-swarm-peer.mjs", &first, topic).await;
    let mut dxos_b = DxosPeer::spawn("dxos-swarm-peer.mjs", &second, topic).await;
    let (rust_a, _swarm_a) = rust_peer(&first, topic, &heard_tx).await;
    let (rust_b, _swarm_b) = rust_peer(&second, topic, &heard_tx).await;
    wait_whole(&mut heard, &[rust_a, rust_b], &mut [&mut dxos_a, &mut dxos_b]).await;
    for server in &servers {
        assert!(server.stats().federation_received > 0, "signalling crossed between the servers");
    }
}
