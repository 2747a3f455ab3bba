//! Gossip: messages flooded through a swarm, each delivered once per peer.
//!
//! Wire-compatible with DXOS 0.8.3's gossip (`@dxos/teleport-extension-gossip`): the extension
//! [`EXTENSION`] opens an RPC port `rpc` on each connection and calls
//! `GossipService.Announce(GossipMessage)`. A peer that receives a message it has not seen
//! delivers it to the subscribers of its channel and announces it on every other connection,
//! except the one to the peer that wrote it (DXOS's rule, so the origin never hears its own
//! message back). Over any connected topology every peer thus receives each message, and its
//! subscribers see it once.
//!
//! Bounds: the ids seen lately ([`GossipConfig::seen_capacity`] per generation, see `seen.rs`),
//! each connection's queue of announces to send ([`GossipConfig::outbox_capacity`]; a full queue
//! drops the announce for that connection only, counted in [`GossipStats::dropped`]), the calls in
//! flight per connection, and each subscription's queue: a subscriber that does not keep up makes
//! its deliveries wait, which holds the announce handler, which stops reading that connection, which
//! slows its sender (backpressure), rather than growing memory.
//!
//! Two modes ([`GossipMode`]). `Flood` is DXOS's: every new message goes on every link, so a
//! peer with `d` links receives about `d - 1` copies of it. `Tree` (mesh's own, in the spirit of
//! PlumTree) adds the extension `<name>.tree` between mesh peers that both run it: links start
//! eager; a peer that receives a copy it already had prunes that link to lazy, so eager links
//! settle into a spanning tree; lazy links carry only the ids of new messages (`IHave`), and a
//! peer that hears of a message it does not get within [`GossipConfig::graft_timeout`] asks for it
//! (`Graft`), which also makes that link eager again, repairing the tree. Links to DXOS peers stay
//! flooding in both modes.
//!
//! DXOS gives each connection its own message id when it posts, so a DXOS peer's message can reach
//! a peer once per path; messages posted here carry one id on every connection.
//!
//! ```
//! use mesh_extensions::gossip::{Gossip, GossipConfig};
//! use mesh_keys::PublicKey;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let gossip = Gossip::new(PublicKey::random(), GossipConfig::default());
//! let chat = gossip.subscribe("chat");
//! // For each connection: gossip.attach(&teleport)
//! gossip.post("chat", mesh_proto::Any::default());
//! # drop(chat);
//! # }
//! ```

mod cache;
mod extension;
mod seen;
mod tree;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant, SystemTime},
};

pub use extension::GossipExtension;
use mesh_keys::PublicKey;
use mesh_proto::{Any, dxos::mesh::teleport::gossip::GossipMessage, mesh::v1::GossipControl};
use mesh_teleport::{ExtensionError, Teleport};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;
pub use tree::TreeExtension;

use self::{cache::Cache, seen::Seen, tree::Missing};

/// The extension's name on every connection.
pub const EXTENSION: &str = "dxos.mesh.teleport.gossip";
/// The RPC method announces are sent with.
pub(crate) const ANNOUNCE: &str = "dxos.mesh.teleport.gossip.GossipService.Announce";

/// How messages spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GossipMode {
    /// Every link carries every message (DXOS's behaviour).
    #[default]
    Flood,
    /// Eager links form a tree; the others carry message ids (see the module docs).
    Tree,
}

/// Limits and timings of a [`Gossip`]. Build it with [`GossipConfig::default`] and the `with_*`
/// methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GossipConfig {
    /// Message ids remembered per generation (two are held). Default: 32,768.
    pub seen_capacity: usize,
    /// How long a message id is remembered at least, unless ids arrive faster than a
    /// generation holds; also the age past which a message is dropped as stale. Default: 120 s,
    /// as DXOS.
    pub seen_period: Duration,
    /// Announces waiting to be sent per connection. Default: 1,024.
    pub outbox_capacity: usize,
    /// Announce calls waiting for an answer per connection. Default: 1, which keeps each
    /// connection's announces in order (the remote handles one at a time, as a DXOS peer's single
    /// thread does); more pipelines them but lets them overtake each other.
    pub announces_in_flight: usize,
    /// Messages waiting per subscription. Default: 256.
    pub subscription_capacity: usize,
    /// The longest channel name accepted, in bytes. Default: 256.
    pub max_channel_len: usize,
    /// The extension's name. Default: DXOS's, [`EXTENSION`]; another name runs a separate gossip
    /// over the same connections.
    pub name: String,
    /// How messages spread. Default: [`GossipMode::Flood`].
    pub mode: GossipMode,
    /// Tree mode: how long to wait for a message a lazy link announced before asking for it.
    /// Default: 250 ms.
    pub graft_timeout: Duration,
    /// Tree mode: recent messages kept to answer `Graft`s. Default: 1,024.
    pub cache_capacity: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            seen_capacity: 32_768,
            seen_period: Duration::from_secs(120),
            outbox_capacity: 1024,
            announces_in_flight: 1,
            subscription_capacity: 256,
            max_channel_len: 256,
            name: EXTENSION.to_owned(),
            mode: GossipMode::Flood,
            graft_timeout: Duration::from_millis(250),
            cache_capacity: 1024,
        }
    }
}

