//! The network manager: one peer's swarms, over one signaling connection and one transport kind.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{any, dxos::mesh::swarm::SwarmMessage};
use mesh_signal::{Event as SignalEvent, Messenger, Signal, SignalError};
use mesh_transport::TransportFactory;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use crate::{
    Event, Protocol, Swarm, SwarmConfig,
    driver::{Driver, INPUT_QUEUE, Input, message_topic},
    topology::Topology,
};

/// The payload type of swarm messages in the reliable messenger.
const SWARM_MESSAGE_TYPE: &str = "dxos.mesh.swarm.SwarmMessage";
/// Events buffered for each receiver of a swarm's events.
const EVENT_CAPACITY: usize = 1024;

type Routes = Arc<Mutex<HashMap<DiscoveryKey, mpsc::Sender<Input>>>>;

/// One peer's swarms.
#[derive(Clone)]
pub struct NetworkManager {
    own: PublicKey,
    signal: Arc<dyn Signal>,
    messenger: Messenger,
    transports: Arc<dyn TransportFactory>,
    config: SwarmConfig,
    routes: Routes,
}

impl std::fmt::Debug for NetworkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkManager").field("own", &self.own).finish_non_exhaustive()
    }
}

/// A joined swarm.
#[derive(Debug)]
pub struct SwarmHandle {
    topic: DiscoveryKey,
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    manager: NetworkManager,
    driver: tokio::task::JoinHandle<()>,
}

impl SwarmHandle {
    /// The swarm's topic.
    pub fn topic(&self) -> DiscoveryKey {
        self.topic
    }

    /// Events from now on: connections up and down, connection states.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Leaves the swarm: signaling first (others see PeerLeft), then every connection closes,
    /// each protocol finishing its graceful close first (a few seconds at most). Returns once
    /// all connections are closed, so a process may exit right after without leaving the others
    /// to find out by timeout (over UDP, nothing else would tell them).
    pub async fn leave(self) -> Result<(), SignalError> {
        let result = self.manager.signal.leave(self.topic, self.manager.own).await;
        self.manager.routes_lock().remove(&self.topic);
        let _ = self.inputs.send(Input::Leave).await;
        let _ = self.driver.await;
        result
    }
}

impl NetworkManager {
    /// A manager for `own`, signaling through `signal` and connecting with `transports`. Opens
    /// `own`'s inbox for swarm messages.
    pub async fn new(
        own: PublicKey,
        signal: Arc<dyn Signal>,
        transports: Arc<dyn TransportFactory>,
        config: SwarmConfig,
    ) -> Result<Self, SignalError> {
        let messenger = Messenger::new(signal.clone());
        let messages = messenger.listen(own, Some(SWARM_MESSAGE_TYPE)).await?;
        let routes: Routes = Arc::default();
        tokio::spawn(route_messages(messages, routes.clone()));
        tokio::spawn(route_swarm_events(signal.events(), routes.clone()));
        Ok(Self { own, signal, messenger, transports, config, routes })
    }

    /// This peer.
    pub fn own(&self) -> PublicKey {
        self.own
    }

    /// Joins `topic`, keeping the connections `topology` asks for and running `protocol` over each.
    pub async fn join(
        &self,
        topic: DiscoveryKey,
        topology: Box<dyn Topology>,
        protocol: Arc<dyn Protocol>,
    ) -> Result<SwarmHandle, SignalError> {
        let (inputs, receiver) = mpsc::channel(INPUT_QUEUE);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let swarm = Swarm::new(self.own, topic, topology, self.config.clone(), rand::random())
            .with_link_nonces(self.transports.authenticates_links());
        let driver = Driver {
            swarm,
            inputs: receiver,
            feedback: inputs.clone(),
            messenger: self.messenger.clone(),
            transports: self.transports.clone(),
            protocol,
            events: events.clone(),
            connections: tokio_util::task::TaskTracker::new(),
        };
        let driver = tokio::spawn(driver.run());
        self.routes_lock().insert(topic, inputs.clone());
        self.signal.join(topic, self.own).await?;
        Ok(SwarmHandle { topic, inputs, events, manager: self.clone(), driver })
    }

    fn routes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<DiscoveryKey, mpsc::Sender<Input>>> {
        lock(&self.routes)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding this lock; a poisoned one still holds valid routes.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn route(routes: &Routes, topic: &DiscoveryKey) -> Option<mpsc::Sender<Input>> {
    lock(routes).get(topic).cloned()
}

async fn route_messages(mut messages: mpsc::Receiver<mesh_signal::SignalMessage>, routes: Routes) {
    while let Some(message) = messages.recv().await {
        let Ok(swarm_message) = any::decode_value::<SwarmMessage>(&message.payload) else {
            debug!("dropped an undecodable swarm message");
            continue;
        };
        let Some(topic) = message_topic(&swarm_message) else { continue };
        if let Some(inputs) = route(&routes, &topic) {
            let _ = inputs.send(Input::Message(message.author, swarm_message)).await;
        }
    }
}

async fn route_swarm_events(mut events: broadcast::Receiver<SignalEvent>, routes: Routes) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(missed, "swarms fell behind signaling");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let (topic, input) = match event {
            SignalEvent::PeerAvailable { topic, peer, .. } => (topic, Input::Available(peer)),
            SignalEvent::PeerLeft { topic, peer } => (topic, Input::Left(peer)),
            _ => continue,
        };
        if let Some(inputs) = route(&routes, &topic) {
            let _ = inputs.send(input).await;
        }
    }
}
