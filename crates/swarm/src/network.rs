//! The network manager: one peer's swarms, over one signaling connection and one transport kind.
//!
//! Each swarm reads its own feeds: a messenger listener that takes only its topic's swarm
//! messages (acknowledged only once the swarm's queue took them, so a swarm that is behind gets
//! them again from the sender's resends and never holds up another swarm) and its own receiver of
//! signaling's events.
//!
//! The manager owns its tasks: every swarm's task ends when the last clone of the manager (each
//! [`SwarmHandle`] holds one) is dropped.

use std::sync::{Arc, Mutex};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{any, dxos::mesh::swarm::SwarmMessage};
use mesh_signal::{Messenger, Signal, SignalError, SignalMessage};
use mesh_transport::TransportFactory;
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinSet,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    Event, Protocol, Swarm, SwarmConfig,
    driver::{Driver, Feeds, INPUT_QUEUE, Input, Lifetime, Services, message_topic},
    topology::Topology,
};

/// The payload type of swarm messages in the reliable messenger.
const SWARM_MESSAGE_TYPE: &str = "dxos.mesh.swarm.SwarmMessage";
/// Events buffered for each receiver of a swarm's events.
const EVENT_CAPACITY: usize = 1024;

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
    /// Every swarm's task; dropped (so aborted) with the last manager.
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
        let _ = self.inputs.send(Input::Leave).await;
        // Either the task said it ended or it is gone: both mean done.
        let _ = (&mut self.done).await;
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
        signal.subscribe(own).await?;
        let tasks = Mutex::new(JoinSet::new());
        Ok(Self { shared: Arc::new(Shared { own, signal, messenger, transports, config, tasks }) })
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
        // Subscribed before joining, so the swarm hears every member signaling announces.
        let feeds = Feeds {
            messages: shared
                .messenger
                .listen_where(shared.own, Some(SWARM_MESSAGE_TYPE), move |message| is_for(topic, message))
                .await?,
            events: shared.signal.events(),
        };
        let lifetime = Lifetime { stop: stop.clone(), done: done_sender };
        let driver =
            Driver::new(swarm, services, (inputs.clone(), receiver), feeds, events.clone(), lifetime);
        {
            let mut tasks = lock(&shared.tasks);
            // Forget the swarms that ended since the last join.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(driver.run());
        }
        let handle =
            SwarmHandle { topic, inputs, events, manager: self.clone(), _stop: stop.drop_guard(), done };
        // On failure the handle drops, which stops the swarm's task.
        shared.signal.join(topic, shared.own).await?;
        Ok(handle)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `message` is a swarm message of `topic`.
fn is_for(topic: DiscoveryKey, message: &SignalMessage) -> bool {
    any::decode_value::<SwarmMessage>(&message.payload)
        .is_ok_and(|swarm| message_topic(&swarm) == Some(topic))
}
