//! What the network manager tests share: a protocol that proves both ends talk, managers, and
//! waiting for every pair to say hello.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::Signal;
use mesh_swarm::{
    ConnectionInfo, Event, NetworkManager, Protocol, ProtocolError, SwarmConfig, SwarmHandle,
    topology::FullyConnected,
};
use mesh_transport::{ByteStream, TransportFactory};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{broadcast, mpsc},
};
use tokio_util::sync::CancellationToken;

/// How long anything that should happen may take on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Each side writes its key and reads the other's, reports the pair, then holds the connection
/// until either side closes it.
pub struct Hello(pub mpsc::UnboundedSender<(PublicKey, PublicKey)>);

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

pub fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&Keypair::generate().public())
}

/// Every ordered pair of `keys`.
pub fn pairs(keys: &[PublicKey]) -> BTreeSet<(PublicKey, PublicKey)> {
    keys.iter().flat_map(|a| keys.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect()
}

/// Waits until every ordered pair of `keys` said hello.
pub async fn wait_hellos(hellos: &mut mpsc::UnboundedReceiver<(PublicKey, PublicKey)>, keys: &[PublicKey]) {
    wait_pairs(hellos, pairs(keys)).await;
}

/// Waits until every pair in `expected` said hello (others may too).
pub async fn wait_pairs(
    hellos: &mut mpsc::UnboundedReceiver<(PublicKey, PublicKey)>,
    expected: BTreeSet<(PublicKey, PublicKey)>,
) {
    let mut seen = BTreeSet::new();
    tokio::time::timeout(PATIENCE, async {
        while !expected.is_subset(&seen) {
            seen.insert(hellos.recv().await.expect("hello channel open"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {} hellos", seen.intersection(&expected).count(), expected.len()));
}

/// A manager for `own`.
pub async fn manager(
    own: PublicKey,
    signal: Arc<dyn Signal>,
    transports: Arc<dyn TransportFactory>,
    config: SwarmConfig,
) -> NetworkManager {
    NetworkManager::new(own, signal, transports, config).await.unwrap()
}

/// `count` managers, each with a new key pair, its own signaling, the transports `transports`
/// makes for that key pair, and the default configuration.
pub async fn managers(
    count: usize,
    signal: impl Fn() -> Arc<dyn Signal>,
    transports: impl Fn(&Keypair) -> Arc<dyn TransportFactory>,
) -> Vec<NetworkManager> {
    let mut managers = Vec::new();
    for _ in 0..count {
        let pair = Keypair::generate();
        managers.push(manager(pair.public(), signal(), transports(&pair), SwarmConfig::default()).await);
    }
    managers
}

/// Joins every manager to one new topic, fully connected, and waits until every ordered pair said
/// hello; returns the swarms and the managers' keys.
pub async fn join_fully_connected(managers: &[NetworkManager]) -> (Vec<SwarmHandle>, Vec<PublicKey>) {
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

/// Waits for the first swarm event that `wanted` picks; panics with `what` after [`PATIENCE`].
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    wanted: impl Fn(Event) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(event) = events.recv().await
                && let Some(found) = wanted(event)
            {
                return found;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no event: {what}"))
}
