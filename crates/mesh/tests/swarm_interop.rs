//! A mixed swarm: two real DXOS 0.8.3 peers (`@dxos/network-manager`, TCP transport, Teleport) and
//! two mesh peers join one topic through mesh's signal server. Everyone connects to everyone and
//! talks through a test extension; a mesh peer leaves, the others drop it, and it comes back with
//! the same key.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::Client;
use mesh_swarm::{NetworkManager, SwarmConfig, SwarmHandle, topology::FullyConnected};
use mesh_transport::{
    Transport, TransportFactory, TransportKind, TransportOptions, tcp::TcpTransportFactory,
};
use tokio::sync::mpsc;

use common::{DxosPeer, wait_heard, wait_whole};

struct RustPeer {
    key: PublicKey,
    swarm: SwarmHandle,
    links: Links,
}

async fn rust_peer(
    url: &str,
    pair: &Keypair,
    topic: DiscoveryKey,
    heard: &mpsc::UnboundedSender<(PublicKey, PublicKey)>,
) -> RustPeer {
    let client = Client::connect(url).unwrap();
    let key = pair.public();
    // With its key pair, as `mesh peer`: links to the other mesh peer are authenticated, links
    // to the DXOS peers take the plain DXOS path.
    let links = Links::default();
    let tcp = TcpTransportFactory::default().with_identity(pair.clone());
    let manager = NetworkManager::new(
        key,
        Arc::new(client),
        Arc::new(RecordingTcp { tcp, links: links.clone() }),
        SwarmConfig::default(),
    )
    .await
    .unwrap();
    let protocol = common::hello_protocol(heard);
    let swarm = manager.join(topic, Box::new(FullyConnected), protocol).await.unwrap();
    RustPeer { key, swarm, links }
}

#[tokio::test]
async fn dxos_and_mesh_peers_form_one_swarm_and_heal_after_a_mesh_peer_returns() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (heard_tx, mut heard) = mpsc::unbounded_channel();

    let mut dxos_a = DxosPeer::spawn("dxos-swarm-peer.mjs", &url, topic).await;
    let mut dxos_b = DxosPeer::spawn("dxos-swarm-peer.mjs", &url, topic).await;
    let (pair_a, pair_b) = (Keypair::generate(), Keypair::generate());
    let rust_a = rust_peer(&url, &pair_a, topic, &heard_tx).await;
    let rust_b = rust_peer(&url, &pair_b, topic, &heard_tx).await;
    let all = [dxos_a.key, dxos_b.key, rust_a.key, rust_b.key];
    let others = |me: PublicKey| all.iter().copied().filter(|k| *k != me).collect::<Vec<_>>();

    // Everyone hears everyone through the extension: three connections each.
    wait_whole(&mut heard, &[rust_a.key, rust_b.key], &mut [&mut dxos_a, &mut dxos_b]).await;

    // A mesh peer stops: the others drop it.
    let returning = rust_b.key;
    rust_b.swarm.leave().await.unwrap();
    for dxos in [&mut dxos_a, &mut dxos_b] {
        dxos.wait(|e| e["event"] == "closed" && e["remote"] == returning.to_hex()).await;
    }

    // It comes back with the same key, and the swarm is whole again.
    let rust_b = rust_peer(&url, &pair_b, topic, &heard_tx).await;
    let back: Vec<(PublicKey, PublicKey)> = others(rust_b.key)
        .into_iter()
        .map(|from| (rust_b.key, from))
        .chain([(rust_a.key, rust_b.key)])
        .collect();
    wait_heard(&mut heard, &back).await;
    dxos_a.wait_hellos(&[rust_b.key]).await;
    dxos_b.wait_hellos(&[rust_b.key]).await;

    // The mesh peers exchanged link nonces with each other (so their link was authenticated),
    // and the DXOS peers, which skip the extension fields, sent none: their links stayed plain.
    for peer in [&rust_a, &rust_b] {
        let links = lock(&peer.links).clone();
        let mesh = if peer.key == rust_a.key { rust_b.key } else { rust_a.key };
        assert!(links.iter().any(|(remote, link)| *remote == mesh && *link), "{links:?}");
        for dxos in [dxos_a.key, dxos_b.key] {
            let to_dxos: Vec<bool> =
                links.iter().filter(|(remote, _)| *remote == dxos).map(|(_, link)| *link).collect();
            assert!(!to_dxos.is_empty() && to_dxos.iter().all(|link| !link), "{links:?}");
        }
    }
}

/// Transports of one mesh peer: (remote, whether the transport was given link nonces).
type Links = Arc<Mutex<Vec<(PublicKey, bool)>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap()
}

/// TCP, recording whether each transport authenticates its link.
struct RecordingTcp {
    tcp: TcpTransportFactory,
    links: Links,
}

impl TransportFactory for RecordingTcp {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        lock(&self.links).push((options.remote, options.link.is_some()));
        self.tcp.create(options)
    }

    fn kind(&self) -> TransportKind {
        self.tcp.kind()
    }

    fn authenticates_links(&self) -> bool {
        self.tcp.authenticates_links()
    }
}