impl GossipConfig {
    /// Remembers `capacity` ids per generation, each for at least `period`.
    pub fn with_seen(mut self, capacity: usize, period: Duration) -> Self {
        self.seen_capacity = capacity;
        self.seen_period = period;
        self
    }

    /// Queues `capacity` announces per connection.
    pub fn with_outbox_capacity(mut self, capacity: usize) -> Self {
        self.outbox_capacity = capacity;
        self
    }

    /// Spreads messages as `mode` says.
    pub fn with_mode(mut self, mode: GossipMode) -> Self {
        self.mode = mode;
        self
    }

    /// Runs as the extension `name` (and `<name>.tree`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Lets `calls` announces per connection wait for their answers at once.
    pub fn with_announces_in_flight(mut self, calls: usize) -> Self {
        self.announces_in_flight = calls;
        self
    }

    /// Queues `capacity` messages per subscription.
    pub fn with_subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity;
        self
    }
}

/// What a [`Gossip`] counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Messages posted here.
    pub posted: u64,
    /// New messages received from connections.
    pub received: u64,
    /// Messages received again (already seen), dropped.
    pub duplicates: u64,
    /// Messages dropped as malformed or stale.
    pub rejected: u64,
    /// Announces queued to connections (posted and forwarded).
    pub queued: u64,
    /// Announces dropped because a connection's queue was full.
    pub dropped: u64,
    /// Deliveries to subscribers.
    pub delivered: u64,
    /// Tree mode: message ids sent on lazy links.
    pub ihaves: u64,
    /// Tree mode: links pruned to lazy after a duplicate.
    pub prunes: u64,
    /// Tree mode: messages asked for after a lazy link announced them.
    pub grafts: u64,
}

/// A message delivered to a subscriber.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Announcement {
    /// The peer that posted it.
    pub origin: PublicKey,
    /// Its channel.
    pub channel: String,
    /// Its id.
    pub id: PublicKey,
    /// When its origin posted it (by the origin's clock).
    pub timestamp: SystemTime,
    /// What it carries.
    pub payload: Any,
    /// The peer whose connection it arrived on.
    pub via: PublicKey,
}

/// The messages of one channel, as they arrive.
#[derive(Debug)]
pub struct Subscription {
    messages: mpsc::Receiver<Announcement>,
}

impl Subscription {
    /// The next message; `None` once the [`Gossip`] is gone.
    pub async fn recv(&mut self) -> Option<Announcement> {
        self.messages.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Announcement> {
        self.messages.try_recv().ok()
    }
}

/// One peer's gossip, shared by all of its connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gossip {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    local: PublicKey,
    config: GossipConfig,
    state: Mutex<State>,
    /// The remote peers of the open connections, sorted, without repeats.
    peers: watch::Sender<Vec<PublicKey>>,
    stats: watch::Sender<GossipStats>,
    /// Tree mode: wakes the task that asks for missing messages.
    grafting: Arc<Notify>,
    /// Tree mode: that task, started with the first tree link.
    grafter: OnceLock<AbortOnDropHandle<()>>,
}

#[derive(Debug)]
struct State {
    seen: Seen,
    /// Open connections by session.
    connections: HashMap<PublicKey, Connection>,
    subscribers: HashMap<String, Vec<mpsc::Sender<Announcement>>>,
    /// Tree mode: the links to peers that run it too, by session.
    trees: HashMap<PublicKey, TreeLink>,
    /// Tree mode: recent messages, to answer `Graft`s.
    cache: Cache,
    /// Tree mode: messages announced on lazy links and not received yet.
    missing: HashMap<PublicKey, Missing>,
}

