//! Several signal servers used as one: joins and sends go to all of them, and what comes back is
//! merged, so each swarm change and each message reaches the user once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use futures::{StreamExt, stream::FuturesUnordered};
use mesh_keys::{DiscoveryKey, PublicKey};
use tokio::sync::broadcast;
use tokio_util::task::AbortOnDropHandle;

use crate::{Client, ClientConfig, Event, Signal, SignalError, SignalMessage};

mod merge;

pub use merge::Merge;

/// Events buffered for each receiver of [`Manager::events`].
const EVENT_CAPACITY: usize = 4096;

/// What the manager's handles and its merging task share.
#[derive(Default)]
struct Shared {
    merge: Merge,
    /// The joins asked for, so a source whose events were missed can be asked who is there.
    joined: HashSet<(DiscoveryKey, PublicKey)>,
}

/// Several signal sources used as one [`Signal`]. Cloning gives another handle; the merging of
/// the sources' events stops when the last handle is dropped.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Arc<[Arc<dyn Signal>]>,
    events: broadcast::Sender<Event>,
    shared: Arc<Mutex<Shared>>,
    _merging: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("sources", &self.inner.sources.len()).finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager of a [`Client`] with the default settings for each URL. A URL that cannot be
    /// reached does no harm: its client keeps retrying in the background.
    pub fn connect<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Result<Self, SignalError> {
        Self::with_configs(urls.into_iter().map(ClientConfig::new))
    }

    /// A manager of a [`Client`] for each configuration, e.g. with the keys to prove to each
    /// server ([`ClientConfig::identities`]).
    pub fn with_configs(configs: impl IntoIterator<Item = ClientConfig>) -> Result<Self, SignalError> {
        let sources = configs
            .into_iter()
            .map(|config| Client::with_config(config).map(|client| Arc::new(client) as Arc<dyn Signal>))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(sources))
    }

    /// A manager of any signal sources, on the current tokio runtime.
    pub fn new(sources: Vec<Arc<dyn Signal>>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let sources: Arc<[Arc<dyn Signal>]> = sources.into();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let merging = tokio::spawn(merge_sources(sources.clone(), shared.clone(), events.clone()));
        let inner = Inner { sources, events, shared, _merging: AbortOnDropHandle::new(merging) };
        Self { inner: Arc::new(inner) }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.inner.shared)
    }

    async fn for_each(
        &self,
        action: impl Fn(Arc<dyn Signal>) -> futures::future::BoxFuture<'static, Result<(), SignalError>>,
    ) -> Result<(), SignalError> {
        let mut last_error = None;
        for source in self.inner.sources.iter() {
            if let Err(err) = action(source.clone()).await {
                last_error = Some(err);
            }
        }
        match last_error {
            Some(err) if self.inner.sources.len() == 1 => Err(err),
            _ => Ok(()),
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Nothing panics while holding it; a poisoned lock still holds a consistent merge.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The task that merges the sources' events: one task reading every source in turn, owned by the
/// manager. A source whose events it missed (its receiver lagged) is asked who is in each joined
/// topic, so the merged view stays right.
async fn merge_sources(
    sources: Arc<[Arc<dyn Signal>]>,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<Event>,
) {
    let receivers = sources.iter().enumerate().map(|(index, source)| {
        futures::stream::unfold(source.events(), move |mut receiver| async move {
            match receiver.recv().await {
                Err(broadcast::error::RecvError::Closed) => None,
                received => Some(((index, received), receiver)),
            }
        })
        .boxed()
    });
    let mut received = futures::stream::select_all(receivers);
    while let Some((source, event)) = received.next().await {
        let merged = match event {
            Ok(event) => lock(&shared).merge.accept(source, event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(source, missed, "signal manager fell behind a source; resynchronising");
                resync(source, sources[source].as_ref(), &shared).await
            }
            Err(broadcast::error::RecvError::Closed) => continue,
        };
        for event in merged {
            let _ = events.send(event);
        }
    }
}

/// Asks `signal` (source `source`) who is in each joined topic and brings the merge in line.
async fn resync(source: usize, signal: &dyn Signal, shared: &Mutex<Shared>) -> Vec<Event> {
    let topics: HashSet<DiscoveryKey> = lock(shared).joined.iter().map(|(topic, _)| *topic).collect();
    let mut merged = Vec::new();
    for topic in topics {
        match signal.members(topic).await {
            Ok(members) => merged.extend(lock(shared).merge.resync(source, topic, &members)),
            Err(err) => tracing::debug!(source, %err, "could not resynchronise a topic"),
        }
    }
    merged
}

#[async_trait]
impl Signal for Manager {
    async fn join(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.shared().joined.insert((topic, peer));
        self.for_each(|source| Box::pin(async move { source.join(topic, peer).await })).await
    }

    async fn leave(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.shared().joined.remove(&(topic, peer));
        self.for_each(|source| Box::pin(async move { source.leave(topic, peer).await })).await
    }

    async fn subscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.subscribe(peer).await })).await
    }

    async fn unsubscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.for_each(|source| Box::pin(async move { source.unsubscribe(peer).await })).await
    }

    /// Starts the send through every source at once and returns when the first accepts it. The
    /// manager then stops waiting for the others, but a [`Client`] goes on with a send it has
    /// queued, so the message still reaches recipients only another server serves, and a dead
    /// server never delays a send.
    async fn send(&self, message: SignalMessage) -> Result<(), SignalError> {
        let mut sends: FuturesUnordered<_> =
            self.inner.sources.iter().map(|source| source.send(message.clone())).collect();
        let mut last_error = SignalError::Closed;
        while let Some(result) = sends.next().await {
            match result {
                Ok(()) => return Ok(()),
                Err(err) => last_error = err,
            }
        }
        Err(last_error)
    }

    /// The peers at least one source currently reports in `topic`.
    async fn members(&self, topic: DiscoveryKey) -> Result<Vec<PublicKey>, SignalError> {
        Ok(self.shared().merge.members(topic))
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
}
