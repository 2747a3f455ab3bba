//! Network managers running real swarms over the in-memory network, and over TCP and WebRTC
//! through the real signal server, with a small protocol that proves both ends talk.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::{Client, MemoryNetwork, Signal};
use mesh_swarm::{
    ConnectionInfo, Event, NetworkManager, Protocol, ProtocolError, SwarmConfig, topology::FullyConnected,
};
use mesh_transport::{
    ByteStream, TransportFactory, memory::MemoryTransportFactory, tcp::TcpTransportFactory,
    webrtc::WebRtcTransportFactory,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

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
    ) -> Result<(), ProtocolError> {
        stream.write_all(info.own.as_bytes()).await.map_err(ProtocolError::new)?;
        let mut remote = [0u8; 32];
        stream.read_exact(&mut remote).await.map_err(ProtocolError::new)?;
        if remote != *info.remote.as_bytes() {
            return Err(ProtocolError::new(std::io::Error::other(
                "the other side is not who the swarm said",
            )));
        }
        let _ = self.0.send((info.own, info.remote));
        let mut rest = [0u8; 1];
        tokio::select! {
            () = close.cancelled() => Ok(()),
            _ = stream.read(&mut rest) => Ok(()),
        }
    }
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&Keypair::generate().public())
}

async fn wait_hellos(hellos: &mut mpsc::UnboundedReceiver<(PublicKey, PublicKey)>, keys: &[PublicKey]) {
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

/// Joins every manager to one new topic, fully connected, and waits until every ordered pair said
/// hello; returns the swarms and the managers' keys.
async fn join_fully_connected(managers: &[NetworkManager]) -> (Vec<mesh_swarm::SwarmHandle>, Vec<PublicKey>) {
    let (tx, mut hellos) = mpsc::unbounded_channel();
    let protocol = Arc::new(Hello(tx));
    let topic = topic();
    let mut swarms = Vec::new();
    for manager in managers {
        swarms.push(manager.join(topic, Box::new(FullyConnected), protocol.clone()).await.unwrap());
    }
    let keys: Vec<PublicKey> = managers.iter().map(NetworkManager::own).collect();
    wait_hellos(&mut hellos, &keys).await;
    (swarms, keys)
}

#[tokio::test]
async fn four_peers_connect_fully_over_the_in_memory_network() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let managers = managers(4, || Arc::new(network.client()), transports).await;
    let (mut swarms, keys) = join_fully_connected(&managers).await;

    // One leaves; the others see it go.
    let mut events = swarms[0].events();
    let leaving = swarms.pop().unwrap();
    leaving.leave().await.unwrap();
    let gone = keys[3];
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::Disconnected { peer, .. }) = events.recv().await
                && peer == gone
            {
                return;
            }
        }
    })
    .await
    .expect("the others see the peer that left disconnect");
}

#[tokio::test]
async fn three_peers_connect_over_tcp_through_the_signal_server() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let transports: Arc<dyn TransportFactory> = Arc::new(TcpTransportFactory::default());
    let managers = managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), transports).await;
    join_fully_connected(&managers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_connect_over_webrtc_through_the_signal_server() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let transports: Arc<dyn TransportFactory> = Arc::new(WebRtcTransportFactory::loopback());
    let managers = managers(3, || Arc::new(Client::connect(url.clone()).unwrap()), transports).await;
    let (swarms, _) = join_fully_connected(&managers).await;
    for swarm in swarms {
        swarm.leave().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_swarms_and_repeated_joins_on_new_topics() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let managers = managers(2, || Arc::new(network.client()), transports).await;
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
