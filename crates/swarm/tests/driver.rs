//! The tokio side of a swarm: a transport that blocks holds up nothing else, and dropping a
//! swarm's handle (or the manager) ends every task it started. In memory: these are tests of the
//! driver, not of the transports.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use common::{
    Hello, PATIENCE, join_fully_connected, manager, managers, pairs, topic, wait_event, wait_hellos,
    wait_pairs,
};
use mesh_keys::{Keypair, PublicKey};
use mesh_proto::Struct;
use mesh_signal::{Event as SignalEvent, MemoryNetwork, Signal};
use mesh_swarm::{ConnectionState, Event, SwarmConfig, topology::FullyConnected};
use mesh_transport::{
    ByteStream, Transport, TransportError, TransportFactory, TransportKind, TransportOptions, TransportStats,
    memory::MemoryTransportFactory,
};
use tokio::sync::{Notify, mpsc};

/// Wraps the memory transport. Transports to `stuck` never return from `signal()` (they tell
/// `signalled` when one is called); transports to `chatty` send `extra` signals more on open.
struct Misbehaving {
    inner: Arc<dyn TransportFactory>,
    stuck: Option<PublicKey>,
    signalled: Arc<Notify>,
    chatty: Option<(PublicKey, usize)>,
}

impl Misbehaving {
    fn stuck_towards(peer: PublicKey, inner: Arc<dyn TransportFactory>) -> (Self, Arc<Notify>) {
        let signalled = Arc::new(Notify::new());
        (Self { inner, stuck: Some(peer), signalled: signalled.clone(), chatty: None }, signalled)
    }

    fn chatty_towards(peer: PublicKey, extra: usize, inner: Arc<dyn TransportFactory>) -> Self {
        Self { inner, stuck: None, signalled: Arc::default(), chatty: Some((peer, extra)) }
    }
}

impl TransportFactory for Misbehaving {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let remote = options.remote;
        let extra = self.chatty.filter(|(peer, _)| *peer == remote).map_or(0, |(_, extra)| extra);
        let sink = options.signals.clone();
        let inner = self.inner.create(options);
        let stuck = (self.stuck == Some(remote)).then(|| self.signalled.clone());
        Arc::new(MisbehavingTransport { inner, stuck, extra, sink })
    }

    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
}

#[derive(Debug)]
struct MisbehavingTransport {
    inner: Arc<dyn Transport>,
    stuck: Option<Arc<Notify>>,
    extra: usize,
    sink: mesh_transport::SignalSink,
}

#[async_trait]
impl Transport for MisbehavingTransport {
    async fn open(&self) -> Result<(), TransportError> {
        self.inner.open().await?;
        for i in 0..self.extra {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            self.sink.send(Struct::new().with("noise", i)).await?;
        }
        Ok(())
    }

    async fn signal(&self, payload: Struct) -> Result<(), TransportError> {
        match &self.stuck {
            Some(signalled) => {
                signalled.notify_one();
                std::future::pending().await
            }
            None => self.inner.signal(payload).await,
        }
    }

    async fn connected(&self) -> Result<ByteStream, TransportError> {
        self.inner.connected().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }
}

/// Three keys in key order (the lower key of a pair initiates).
fn three_keys() -> [PublicKey; 3] {
    let mut keys = [(); 3].map(|()| Keypair::generate().public());
    keys.sort();
    keys
}

#[tokio::test]
async fn a_transport_whose_signal_never_returns_stalls_neither_its_swarm_nor_other_swarms() {
    let network = MemoryNetwork::new();
    let memory: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    // `low` initiates to `high`, whose transport never takes `low`'s signal; `mid` is healthy.
    let [low, mid, high] = three_keys();
    let (stuck, signalled) = Misbehaving::stuck_towards(low, memory.clone());
    let signal = || -> Arc<dyn Signal> { Arc::new(network.client()) };
    let low_manager = manager(low, signal(), memory.clone(), SwarmConfig::default()).await;
    let mid_manager = manager(mid, signal(), memory.clone(), SwarmConfig::default()).await;
    let high_manager = manager(high, signal(), Arc::new(stuck), SwarmConfig::default()).await;

    let (first, second) = (topic(), topic());
    let (tx, mut first_hellos) = mpsc::unbounded_channel();
    let first_protocol = Arc::new(Hello(tx));
    let _low = low_manager.join(first, Box::new(FullyConnected), first_protocol.clone()).await.unwrap();
    let _high = high_manager.join(first, Box::new(FullyConnected), first_protocol.clone()).await.unwrap();
    tokio::time::timeout(PATIENCE, signalled.notified()).await.expect("the stuck transport got a signal");

    // With one of its transports stuck, `high` still connects to `mid`, in this swarm and another.
    let _mid = mid_manager.join(first, Box::new(FullyConnected), first_protocol).await.unwrap();
    let (tx, mut second_hellos) = mpsc::unbounded_channel();
    let second_protocol = Arc::new(Hello(tx));
    let _high_second =
        high_manager.join(second, Box::new(FullyConnected), second_protocol.clone()).await.unwrap();
    let _mid_second = mid_manager.join(second, Box::new(FullyConnected), second_protocol).await.unwrap();
    let healthy = pairs(&[mid, high]).union(&pairs(&[low, mid])).copied().collect();
    wait_pairs(&mut first_hellos, healthy).await;
    wait_hellos(&mut second_hellos, &[mid, high]).await;
}

