//! Blob sync over connections: the extension `mesh.blobs` on each connection and the store it
//! serves from and fetches into.
//!
//! On opening, each side tells the other which whole blobs it holds (`Have`). A fetch asks the
//! connections whose remote holds the blob for ranges in turn (`Want`), a bounded window at a
//! time (see [`Fetch`]); each answer (`Data`) is verified piece by piece and only what is still
//! missing is asked again, so a connection that drops mid-transfer costs nothing already
//! received: the fetch goes on with another holder, or with the same one once it is back. A peer
//! that completes a blob tells its connections, so blobs travel along chains.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_proto::mesh::v1::{BlobData, BlobHave, BlobMessage, BlobRefused, BlobWant, blob_message::Kind};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::message_port::MessagePort;

use super::{
    Blob, BlobHash, ChunkRanges, Fetch, REQUEST_CHUNKS, WINDOW_CHUNKS, fetch::count, ranges_from_wire,
    ranges_to_wire,
};

/// The extension's name on every connection.
pub const EXTENSION: &str = "mesh.blobs";
/// Messages waiting to be sent per connection.
const OUTBOX: usize = 64;
/// The port's content type.
const CONTENT_TYPE: &str = "application/x-protobuf; messageType=\"mesh.v1.BlobMessage\"";
/// Blobs announced to one connection at most, and remembered per connection.
const MAX_HAVES: usize = 4096;

/// Bounds of a [`Blobs`] store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BlobsConfig {
    /// The largest blob fetched, in bytes (a fetch holds it in memory). Default: 1 GiB.
    pub max_blob_size: u64,
    /// Chunks (1 KiB) asked for per request. Default: 1,024.
    pub request_chunks: u64,
    /// Chunks asked for and unanswered per fetch at most. Default: 4,096.
    pub window_chunks: u64,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        Self { max_blob_size: 1 << 30, request_chunks: REQUEST_CHUNKS, window_chunks: WINDOW_CHUNKS }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The blob is larger than [`BlobsConfig::max_blob_size`].
    #[error("the blob is {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// Its announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The store was dropped.
    #[error("the blob store is gone")]
    Closed,
}

/// One peer's blobs, shared by all of its connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: BlobsConfig,
    state: Mutex<State>,
}

/// What a [`Blobs`] store counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobStats {
    /// Bytes of verified pieces received (a piece received twice counts twice).
    pub received: u64,
    /// Bytes of blob content sent in answers.
    pub served: u64,
    /// Answers that did not verify.
    pub invalid: u64,
}

#[derive(Debug, Default)]
struct State {
    stats: BlobStats,
    complete: HashMap<BlobHash, Arc<Blob>>,
    fetches: HashMap<BlobHash, Fetching>,
    /// Open connections by session.
    links: HashMap<PublicKey, Link>,
}

#[derive(Debug)]
struct Fetching {
    /// Set once a holder announced the size.
    fetch: Option<Fetch>,
    /// Requests under way: (session, ranges).
    pending: Vec<(PublicKey, ChunkRanges)>,
    progress: watch::Sender<(u64, u64)>,
    waiters: Vec<oneshot::Sender<Result<Arc<Blob>, FetchError>>>,
}

#[derive(Debug)]
struct Link {
    outbox: mpsc::Sender<BlobMessage>,
    /// Blobs the remote holds, with their sizes.
    has: HashMap<BlobHash, u64>,
}

impl Default for Blobs {
    fn default() -> Self {
        Self::new(BlobsConfig::default())
    }
}

impl Blobs {
    /// An empty store.
    pub fn new(config: BlobsConfig) -> Self {
        Self { shared: Arc::new(Shared { config, state: Mutex::default() }) }
    }

    /// The extension for one more connection, to add as [`EXTENSION`].
    pub fn extension(&self) -> BlobsExtension {
        BlobsExtension { shared: self.shared.clone(), open: Mutex::new(None) }
    }