#[derive(Debug)]
struct Connection {
    remote: PublicKey,
    outbox: mpsc::Sender<GossipMessage>,
}

/// A link whose remote runs tree mode too.
#[derive(Debug)]
struct TreeLink {
    control: mpsc::Sender<GossipControl>,
    /// Whether new messages go on it whole (else only their ids).
    eager: bool,
}

impl Gossip {
    /// Gossip for the peer `local`.
    pub fn new(local: PublicKey, config: GossipConfig) -> Self {
        let state = State {
            seen: Seen::new(config.seen_capacity, config.seen_period, Instant::now()),
            connections: HashMap::new(),
            subscribers: HashMap::new(),
            trees: HashMap::new(),
            cache: Cache::new(config.cache_capacity),
            missing: HashMap::new(),
        };
        let (peers, _) = watch::channel(Vec::new());
        let (stats, _) = watch::channel(GossipStats::default());
        let shared = Shared {
            local,
            config,
            state: Mutex::new(state),
            peers,
            stats,
            grafting: Arc::default(),
            grafter: OnceLock::new(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// This peer.
    pub fn local_peer(&self) -> PublicKey {
        self.shared.local
    }

    /// Adds this gossip's extensions to a connection: the gossip extension, and in tree mode the
    /// tree extension.
    pub fn attach(&self, teleport: &Teleport) -> Result<(), ExtensionError> {
        teleport.add_extension(&self.shared.config.name, self.extension())?;
        if self.shared.config.mode == GossipMode::Tree {
            teleport.add_extension(&self.tree_extension_name(), self.tree_extension())?;
        }
        Ok(())
    }

    /// The gossip extension for one more connection, to add under [`GossipConfig::name`]
    /// ([`Gossip::attach`] does).
    pub fn extension(&self) -> GossipExtension {
        GossipExtension::new(self.shared.clone())
    }

    /// The tree extension for one more connection, to add under
    /// [`Gossip::tree_extension_name`] ([`Gossip::attach`] does, in tree mode).
    pub fn tree_extension(&self) -> TreeExtension {
        TreeExtension::new(self.shared.clone())
    }

    /// The tree extension's name: `<name>.tree`.
    pub fn tree_extension_name(&self) -> String {
        format!("{}.tree", self.shared.config.name)
    }

    /// Posts `payload` on `channel` to every connection; returns the message's id. Subscribers
    /// here do not receive it.
    pub fn post(&self, channel: &str, payload: Any) -> PublicKey {
        let id = PublicKey::random();
        let message = GossipMessage {
            peer_id: Some(self.shared.local.into()),
            channel_id: channel.to_owned(),
            message_id: Some(id.into()),
            timestamp: Some(SystemTime::now().into()),
            payload: Some(payload),
        };
        let mut state = self.shared.lock();
        state.seen.insert(id, Instant::now());
        let spread = state.spread(id, &message, None, self.shared.local);
        drop(state);
        self.shared.count(|stats| {
            stats.posted += 1;
            spread.count(stats);
        });
        id
    }

    /// The messages of `channel` from now on.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        let (sender, messages) = mpsc::channel(self.shared.config.subscription_capacity.max(1));
        let mut state = self.shared.lock();
        let subscribers = state.subscribers.entry(channel.to_owned()).or_default();
        subscribers.retain(|subscriber| !subscriber.is_closed());
        subscribers.push(sender);
        Subscription { messages }
    }

    /// The remote peers this peer has gossip connections with, sorted.
    pub fn peers(&self) -> Vec<PublicKey> {
        self.shared.peers.borrow().clone()
    }

    /// Watches [`Gossip::peers`] change.
    pub fn watch_peers(&self) -> watch::Receiver<Vec<PublicKey>> {
        self.shared.peers.subscribe()
    }

    /// What this peer counted so far.
    pub fn stats(&self) -> GossipStats {
        *self.shared.stats.borrow()
    }

    /// Watches [`Gossip::stats`] change.
    pub fn watch_stats(&self) -> watch::Receiver<GossipStats> {
        self.shared.stats.subscribe()
    }
}

/// What spreading one message did.
#[derive(Debug, Default, Clone, Copy)]
struct Spread {
    queued: u64,
    dropped: u64,
    ihaves: u64,
}

impl Spread {
    fn count(self, stats: &mut GossipStats) {
        stats.queued += self.queued;
        stats.dropped += self.dropped;
        stats.ihaves += self.ihaves;
    }
}

impl State {
    /// Sends the new message `id` on every link but the one it came on (`from`) and the one to
    /// its `origin`: whole on eager links, as an `IHave` on lazy ones. Keeps it for `Graft`s.
    fn spread(
        &mut self,
        id: PublicKey,
        message: &GossipMessage,
        from: Option<PublicKey>,
        origin: PublicKey,
    ) -> Spread {
        let mut spread = Spread::default();
        for (session, connection) in &self.connections {
            if Some(*session) == from || connection.remote == origin {
                continue;
            }
            match self.trees.get(session) {
                Some(tree) if !tree.eager => {
                    if tree.control.try_send(tree::ihave(id)).is_ok() {
                        spread.ihaves += 1;
                    }
                }
                _ => match connection.outbox.try_send(message.clone()) {
                    Ok(()) => spread.queued += 1,
                    Err(_) => {
                        spread.dropped += 1;
                        debug!(remote = %connection.remote.short(), "gossip queue full; dropped an announce");
                    }
                },
            }
        }
        if !self.trees.is_empty() {
            self.cache.insert(id, message.clone());
            self.missing.remove(&id);
        }
        spread
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates the counters (and wakes whoever watches them).
    fn count(&self, update: impl FnOnce(&mut GossipStats)) {
        self.stats.send_modify(update);
    }

    pub(crate) fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// A connection opened: announces for it go to `outbox`.
    pub(crate) fn connect(&self, session: PublicKey, remote: PublicKey, outbox: mpsc::Sender<GossipMessage>) {
        let mut state = self.lock();
        state.connections.insert(session, Connection { remote, outbox });
        self.publish_peers(&state);
    }

    /// The connection `session` ended.
    pub(crate) fn disconnect(&self, session: PublicKey) {
        let mut state = self.lock();
        state.trees.remove(&session);
        if state.connections.remove(&session).is_some() {
            self.publish_peers(&state);
        }
    }

    fn publish_peers(&self, state: &State) {
        let mut peers: Vec<PublicKey> = state.connections.values().map(|c| c.remote).collect();
        peers.sort();
        peers.dedup();
        self.peers.send_if_modified(|current| {
            let changed = *current != peers;
            *current = peers;
            changed
        });
    }

    /// An announce arrived on the connection `session` with `via`: if it is new, forwards it to
    /// the other connections and delivers it to the channel's subscribers (waiting for room).
    pub(crate) async fn receive(&self, session: PublicKey, via: PublicKey, message: GossipMessage) {
        let Some(announcement) = self.read(&message, via) else {
            self.count(|stats| stats.rejected += 1);
            return;
        };
        let (spread, subscribers) = {
            let mut state = self.lock();
            if !state.seen.insert(announcement.id, Instant::now()) {
                let pruned = state.prune(session);
                drop(state);
                self.count(|stats| {
                    stats.duplicates += 1;
                    stats.prunes += u64::from(pruned);
                });
                return;
            }
            let spread = state.spread(announcement.id, &message, Some(session), announcement.origin);
            let subscribers = state.subscribers.get(&announcement.channel).cloned().unwrap_or_default();
            (spread, subscribers)
        };
        self.count(|stats| {
            stats.received += 1;
            spread.count(stats);
        });
        let mut delivered = 0;
        for subscriber in subscribers {
            if subscriber.send(announcement.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        self.count(|stats| stats.delivered += delivered);
    }

    /// The announcement in `message`, if it is well-formed and not stale.
    fn read(&self, message: &GossipMessage, via: PublicKey) -> Option<Announcement> {
        let origin = message.peer_id.as_ref()?.to_key().ok()?;
        let id = message.message_id.as_ref()?.to_key().ok()?;
        if message.channel_id.len() > self.config.max_channel_len || origin == self.local {
            return None;
        }
        let timestamp = match message.timestamp {
            Some(timestamp) => SystemTime::try_from(timestamp).ok()?,
            None => SystemTime::now(),
        };
        let age = SystemTime::now().duration_since(timestamp).unwrap_or_default();
        if age > self.config.seen_period {
            return None;
        }
        Some(Announcement {
            origin,
            channel: message.channel_id.clone(),
            id,
            timestamp,
            payload: message.payload.clone().unwrap_or_default(),
            via,
        })
    }
}
