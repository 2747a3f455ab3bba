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
//! // For each connection: teleport.add_extension(EXTENSION, gossip.extension())
//! gossip.post("chat", mesh_proto::Any::default());
//! # drop(chat);
//! # }
//! ```

mod extension;
mod seen;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

pub use extension::GossipExtension;
use mesh_keys::PublicKey;
use mesh_proto::{Any, dxos::mesh::teleport::gossip::GossipMessage};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use self::seen::Seen;

/// The extension's name on every connection.
pub const EXTENSION: &str = "dxos.mesh.teleport.gossip";
/// The RPC method announces are sent with.
pub(crate) const ANNOUNCE: &str = "dxos.mesh.teleport.gossip.GossipService.Announce";

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
}

#[derive(Debug)]
struct State {
    seen: Seen,
    /// Open connections by session.
    connections: HashMap<PublicKey, Connection>,
    subscribers: HashMap<String, Vec<mpsc::Sender<Announcement>>>,
}

#[derive(Debug)]
struct Connection {
    remote: PublicKey,
    outbox: mpsc::Sender<GossipMessage>,
}

impl Gossip {
    /// Gossip for the peer `local`.
    pub fn new(local: PublicKey, config: GossipConfig) -> Self {
        let state = State {
            seen: Seen::new(config.seen_capacity, config.seen_period, Instant::now()),
            connections: HashMap::new(),
            subscribers: HashMap::new(),
        };
        let (peers, _) = watch::channel(Vec::new());
        let (stats, _) = watch::channel(GossipStats::default());
        Self { shared: Arc::new(Shared { local, config, state: Mutex::new(state), peers, stats }) }
    }

    /// This peer.
    pub fn local_peer(&self) -> PublicKey {
        self.shared.local
    }

    /// The extension for one more connection; add it to the connection's Teleport as
    /// [`EXTENSION`].
    pub fn extension(&self) -> GossipExtension {
        GossipExtension::new(self.shared.clone())
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
        let (queued, dropped) = state.announce(&message, |_, _| true);
        drop(state);
        self.shared.count(|stats| {
            stats.posted += 1;
            stats.queued += queued;
            stats.dropped += dropped;
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

impl State {
    /// Queues `message` to every connection `to` picks (by session and remote peer); returns how
    /// many took it and how many were full.
    fn announce(&self, message: &GossipMessage, to: impl Fn(&PublicKey, &Connection) -> bool) -> (u64, u64) {
        let (mut queued, mut dropped) = (0, 0);
        for (session, connection) in &self.connections {
            if !to(session, connection) {
                continue;
            }
            match connection.outbox.try_send(message.clone()) {
                Ok(()) => queued += 1,
                Err(_) => {
                    dropped += 1;
                    debug!(remote = %connection.remote.short(), "gossip queue full; dropped an announce");
                }
            }
        }
        (queued, dropped)
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
        let (queued, dropped, subscribers) = {
            let mut state = self.lock();
            if !state.seen.insert(announcement.id, Instant::now()) {
                drop(state);
                self.count(|stats| stats.duplicates += 1);
                return;
            }
            let origin = announcement.origin;
            let (queued, dropped) =
                state.announce(&message, |s, connection| *s != session && connection.remote != origin);
            let subscribers = state.subscribers.get(&announcement.channel).cloned().unwrap_or_default();
            (queued, dropped, subscribers)
        };
        self.count(|stats| {
            stats.received += 1;
            stats.queued += queued;
            stats.dropped += dropped;
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
