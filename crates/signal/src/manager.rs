//! Several signal servers used as one: joins and sends go to all of them, and what comes back is
//! merged, so each swarm change and each message reaches the user once.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use async_trait::async_trait;
use futures::{StreamExt, stream::FuturesUnordered};
use mesh_keys::{DiscoveryKey, PublicKey};
use tokio::sync::{broadcast, mpsc};

use crate::{Client, ConnectionState, Event, Signal, SignalError, SignalMessage};

/// Messages remembered to drop duplicates arriving through other servers.
const REMEMBERED_MESSAGES: usize = 8192;
/// Events buffered for each receiver of [`Manager::events`].
const EVENT_CAPACITY: usize = 4096;

/// Merges the event streams of several sources, dropping what another source already reported.
///
/// A peer is available while at least one source says so: PeerAvailable is passed on when the first
/// source reports it, PeerLeft when the last one that reported it does. A source that disconnects
/// stops vouching for its peers without a PeerLeft (its client re-announces them on reconnect).
#[derive(Debug, Default)]
pub struct Merge {
    available: HashMap<(DiscoveryKey, PublicKey), HashSet<usize>>,
    urls: HashMap<String, usize>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
}

impl Merge {
    /// An empty merge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an event from source `source`; returns it if the user should see it.
    pub fn accept(&mut self, source: usize, event: Event) -> Option<Event> {
        match &event {
            Event::PeerAvailable { topic, peer, .. } => {
                let sources = self.available.entry((*topic, *peer)).or_default();
                let first = sources.is_empty();
                sources.insert(source);
                first.then_some(event)
            }
            Event::PeerLeft { topic, peer } => {
                let sources = self.available.get_mut(&(*topic, *peer))?;
                if !sources.remove(&source) || !sources.is_empty() {
                    return None;
                }
                self.available.remove(&(*topic, *peer));
                Some(event)
            }
            Event::Message(message) => self.first_sighting(message).then_some(event),
            Event::Connection { url, state } => {
                self.urls.insert(url.clone(), source);
                if *state != ConnectionState::Connected {
                    self.available.retain(|_, sources| {
                        sources.remove(&source);
                        !sources.is_empty()
                    });
                }
                Some(event)
            }
        }
    }

    fn first_sighting(&mut self, message: &SignalMessage) -> bool {
        let mut hasher = DefaultHasher::new();
        message.hash(&mut hasher);
        let digest = hasher.finish();
        if !self.seen.insert(digest) {
            return false;
        }
        self.seen_order.push_back(digest);
        if self.seen_order.len() > REMEMBERED_MESSAGES
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

/// Several signal sources used as one [`Signal`].
#[derive(Clone)]
pub struct Manager {
    sources: Arc<Vec<Arc<dyn Signal>>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("sources", &self.sources.len()).finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager of a [`Client`] for each URL. A URL that cannot be reached does no harm: its
    /// client keeps retrying in the background.
    pub fn connect<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Result<Self, SignalError> {
        let sources = urls
            .into_iter()
            .map(|url| Client::connect(url).map(|client| Arc::new(client) as Arc<dyn Signal>))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(sources))
    }

    /// A manager of any signal sources, on the current tokio runtime.
    pub fn new(sources: Vec<Arc<dyn Signal>>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (merged_tx, merged_rx) = mpsc::channel(EVENT_CAPACITY);
        for (index, source) in sources.iter().enumerate() {
            tokio::spawn(forward(index, source.events(), merged_tx.clone()));
        }
        tokio::spawn(merge(merged_rx, events.clone()));
        Self { sources: Arc::new(sources), events }
    }

    async fn for_each(
        &self,
        action: impl Fn(Arc<dyn Signal>) -> futures::future::BoxFuture<'static, Result<(), SignalError>>,
    ) -> Result<(), SignalError> {
        let mut last_error = None;
        for source in self.sources.iter() {
            if let Err(err) = action(source.clone()).await {
                last_error = Some(err);
            }
        }
        match last_error {
            Some(err) if self.sources.len() == 1 => Err(err),
            _ => Ok(()),
        }
    }
}

async fn forward(index: usize, mut events: broadcast::Receiver<Event>, merged: mpsc::Sender<(usize, Event)>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                if merged.send((index, event)).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(source = index, missed, "signal manager fell behind a source");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn merge(mut merged: mpsc::Receiver<(usize, Event)>, events: broadcast::Sender<Event>) {
    let mut state = Merge::new();
    while let Some((source, event)) = merged.recv().await {
        if let Some(event) = state.accept(source, event) {
            let _ = events.send(event);
        }
    }
}

#[async_trait]
impl Signal for Manager {
    async fn join(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.join(topic, peer).await })).await
    }

    async fn leave(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.leave(topic, peer).await })).await
    }

    async fn subscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.subscribe(peer).await })).await
    }

    async fn unsubscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.unsubscribe(peer).await })).await
    }

    /// Sends through every source at once and returns when the first accepts it; the others go on
    /// in the background, so a dead server never delays a send.
    async fn send(&self, message: SignalMessage) -> Result<(), SignalError> {
        let mut sends: FuturesUnordered<_> = self
            .sources
            .iter()
            .map(|source| {
                let (source, message) = (source.clone(), message.clone());
                tokio::spawn(async move { source.send(message).await })
            })
            .collect();
        let mut last_error = SignalError::Closed;
        while let Some(result) = sends.next().await {
            match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) => last_error = err,
                Err(_) => last_error = SignalError::Closed,
            }
        }
        Err(last_error)
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use mesh_keys::Keypair;
    use mesh_proto::Any;

    use super::*;

    fn key() -> PublicKey {
        Keypair::generate().public()
    }

    #[test]
    fn a_peer_is_announced_once_and_leaves_with_its_last_source() {
        let (topic, peer) = (DiscoveryKey::from_party(&key()), key());
        let available = Event::PeerAvailable { topic, peer, since: None };
        let left = Event::PeerLeft { topic, peer };
        let mut merge = Merge::new();
        assert!(merge.accept(0, available.clone()).is_some());
        assert!(merge.accept(1, available.clone()).is_none());
        assert!(merge.accept(0, left.clone()).is_none());
        assert!(merge.accept(1, left.clone()).is_some());
        assert!(merge.accept(1, left).is_none(), "a repeated PeerLeft is dropped");
    }

    #[test]
    fn a_disconnected_source_stops_vouching_silently() {
        let (topic, peer) = (DiscoveryKey::from_party(&key()), key());
        let mut merge = Merge::new();
        merge.accept(0, Event::PeerAvailable { topic, peer, since: None });
        let down = Event::Connection { url: "ws://a".into(), state: ConnectionState::Disconnected };
        assert!(merge.accept(0, down).is_some());
        // After the reconnect the source announces the peer again, and the user hears of it again.
        assert!(merge.accept(0, Event::PeerAvailable { topic, peer, since: None }).is_some());
    }

    #[test]
    fn a_message_through_two_servers_is_delivered_once() {
        let message = SignalMessage {
            author: key(),
            recipient: key(),
            payload: Any { type_url: "t".into(), value: vec![1, 2, 3] },
        };
        let mut merge = Merge::new();
        assert!(merge.accept(0, Event::Message(message.clone())).is_some());
        assert!(merge.accept(1, Event::Message(message.clone())).is_none());
        let other = SignalMessage { payload: Any { type_url: "t".into(), value: vec![4] }, ..message };
        assert!(merge.accept(1, Event::Message(other)).is_some());
    }
}
