//! In-memory transport: in-process pipes between peers of one process, shaped with latency and
//! bandwidth, and with a share of connections that never come up, for tests and simulation.
//!
//! The initiator registers a pending connection under a random id and signals
//! `{transportId: HEX}` (as DXOS's memory transport does); the other side answers by taking it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_proto::Struct;
use rand::{RngExt, SeedableRng, rngs::SmallRng};
use tokio::sync::oneshot;

pub use crate::pipe::Shape;
use crate::{
    ByteStream, Metered, Transport, TransportError, TransportFactory, TransportKind, TransportOptions,
    TransportStats, lock, metered::Counters, pipe::pipe,
};

/// Network conditions of a [`MemoryTransportFactory`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Conditions {
    /// Latency and bandwidth of every connection.
    pub shape: Shape,
    /// Share of connections (0 to 1) that fail instead of coming up.
    pub loss: f64,
}

type Pending = oneshot::Sender<Result<ByteStream, TransportError>>;

struct Hub {
    pending: HashMap<PublicKey, Pending>,
    rng: SmallRng,
}

/// Makes [`MemoryTransport`]s that connect to each other. Clones share one set of pending
/// connections, so every peer of a test or simulation should use clones of one factory.
#[derive(Clone)]
pub struct MemoryTransportFactory {
    hub: Arc<Mutex<Hub>>,
    conditions: Conditions,
}

impl std::fmt::Debug for MemoryTransportFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransportFactory").field("conditions", &self.conditions).finish_non_exhaustive()
    }
}

impl Default for MemoryTransportFactory {
    fn default() -> Self {
        Self::new(Conditions::default(), 0)
    }
}

impl MemoryTransportFactory {
    /// A factory whose connections see `conditions`; `seed` makes ids and losses reproducible.
    pub fn new(conditions: Conditions, seed: u64) -> Self {
        let hub = Hub { pending: HashMap::new(), rng: SmallRng::seed_from_u64(seed) };
        Self { hub: Arc::new(Mutex::new(hub)), conditions }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.hub)
    }
}

impl TransportFactory for MemoryTransportFactory {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let (own_result, result) = oneshot::channel();
        Arc::new(MemoryTransport {
            options,
            factory: self.clone(),
            own_result: Mutex::new(Some(own_result)),
            result: tokio::sync::Mutex::new(Some(result)),
            registered: Mutex::new(None),
            counters: Arc::default(),
        })
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Memory
    }
}

/// One in-memory connection attempt.
pub struct MemoryTransport {
    options: TransportOptions,
    factory: MemoryTransportFactory,
    /// Where this side's stream (or failure) is delivered: by the remote for the initiator, by
    /// `signal` for the other side.
    own_result: Mutex<Option<Pending>>,
    result: tokio::sync::Mutex<Option<oneshot::Receiver<Result<ByteStream, TransportError>>>>,
    /// The id the initiator registered, to withdraw it on close.
    registered: Mutex<Option<PublicKey>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport").field("initiator", &self.options.initiator).finish_non_exhaustive()
    }
}

impl MemoryTransport {
    fn deliver(&self, result: Result<ByteStream, TransportError>) {
        if let Some(own) = lock(&self.own_result).take() {
            let _ = own.send(result);
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn open(&self) -> Result<(), TransportError> {
        if !self.options.initiator {
            return Ok(());
        }
        let Some(own) = lock(&self.own_result).take() else { return Err(TransportError::Closed) };
        let id = {
            let mut hub = self.factory.hub();
            let id = PublicKey::random_from(&mut hub.rng);
            hub.pending.insert(id, own);
            id
        };
        *lock(&self.registered) = Some(id);
        self.options.signals.send(Struct::new().with("transportId", id.to_hex())).await
    }

    async fn signal(&self, payload: Struct) -> Result<(), TransportError> {
        if self.options.initiator {
            return Ok(());
        }
        let id: PublicKey = payload
            .get("transportId")
            .and_then(|value| value.as_str())
            .and_then(|hex| hex.parse().ok())
            .ok_or_else(|| {
                TransportError::BadSignal("expected {transportId} with a 64-digit hex id".into())
            })?;
        let (remote, lost) = {
            let mut hub = self.factory.hub();
            let remote = hub.pending.remove(&id);
            let loss = self.factory.conditions.loss;
            let lost = loss > 0.0 && hub.rng.random_bool(loss.min(1.0));
            (remote, lost)
        };
        let Some(remote) = remote else {
            self.deliver(Err(TransportError::Failed("no pending connection with that id".into())));
            return Ok(());
        };
        if lost {
            let _ = remote.send(Err(TransportError::Failed("connection lost (simulated)".into())));
            self.deliver(Err(TransportError::Failed("connection lost (simulated)".into())));
            return Ok(());
        }
        let (theirs, ours) = pipe(self.factory.conditions.shape);
        let _ = remote.send(Ok(theirs));
        self.deliver(Ok(ours));
        Ok(())
    }

    async fn connected(&self) -> Result<ByteStream, TransportError> {
        let receiver = self.result.lock().await.take().ok_or(TransportError::Closed)?;
        let stream = receiver.await.map_err(|_| TransportError::Closed)??;
        Ok(Box::new(Metered::new(stream, self.counters.clone())))
    }

    async fn close(&self) {
        if let Some(id) = lock(&self.registered).take() {
            self.factory.hub().pending.remove(&id);
        }
        self.deliver(Err(TransportError::Closed));
    }

    fn stats(&self) -> TransportStats {
        self.counters.stats()
    }
}