    /// Adds `data` as a blob, tells every connection, and returns its name.
    pub fn add(&self, data: Vec<u8>) -> BlobHash {
        let blob = Arc::new(Blob::new(data));
        let hash = blob.hash();
        let mut state = self.shared.lock();
        state.complete.insert(hash, blob.clone());
        announce(&state, &blob);
        hash
    }

    /// What this store counted so far.
    pub fn stats(&self) -> BlobStats {
        self.shared.lock().stats
    }

    /// The blob `hash`, if it is held whole.
    pub fn get(&self, hash: &BlobHash) -> Option<Arc<Blob>> {
        self.shared.lock().complete.get(hash).cloned()
    }

    /// Fetches `hash` from the connections whose remote holds it (now or once one does); resolves
    /// with the whole, verified blob.
    pub async fn fetch(&self, hash: BlobHash) -> Result<Arc<Blob>, FetchError> {
        self.start_fetch(hash).finished().await
    }

    /// Starts fetching `hash` (or joins the fetch under way) and returns at once, with its
    /// progress to watch.
    pub fn start_fetch(&self, hash: BlobHash) -> FetchHandle {
        let (waiter, done) = oneshot::channel();
        let mut state = self.shared.lock();
        if let Some(blob) = state.complete.get(&hash) {
            let chunks = blob.len().div_ceil(1024);
            let _ = waiter.send(Ok(blob.clone()));
            return FetchHandle { progress: watch::channel((chunks, chunks)).1, done };
        }
        let fetching = state.fetches.entry(hash).or_insert_with(|| Fetching {
            fetch: None,
            pending: Vec::new(),
            progress: watch::channel((0, 0)).0,
            waiters: Vec::new(),
        });
        fetching.waiters.push(waiter);
        let progress = fetching.progress.subscribe();
        let size = state.links.values().find_map(|link| link.has.get(&hash).copied());
        if let Some(size) = size {
            self.shared.start(&mut state, hash, size);
        }
        FetchHandle { progress, done }
    }
}

/// A fetch under way: its progress, and its end.
#[derive(Debug)]
pub struct FetchHandle {
    progress: watch::Receiver<(u64, u64)>,
    done: oneshot::Receiver<Result<Arc<Blob>, FetchError>>,
}

impl FetchHandle {
    /// (chunks held, chunks in the blob), updated as pieces arrive; (0, 0) until a holder
    /// announced the size.
    pub fn progress(&self) -> watch::Receiver<(u64, u64)> {
        self.progress.clone()
    }

    /// The whole, verified blob.
    pub async fn finished(self) -> Result<Arc<Blob>, FetchError> {
        self.done.await.unwrap_or(Err(FetchError::Closed))
    }
}