#[tokio::test]
async fn a_connection_whose_transport_falls_a_queue_behind_is_closed() {
    let network = MemoryNetwork::new();
    let memory: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let [low, high, _] = three_keys();
    // `low` sends far more signals than `high`'s queue holds, and `high`'s transport takes none.
    let config = SwarmConfig::default().with_connect_timeout(Duration::from_secs(3600));
    let extra = config.transport_signal_queue * 2;
    let chatty = Misbehaving::chatty_towards(high, extra, memory.clone());
    let (stuck, _) = Misbehaving::stuck_towards(low, memory.clone());
    let low_manager = manager(low, Arc::new(network.client()), Arc::new(chatty), config.clone()).await;
    let high_manager = manager(high, Arc::new(network.client()), Arc::new(stuck), config).await;

    let topic = topic();
    let (tx, _hellos) = mpsc::unbounded_channel();
    let protocol = Arc::new(Hello(tx));
    let high_swarm = high_manager.join(topic, Box::new(FullyConnected), protocol.clone()).await.unwrap();
    let mut events = high_swarm.events();
    let _low_swarm = low_manager.join(topic, Box::new(FullyConnected), protocol).await.unwrap();
    // The connect timeout is an hour: only the full queue can end the connection this soon.
    wait_event(&mut events, "the connection is aborted once its transport falls a queue behind", |event| {
        matches!(event, Event::State { peer, state: ConnectionState::Aborted, .. } if peer == low)
            .then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_swarm_message_beyond_the_in_flight_bound_fails_at_once() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let [own, first, second] = three_keys();
    let config = SwarmConfig::default().with_max_messages_in_flight(1);
    let manager = manager(own, Arc::new(network.client()), transports, config).await;
    let topic = topic();
    let (tx, _hellos) = mpsc::unbounded_channel();
    let swarm = manager.join(topic, Box::new(FullyConnected), Arc::new(Hello(tx))).await.unwrap();
    let mut events = swarm.events();
    // Two peers that signaling lists but that never read their inbox: no offer is ever
    // acknowledged, so the offer to `first` holds the one place for the messenger's 10 s.
    let (first_signal, second_signal) = (network.client(), network.client());
    first_signal.join(topic, first).await.unwrap();
    second_signal.join(topic, second).await.unwrap();
    let aborted = wait_event(&mut events, "a connection aborts", |event| match event {
        Event::State { peer, state: ConnectionState::Aborted, .. } => Some(peer),
        _ => None,
    })
    .await;
    assert_eq!(
        aborted, second,
        "the offer to the second peer failed at once, before the first one's timed out"
    );
}

/// The members signaling lists for `topic`, as a newcomer learns them.
async fn members(network: &MemoryNetwork, topic: mesh_keys::DiscoveryKey) -> BTreeSet<PublicKey> {
    let newcomer = network.client();
    let mut events = newcomer.events();
    let own = Keypair::generate().public();
    newcomer.join(topic, own).await.unwrap();
    let members = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|event| match event {
            SignalEvent::PeerAvailable { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    newcomer.leave(topic, own).await.unwrap();
    members
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits until exactly `expected` tasks are alive (tasks end a little after what ends them).
async fn wait_for_tasks(expected: usize, what: &str) {
    let settled = tokio::time::timeout(PATIENCE, async {
        while alive_tasks() != expected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{what}: {} tasks alive, expected {expected}", alive_tasks());
}

#[tokio::test]
async fn dropping_swarm_handles_and_managers_ends_every_task_they_started() {
    let network = MemoryNetwork::new();
    let transports: Arc<dyn TransportFactory> = Arc::new(MemoryTransportFactory::default());
    let before = alive_tasks();
    let managers = managers(3, || Arc::new(network.client()), |_| transports.clone()).await;
    let idle = alive_tasks();
    assert!(idle > before, "the managers run tasks");

    let (mut swarms, keys) = join_fully_connected(&managers).await;
    assert!(alive_tasks() > idle, "swarms and connections run tasks");

    // The others see the dropped swarm's connections close, and signaling no longer lists it.
    let mut events = swarms[0].events();
    let dropped = swarms.pop().unwrap();
    let topic = dropped.topic();
    drop(dropped);
    let gone = keys[2];
    wait_event(&mut events, "the dropped swarm closes its connections", |event| {
        matches!(event, Event::Disconnected { peer, .. } if peer == gone).then_some(())
    })
    .await;
    assert_eq!(
        members(&network, topic).await,
        keys[..2].iter().copied().collect(),
        "it left signaling first"
    );

    drop(swarms);
    wait_for_tasks(idle, "with every swarm handle dropped").await;
    drop(managers);
    wait_for_tasks(before, "with the managers dropped too").await;
}
