//! The network manager: one peer's swarms, over one signaling connection and one transport kind.
//!
//! Swarm messages (from the reliable messenger) and swarm events (from signaling) reach each
//! topic's swarm through a route, one small function each, that never waits: a swarm whose input
//! queue is full loses the input rather than holding up every other swarm. (The messenger has
//! already acknowledged such a message, so it is lost; routing by topic in the messenger, with
//! acknowledgements only for accepted messages, will replace `route_message`.)
//!
//! The manager owns its tasks: the two routing tasks and every swarm's task end when the last
//! clone of the manager (each [`SwarmHandle`] holds one) is dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{any, dxos::mesh::swarm::SwarmMessage};
use mesh_signal::{Event as SignalEvent, Messenger, Signal, SignalError, SignalMessage};
use mesh_transport::TransportFactory;
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinSet,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use crate::{
    Event, Protocol, Swarm, SwarmConfig,
    driver::{Driver, INPUT_QUEUE, Input, Lifetime, Services, message_topic},
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
    shared: Arc<Shared>,
}

struct Shared {
    own: PublicKey,
    signal: Arc<dyn Signal>,
    messenger: Messenger,
    transports: Arc<dyn TransportFactory>,
    config: SwarmConfig,
    routes: Routes,
    /// The routing tasks and every swarm's task; dropped (so aborted) with the last manager.
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for NetworkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkManager").field("own", &self.shared.own).finish_non_exhaustive()
    }
}

/// A joined swarm. Dropping it without [`SwarmHandle::leave`] still leaves: the swarm's task
/// tells signaling (best effort) and closes every connection on its own.
#[derive(Debug)]
pub struct SwarmHandle {
    topic: DiscoveryKey,
    inputs: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    manager: NetworkManager,
    /// Tells the swarm's task to leave when the handle is dropped.
    _stop: DropGuard,
    /// Ends when the swarm's task does.
    done: oneshot::Receiver<()>,
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
    pub async fn leave(mut self) -> Result<(), SignalError> {
        let shared = &self.manager.shared;
        let result = shared.signal.leave(self.topic, shared.own).await;
        self.manager.remove_route(self.topic, &self.inputs);
        let _ = self.inputs.send(Input::Leave).await;
        // Either the task said it ended or it is gone: both mean done.
        let _ = (&mut self.done).await;
        result
    }
}

impl Drop for SwarmHandle {
    fn drop(&mut self) {
        self.manager.remove_route(self.topic, &self.inputs);
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
        let mut tasks = JoinSet::new();
        tasks.spawn(route_messages(messages, routes.clone()));
        tasks.spawn(route_swarm_events(signal.events(), routes.clone()));
        let tasks = Mutex::new(tasks);
        Ok(Self { shared: Arc::new(Shared { own, signal, messenger, transports, config, routes, tasks }) })
    }

    /// This peer.
    pub fn own(&self) -> PublicKey {
        self.shared.own
    }

    /// Joins `topic`, keeping the connections `topology` asks for and running `protocol` over each.
    pub async fn join(
        &self,
        topic: DiscoveryKey,
        topology: Box<dyn Topology>,
        protocol: Arc<dyn Protocol>,
    ) -> Result<SwarmHandle, SignalError> {
        let shared = &self.shared;
        let (inputs, receiver) = mpsc::channel(INPUT_QUEUE);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (stop, (done_sender, done)) = (CancellationToken::new(), oneshot::channel());
        let swarm = Swarm::new(shared.own, topic, topology, shared.config.clone(), rand::random())
            .with_link_nonces(shared.transports.authenticates_links());
        let services = Services {
            signal: shared.signal.clone(),
            messenger: shared.messenger.clone(),
            transports: shared.transports.clone(),
            protocol,
        };
        let lifetime = Lifetime { stop: stop.clone(), done: done_sender };
        let driver = Driver::new(swarm, services, (inputs.clone(), receiver), events.clone(), lifetime);
        {
            let mut tasks = lock(&shared.tasks);
            // Forget the swarms that ended since the last join.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(driver.run());
        }
        lock(&shared.routes).insert(topic, inputs.clone());
        let handle =
            SwarmHandle { topic, inputs, events, manager: self.clone(), _stop: stop.drop_guard(), done };
        // On failure the handle drops, which stops the swarm's task.
        shared.signal.join(topic, shared.own).await?;
        Ok(handle)
    }

    /// Removes `topic`'s route if it still leads to `inputs` (not to a later join of the topic).
    fn remove_route(&self, topic: DiscoveryKey, inputs: &mpsc::Sender<Input>) {
        let mut routes = lock(&self.shared.routes);
        if routes.get(&topic).is_some_and(|route| route.same_channel(inputs)) {
            routes.remove(&topic);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn route_messages(mut messages: mpsc::Receiver<SignalMessage>, routes: Routes) {
    while let Some(message) = messages.recv().await {
        route_message(&routes, message);
    }
}

async fn route_swarm_events(mut events: broadcast::Receiver<SignalEvent>, routes: Routes) {
    loop {
        match events.recv().await {
            Ok(event) => route_event(&routes, event),
            Err(broadcast::error::RecvError::Lagged(missed)) => warn!(missed, "swarms fell behind signaling"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Hands a swarm message to the swarm of the topic it names.
fn route_message(routes: &Routes, message: SignalMessage) {
    let Ok(swarm_message) = any::decode_value::<SwarmMessage>(&message.payload) else {
        debug!("dropped an undecodable swarm message");
        return;
    };
    let Some(topic) = message_topic(&swarm_message) else { return };
    if !deliver(routes, topic, Input::Message(message.author, swarm_message)) {
        debug!(topic = %topic.short(), "a swarm is behind; dropped a swarm message for it");
    }
}

/// Hands a peer's arrival or departure to the swarm of its topic.
fn route_event(routes: &Routes, event: SignalEvent) {
    let (topic, input) = match event {
        SignalEvent::PeerAvailable { topic, peer, .. } => (topic, Input::Available(peer)),
        SignalEvent::PeerLeft { topic, peer } => (topic, Input::Left(peer)),
        _ => return,
    };
    if !deliver(routes, topic, input) {
        warn!(topic = %topic.short(), "a swarm is behind; dropped a membership event for it");
    }
}

/// Queues `input` for `topic`'s swarm without waiting; false if the swarm's queue is full.
fn deliver(routes: &Routes, topic: DiscoveryKey, input: Input) -> bool {
    let Some(inputs) = lock(routes).get(&topic).cloned() else { return true };
    !matches!(inputs.try_send(input), Err(mpsc::error::TrySendError::Full(_)))
}
