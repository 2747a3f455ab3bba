//! Browser peers: real DXOS 0.8.3 peers (`@dxos/network-manager` with its browser WebRTC transport
//! and Teleport) in headless Chromium, and mesh peers on the WebRTC transport, in one swarm through
//! mesh's signal server. Teleport comes up across every browser–mesh connection and the test
//! extension's hello goes each way, whichever key is lower (DXOS makes the lower key the WebRTC
//! offerer, whoever dialled), in stars where the higher key dials, and after a tab reloads.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::Client;
use mesh_swarm::{
    NetworkManager, SwarmConfig, SwarmHandle,
    topology::{FullyConnected, Star, Topology},
};
use mesh_transport::webrtc::WebRtcTransportFactory;
use tokio::sync::mpsc;

use common::{browser::Browser, wait_heard};

type Heard = mpsc::UnboundedSender<(PublicKey, PublicKey)>;

/// A mesh key pair whose hex starts with neither `0` nor `f`, so that keys made with `00…` sort
/// below it and keys made with `ff…` above it.
fn middle_keypair() -> Keypair {
    loop {
        let pair = Keypair::generate();
        if !pair.public().to_hex().starts_with(['0', 'f']) {
            return pair;
        }
    }
}

/// A browser peer key (DXOS peers do not prove their keys) whose hex starts with `prefix`.
fn browser_key(prefix: &str) -> PublicKey {
    let random = Keypair::generate().public().to_hex();
    format!("{prefix}{}", &random[prefix.len()..]).parse().unwrap()
}

async fn mesh_peer(
    url: &str,
    pair: &Keypair,
    topic: DiscoveryKey,
    topology: impl Topology + 'static,
    heard: &Heard,
) -> SwarmHandle {
    let manager = NetworkManager::new(
        pair.public(),
        Arc::new(Client::connect(url).unwrap()),
        Arc::new(WebRtcTransportFactory::default()),
        SwarmConfig::default(),
    )
    .await
    .unwrap();
    let protocol = common::hello_protocol(heard);
    manager.join(topic, Box::new(topology), protocol).await.unwrap()
}

fn server_config() -> mesh_signal_server::Config {
    mesh_signal_server::Config::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_mesh_peers_form_one_swarm_over_webrtc_and_heal_after_a_reload() {
    let server = mesh_signal_server::Server::start(server_config()).await.unwrap();
    let url = server.url();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (heard_tx, mut heard) = mpsc::unbounded_channel();

    // Keys ordered low browser < mesh a, mesh b < high browser: each mesh peer is the WebRTC
    // answerer to one browser peer and the offerer to the other.
    let (pair_a, pair_b) = (middle_keypair(), middle_keypair());
    let (mesh_a, mesh_b) = (pair_a.public(), pair_b.public());
    let (low, high) = (browser_key("00"), browser_key("ff"));
    let _swarm_a = mesh_peer(&url, &pair_a, topic, FullyConnected, &heard_tx).await;
    let _swarm_b = mesh_peer(&url, &pair_b, topic, FullyConnected, &heard_tx).await;
    let mut browser = Browser::launch(&url, topic, "full", &[low, high]).await;

    wait_heard(
        &mut heard,
        &[(mesh_a, low), (mesh_a, high), (mesh_a, mesh_b), (mesh_b, low), (mesh_b, high), (mesh_b, mesh_a)],
    )
    .await;
    browser.wait_hellos(0, &[high, mesh_a, mesh_b]).await;
    browser.wait_hellos(1, &[low, mesh_a, mesh_b]).await;

    // The low tab reloads and comes back with the same key: new connections, new hellos.
    while heard.try_recv().is_ok() {}
    browser.forget();
    browser.command("reload 0").await;
    browser.wait(|e| e["event"] == "ready" && e["tab"] == 0).await;
    wait_heard(&mut heard, &[(mesh_a, low), (mesh_b, low)]).await;
    browser.wait_hellos(0, &[high, mesh_a, mesh_b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stars_connect_where_the_higher_key_dials() {
    let server = mesh_signal_server::Server::start(server_config()).await.unwrap();
    let url = server.url();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let pair = middle_keypair();
    let mesh = pair.public();

    // mesh is the centre and the lower key; the browser leaf, the higher key, dials it, and mesh
    // makes the offer.
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let leaf = browser_key("ff");
    let _centre = mesh_peer(&url, &pair, topic, Star::new(mesh), &heard_tx).await;
    let mut browser = Browser::launch(&url, topic, &format!("star:{}", mesh.to_hex()), &[leaf]).await;
    wait_heard(&mut heard, &[(mesh, leaf)]).await;
    browser.wait_hellos(0, &[mesh]).await;

    // mesh is a leaf and the higher key; it dials the browser centre, the lower key, which
    // makes the offer.
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let centre = browser_key("00");
    let mut browser = Browser::launch(&url, topic, &format!("star:{}", centre.to_hex()), &[centre]).await;
    browser.wait(|e| e["event"] == "ready").await;
    let _leaf = mesh_peer(&url, &pair, topic, Star::new(centre), &heard_tx).await;
    wait_heard(&mut heard, &[(mesh, centre)]).await;
    browser.wait_hellos(0, &[mesh]).await;
}