/// Tells every connection that `blob` is held.
fn announce(state: &State, blob: &Blob) {
    let have = BlobMessage {
        kind: Some(Kind::Have(BlobHave { hash: blob.hash().as_bytes().to_vec(), size: blob.len() })),
    };
    for link in state.links.values() {
        let _ = link.outbox.try_send(have.clone());
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sizes the fetch of `hash` (if it is not yet) and asks for ranges.
    fn start(&self, state: &mut State, hash: BlobHash, size: u64) {
        let Some(fetching) = state.fetches.get_mut(&hash) else { return };
        if fetching.fetch.is_none() {
            if size > self.config.max_blob_size {
                let limit = self.config.max_blob_size;
                for waiter in state.fetches.remove(&hash).map(|f| f.waiters).unwrap_or_default() {
                    let _ = waiter.send(Err(FetchError::TooLarge { size, limit }));
                }
                return;
            }
            let fetch = Fetch::with_window(hash, size, self.config.request_chunks, self.config.window_chunks);
            fetching.fetch = Some(fetch);
        }
        self.pump(state, hash);
    }

    /// Asks holders of `hash` for the next ranges while the window has room; completes the fetch
    /// when nothing is missing.
    fn pump(&self, state: &mut State, hash: BlobHash) {
        let holders: Vec<PublicKey> =
            state.links.iter().filter(|(_, link)| link.has.contains_key(&hash)).map(|(s, _)| *s).collect();
        let Some(fetching) = state.fetches.get_mut(&hash) else { return };
        let Some(fetch) = fetching.fetch.as_mut() else { return };
        let _ = fetching.progress.send(fetch.progress());
        if fetch.is_complete() {
            let fetching = state.fetches.remove(&hash).expect("present above");
            let Some(fetch) = fetching.fetch else { return };
            let Ok(blob) = fetch.finish() else { return };
            let blob = Arc::new(blob);
            state.complete.insert(hash, blob.clone());
            announce(state, &blob);
            for waiter in fetching.waiters {
                let _ = waiter.send(Ok(blob.clone()));
            }
            return;
        }
        if holders.is_empty() {
            return;
        }
        // Spread requests over the holders, each to the one with the fewest under way.
        while let Some(ranges) = fetch.next_request() {
            let session = *holders
                .iter()
                .min_by_key(|s| fetching.pending.iter().filter(|(p, _)| p == *s).count())
                .expect("holders is not empty");
            let want = BlobMessage {
                kind: Some(Kind::Want(BlobWant {
                    hash: hash.as_bytes().to_vec(),
                    ranges: ranges_to_wire(&ranges),
                })),
            };
            match state.links.get(&session).map(|link| link.outbox.try_send(want)) {
                Some(Ok(())) => fetching.pending.push((session, ranges)),
                _ => {
                    fetch.on_refused(&ranges);
                    break;
                }
            }
        }
    }

    fn connect(&self, session: PublicKey, outbox: mpsc::Sender<BlobMessage>) {
        let mut state = self.lock();
        for blob in state.complete.values().take(MAX_HAVES) {
            let have = BlobHave { hash: blob.hash().as_bytes().to_vec(), size: blob.len() };
            let _ = outbox.try_send(BlobMessage { kind: Some(Kind::Have(have)) });
        }
        state.links.insert(session, Link { outbox, has: HashMap::new() });
    }

    /// The connection `session` ended: what was asked of it is asked of others.
    fn disconnect(&self, session: PublicKey) {
        let mut state = self.lock();
        if state.links.remove(&session).is_none() {
            return;
        }
        let hashes: Vec<BlobHash> = state.fetches.keys().copied().collect();
        for hash in hashes {
            if let Some(fetching) = state.fetches.get_mut(&hash) {
                let (lost, kept): (Vec<_>, Vec<_>) =
                    fetching.pending.drain(..).partition(|(s, _)| *s == session);
                fetching.pending = kept;
                if let Some(fetch) = fetching.fetch.as_mut() {
                    for (_, ranges) in lost {
                        fetch.on_refused(&ranges);
                    }
                }
            }
            self.pump(&mut state, hash);
        }
    }

    /// A message came on the connection `session`.
    fn receive(&self, session: PublicKey, message: BlobMessage) {
        let mut state = self.lock();
        match message.kind {
            Some(Kind::Have(BlobHave { hash, size })) => {
                let Some(hash) = read_hash(&hash) else { return };
                let Some(link) = state.links.get_mut(&session) else { return };
                if link.has.len() < MAX_HAVES || link.has.contains_key(&hash) {
                    link.has.insert(hash, size);
                }
                if state.fetches.contains_key(&hash) {
                    self.start(&mut state, hash, size);
                }
            }
            Some(Kind::Want(BlobWant { hash, ranges })) => {
                let (Some(hash), Some(ranges)) = (read_hash(&hash), ranges_from_wire(&ranges)) else {
                    return;
                };
                let refused = || {
                    Kind::Refused(BlobRefused {
                        hash: hash.as_bytes().to_vec(),
                        ranges: ranges_to_wire(&ranges),
                    })
                };
                let blob = state.complete.get(&hash).cloned();
                let mut encoded = Vec::new();
                let reply = match blob {
                    Some(blob)
                        if count(&ranges) <= self.config.window_chunks
                            && blob.encode(&ranges, &mut encoded).is_ok() =>
                    {
                        state.stats.served += count(&ranges).saturating_mul(1024).min(blob.len());
                        Kind::Data(BlobData {
                            hash: hash.as_bytes().to_vec(),
                            ranges: ranges_to_wire(&ranges),
                            encoded,
                        })
                    }
                    _ => refused(),
                };
                if let Some(link) = state.links.get(&session) {
                    let _ = link.outbox.try_send(BlobMessage { kind: Some(reply) });
                }
            }
            Some(Kind::Data(BlobData { hash, ranges, encoded })) => {
                let (Some(hash), Some(ranges)) = (read_hash(&hash), ranges_from_wire(&ranges)) else {
                    return;
                };
                let Some(fetching) = state.fetches.get_mut(&hash) else { return };
                let Some(position) = fetching.pending.iter().position(|(s, r)| *s == session && *r == ranges)
                else {
                    return;
                };
                fetching.pending.remove(position);
                let outcome = fetching.fetch.as_mut().map(|fetch| fetch.on_response(&ranges, &encoded[..]));
                match outcome {
                    Some(Ok(received)) => state.stats.received += received,
                    Some(Err(err)) => {
                        state.stats.invalid += 1;
                        debug!(%err, "a blob response did not verify; its missing pieces are asked again");
                    }
                    None => {}
                }
                self.pump(&mut state, hash);
            }
            Some(Kind::Refused(BlobRefused { hash, ranges })) => {
                let (Some(hash), Some(ranges)) = (read_hash(&hash), ranges_from_wire(&ranges)) else {
                    return;
                };
                if let Some(link) = state.links.get_mut(&session) {
                    link.has.remove(&hash);
                }
                let Some(fetching) = state.fetches.get_mut(&hash) else { return };
                if let Some(position) =
                    fetching.pending.iter().position(|(s, r)| *s == session && *r == ranges)
                {
                    fetching.pending.remove(position);
                    if let Some(fetch) = fetching.fetch.as_mut() {
                        fetch.on_refused(&ranges);
                    }
                }
                self.pump(&mut state, hash);
            }
            None => {}
        }
    }
}

fn read_hash(bytes: &[u8]) -> Option<BlobHash> {
    bytes.try_into().ok().map(BlobHash::from_bytes)
}

/// Blob sync on one connection; made by [`Blobs::extension`].
#[derive(Debug)]
pub struct BlobsExtension {
    shared: Arc<Shared>,
    open: Mutex<Option<Open>>,
}

#[derive(Debug)]
struct Open {
    session: PublicKey,
    _port: MessagePort,
}

impl BlobsExtension {
    fn end(&self) {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(open) = open {
            self.shared.disconnect(open.session);
        }
    }
}

impl Drop for BlobsExtension {
    fn drop(&mut self) {
        self.end();
    }
}

#[async_trait]
impl Extension for BlobsExtension {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("blobs", Some(CONTENT_TYPE))?;
        let session = ctx.session();
        let (outbox, outgoing) = mpsc::channel::<BlobMessage>(OUTBOX);
        // In place before the first message is read: the remote's `Have`s may come at once.
        self.shared.connect(session, outbox);
        let shared = Arc::downgrade(&self.shared);
        let port = MessagePort::run(port, outgoing, move |message: BlobMessage| {
            let Some(shared) = shared.upgrade() else { return false };
            shared.receive(session, message);
            true
        });
        let open = Open { session, _port: port };
        *self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(open);
        Ok(())
    }

    async fn on_close(&self, _error: Option<String>) {
        self.end();
    }

    async fn on_abort(&self, _error: Option<String>) {
        self.end();
    }
}
