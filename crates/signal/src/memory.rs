//! An in-memory signal network behind the [`Signal`] trait, for unit tests and simulation.
//!
//! Every [`MemorySignal`] of one [`MemoryNetwork`] sees the same swarms and inboxes, as if they all
//! used one signal server. Delivery is immediate and in order; a send filter can drop sends to model
//! loss. Dropping a `MemorySignal` is a disconnect: its peers leave their swarms.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, PublicKey};
use tokio::sync::broadcast;

use crate::{Event, Signal, SignalError, SignalMessage};

/// Events buffered for each receiver of a [`MemorySignal`].
const EVENT_CAPACITY: usize = 4096;

/// Decides, for the n-th send on the network (counting from 1), whether it is lost.
type SendFilter = Box<dyn FnMut(u64) -> bool + Send>;

#[derive(Default)]
struct State {
    /// topic → peer → (since, clients that joined as that peer)
    topics: BTreeMap<DiscoveryKey, BTreeMap<PublicKey, (SystemTime, BTreeSet<u64>)>>,
    inboxes: BTreeMap<PublicKey, BTreeSet<u64>>,
    clients: HashMap<u64, broadcast::Sender<Event>>,
    next_client: u64,
    sends: u64,
    filter: Option<SendFilter>,
}

/// A shared in-memory signal network. Cloning gives another handle to the same network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork").finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new client of this network.
    pub fn client(&self) -> MemorySignal {
        let mut state = self.lock();
        let id = state.next_client;
        state.next_client += 1;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        state.clients.insert(id, events.clone());
        MemorySignal { network: self.clone(), id, events }
    }

    /// Loses every send for which `lost(n)` is true, n counting sends from 1.
    pub fn set_send_filter(&self, lost: impl FnMut(u64) -> bool + Send + 'static) {
        self.lock().filter = Some(Box::new(lost));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held is a bug elsewhere; the maps stay consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn emit(&self, client: u64, event: Event) {
        if let Some(events) = self.clients.get(&client) {
            let _ = events.send(event);
        }
    }

    fn join(&mut self, client: u64, topic: DiscoveryKey, peer: PublicKey) {
        let members = self.topics.entry(topic).or_default();
        let since = SystemTime::now();
        let (member_since, clients) = members.entry(peer).or_insert_with(|| (since, BTreeSet::new()));
        let member_since = *member_since;
        if !clients.insert(client) {
            return;
        }
        let mut events = Vec::new();
        for (other, (other_since, other_clients)) in members.iter().filter(|(other, _)| **other != peer) {
            events.push((client, Event::PeerAvailable { topic, peer: *other, since: Some(*other_since) }));
            for other_client in other_clients {
                events.push((*other_client, Event::PeerAvailable { topic, peer, since: Some(member_since) }));
            }
        }
        for (to, event) in events {
            self.emit(to, event);
        }
    }

    /// `client` stops being `peer` in `topic`. The other members hear PeerLeft when it was the
    /// peer's last client; `client` itself hears PeerLeft for everyone it saw there when this was
    /// its last join in the topic, as a real client reports its view when it leaves.
    fn leave(&mut self, client: u64, topic: DiscoveryKey, peer: PublicKey) {
        let Some(members) = self.topics.get_mut(&topic) else { return };
        let Some((_, clients)) = members.get_mut(&peer) else { return };
        if !clients.remove(&client) {
            return;
        }
        let peer_gone = clients.is_empty();
        if peer_gone {
            members.remove(&peer);
        }
        let still_watching = members.values().any(|(_, clients)| clients.contains(&client));
        let seen: Vec<PublicKey> = if still_watching {
            Vec::new()
        } else {
            members.keys().filter(|p| **p != peer).copied().collect()
        };
        let remaining: Vec<u64> = if peer_gone {
            members.values().flat_map(|(_, clients)| clients.iter().copied()).collect()
        } else {
            Vec::new()
        };
        if members.is_empty() {
            self.topics.remove(&topic);
        }
        for to in remaining {
            self.emit(to, Event::PeerLeft { topic, peer });
        }
        for other in seen {
            self.emit(client, Event::PeerLeft { topic, peer: other });
        }
    }

    /// The peers `client` was told about in `topic`: each of its joins sees every member but
    /// itself.
    fn members(&self, client: u64, topic: DiscoveryKey) -> Vec<PublicKey> {
        let Some(members) = self.topics.get(&topic) else { return Vec::new() };
        let joined: Vec<PublicKey> = members
            .iter()
            .filter(|(_, (_, clients))| clients.contains(&client))
            .map(|(peer, _)| *peer)
            .collect();
        match joined.as_slice() {
            [] => Vec::new(),
            [only] => members.keys().filter(|peer| *peer != only).copied().collect(),
            _ => members.keys().copied().collect(),
        }
    }

    fn disconnect(&mut self, client: u64) {
        let joined: Vec<(DiscoveryKey, PublicKey)> = self
            .topics
            .iter()
            .flat_map(|(topic, members)| {
                members
                    .iter()
                    .filter(|(_, (_, clients))| clients.contains(&client))
                    .map(|(peer, _)| (*topic, *peer))
            })
            .collect();
        for (topic, peer) in joined {
            self.leave(client, topic, peer);
        }
        self.inboxes.retain(|_, clients| {
            clients.remove(&client);
            !clients.is_empty()
        });
        self.clients.remove(&client);
    }
}

/// One client of a [`MemoryNetwork`].
pub struct MemorySignal {
    network: MemoryNetwork,
    id: u64,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for MemorySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySignal").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for MemorySignal {
    fn drop(&mut self) {
        self.network.lock().disconnect(self.id);
    }
}

#[async_trait]
impl Signal for MemorySignal {
    async fn join(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.network.lock().join(self.id, topic, peer);
        Ok(())
    }

    async fn leave(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.network.lock().leave(self.id, topic, peer);
        Ok(())
    }

    async fn subscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.network.lock().inboxes.entry(peer).or_default().insert(self.id);
        Ok(())
    }

    async fn unsubscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        let mut state = self.network.lock();
        if let Some(clients) = state.inboxes.get_mut(&peer) {
            clients.remove(&self.id);
            if clients.is_empty() {
                state.inboxes.remove(&peer);
            }
        }
        Ok(())
    }

    async fn send(&self, message: SignalMessage) -> Result<(), SignalError> {
        let mut state = self.network.lock();
        state.sends += 1;
        let sends = state.sends;
        // A lost send looks like a successful one to the sender, as on a real network.
        if state.filter.as_mut().is_some_and(|lost| lost(sends)) {
            return Ok(());
        }
        let recipients: Vec<u64> =
            state.inboxes.get(&message.recipient).into_iter().flatten().copied().collect();
        for client in recipients {
            state.emit(client, Event::Message(message.clone()));
        }
        Ok(())
    }

    async fn members(&self, topic: DiscoveryKey) -> Result<Vec<PublicKey>, SignalError> {
        Ok(self.network.lock().members(self.id, topic))
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
