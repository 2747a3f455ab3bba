//! Network managers connecting over real WebRTC (loopback UDP) through the real signal server,
//! with a small protocol that proves both ends talk.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::{Client, Signal};
use mesh_swarm::{ConnectionInfo, NetworkManager, Protocol, SwarmConfig, topology::FullyConnected};
use mesh_transport::{ByteStream, TransportFactory, webrtc::WebRtcTransportFactory};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

/// Each side writes its key and reads the other's, reports the pair, then holds the connection
/// until either side closes it.
struct Hello(mpsc::UnboundedSender<(PublicKey, PublicKey)>);

#[async_trait]
impl Protocol for Hello {
    async fn run(
        &self,
        info: ConnectionInfo,
        mut stream: ByteStream,
        close: CancellationToken,
    ) -> Result<(), String> {
        stream.write_all(info.own.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut remote = [0u8; 32];
        stream.read_exact(&mut remote).await.map_err(|e| e.to_string())?;
        if remote != *info.remote.as_bytes() {
            return Err("the other side is not who the swarm said".into());
        }
        let _ = self.0.send((info.own, info.remote));
        let mut rest = [0u8; 1];
        tokio::select! {
            () = close.cancelled() => Ok(()),
            _ = stream.read(&mut rest) => Ok(()),
        }
    }
}

async fn managers(
    count: usize,
    signal: impl Fn() -> Arc<dyn Signal>,
    transports: Arc<dyn TransportFactory>,
) -> Vec<NetworkManager> {
    let mut managers = Vec::new();
    for _ in 0..count {
        let own = Keypair::generate().public();
        managers.push(
            NetworkManager::new(own, signal(), transports.clone(), SwarmConfig::default()).await.unwrap(),
        );
    }
    managers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_connect_over_webrtc_through_the_signal_server() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let transports: Arc<dyn TransportFactory> = Arc::new(WebRtcTransportFactory::loopback());
    let managers = managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), transports).await;

    let (tx, mut hellos) = mpsc::unbounded_channel();
    let protocol = Arc::new(Hello(tx));
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let mut swarms = Vec::new();
    for manager in &managers {
        swarms.push(manager.join(topic, Box::new(FullyConnected), protocol.clone()).await.unwrap());
    }

    // Every ordered pair says hello: three WebRTC connections, each used both ways.
    let keys: Vec<PublicKey> = managers.iter().map(NetworkManager::own).collect();
    let expected: BTreeSet<(PublicKey, PublicKey)> =
        keys.iter().flat_map(|a| keys.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect();
    let mut seen = BTreeSet::new();
    tokio::time::timeout(PATIENCE, async {
        while seen != expected {
            seen.insert(hellos.recv().await.expect("hello channel open"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {} hellos", seen.len(), expected.len()));

    for swarm in swarms {
        swarm.leave().await.unwrap();
    }
}
