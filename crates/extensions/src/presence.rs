//! Presence: who is in the swarm, and whom each of them is connected to.
//!
//! Wire-compatible with DXOS 0.8.3's `Presence`: every peer posts a `dxos.mesh.presence.PeerState`
//! (its identity key and the peers it has gossip connections with) on the gossip channel
//! [`CHANNEL`] every [`PresenceConfig::announce_interval`]. A peer is online while announces from
//! it keep arriving: one that sent none for [`PresenceConfig::offline_timeout`] (by this peer's
//! clock, so a remote's skewed clock cannot keep it online), or whose direct connection closed, is
//! offline. The view holds at most [`PresenceConfig::max_peers`] peers.
//!
//! ```
//! use mesh_extensions::{gossip::{Gossip, GossipConfig}, presence::{Presence, PresenceConfig}};
//! use mesh_keys::PublicKey;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let gossip = Gossip::new(PublicKey::random(), GossipConfig::default());
//! let presence = Presence::spawn(gossip.clone(), PresenceConfig::default());
//! let events = presence.events();
//! assert!(presence.online().is_empty());
//! # drop(events);
//! # }
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use mesh_keys::PublicKey;
use mesh_proto::{any, dxos::mesh::presence::PeerState};
use tokio::{
    sync::{broadcast, watch},
    time::Instant,
};
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::gossip::{Announcement, Gossip, Subscription};

/// The gossip channel presence announces travel on.
pub const CHANNEL: &str = "dxos.mesh.presence.Presence";

/// Timings and bounds of a [`Presence`]. Build it with [`PresenceConfig::default`] and the
/// `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PresenceConfig {
    /// How often this peer announces itself. Default: 10 s.
    pub announce_interval: Duration,
    /// How long a peer stays online after its last announce; longer than `announce_interval`.
    /// Default: 30 s.
    pub offline_timeout: Duration,
    /// The identity key this peer announces. Default: its peer key.
    pub identity_key: Option<PublicKey>,
    /// Peers the view holds at most; announces from further peers are ignored. Default: 4,096.
    pub max_peers: usize,
    /// Connections kept per peer in the view. Default: 64.
    pub max_connections: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            announce_interval: Duration::from_secs(10),
            offline_timeout: Duration::from_secs(30),
            identity_key: None,
            max_peers: 4096,
            max_connections: 64,
        }
    }
}

impl PresenceConfig {
    /// Announces every `interval`; a peer silent for `timeout` is offline.
    pub fn with_timing(mut self, interval: Duration, timeout: Duration) -> Self {
        self.announce_interval = interval;
        self.offline_timeout = timeout;
        self
    }

    /// Announces `identity_key` as this peer's identity.
    pub fn with_identity_key(mut self, identity_key: PublicKey) -> Self {
        self.identity_key = Some(identity_key);
        self
    }
}

/// A peer another peer is online, as it announced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer.
    pub peer: PublicKey,
    /// The identity it announced (DXOS: the user's identity key).
    pub identity: Option<PublicKey>,
    /// The peers it reported connections with.
    pub connections: Vec<PublicKey>,
}

/// A change in who is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// A peer came online (its first announce, or the first after it was offline).
    Online(PeerInfo),
    /// An online peer announced something new (its connections changed).
    Updated(PeerInfo),
    /// A peer went offline.
    Offline(PublicKey),
}

/// One peer's presence in a swarm: it announces itself and keeps the view of the others. Dropping
/// every clone stops it.
#[derive(Debug, Clone)]
pub struct Presence {
    shared: Arc<Shared>,
    _task: Arc<AbortOnDropHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    gossip: Gossip,
    config: PresenceConfig,
    view: Mutex<BTreeMap<PublicKey, Seen>>,
    events: broadcast::Sender<PresenceEvent>,
}

/// A peer in the view: what it said last and when that arrived.
#[derive(Debug, Clone)]
struct Seen {
    info: PeerInfo,
    at: Instant,
}

impl Presence {
    /// Starts announcing this peer over `gossip` and watching the others.
    pub fn spawn(gossip: Gossip, config: PresenceConfig) -> Self {
        let (events, _) = broadcast::channel(256);
        let announces = gossip.subscribe(CHANNEL);
        let shared = Arc::new(Shared { gossip, config, view: Mutex::default(), events });
        let task = tokio::spawn(run(shared.clone(), announces));
        Self { shared, _task: Arc::new(AbortOnDropHandle::new(task)) }
    }

    /// The peers online now, in key order (this peer is not among them).
    pub fn online(&self) -> Vec<PeerInfo> {
        self.shared.lock().values().map(|seen| seen.info.clone()).collect()
    }

    /// The connections every online peer reported, and this peer's own.
    pub fn graph(&self) -> BTreeMap<PublicKey, Vec<PublicKey>> {
        let mut graph: BTreeMap<PublicKey, Vec<PublicKey>> =
            self.shared.lock().values().map(|seen| (seen.info.peer, seen.info.connections.clone())).collect();
        graph.insert(self.shared.gossip.local_peer(), self.shared.gossip.peers());
        graph
    }

    /// What changes from now on. A receiver that falls behind by 256 events lags (see
    /// [`broadcast`]); [`Presence::online`] then tells the state.
    pub fn events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.shared.events.subscribe()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<PublicKey, Seen>> {
        self.view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn announce(&self) {
        let local = self.gossip.local_peer();
        let state = PeerState {
            connections: self.gossip.peers().into_iter().map(Into::into).collect(),
            identity_key: Some(self.config.identity_key.unwrap_or(local).into()),
            peer_id: Some(local.into()),
        };
        self.gossip.post(CHANNEL, any::pack(&state));
    }

    fn receive(&self, announcement: &Announcement, now: Instant) {
        let state = match any::unpack::<PeerState>(&announcement.payload) {
            Ok(state) => state,
            Err(err) => {
                debug!(%err, origin = %announcement.origin.short(), "ignored a presence announce");
                return;
            }
        };
        let info = PeerInfo {
            peer: announcement.origin,
            identity: state.identity_key.and_then(|key| key.to_key().ok()),
            connections: state
                .connections
                .iter()
                .take(self.config.max_connections)
                .filter_map(|key| key.to_key().ok())
                .collect(),
        };
        let mut view = self.lock();
        if !view.contains_key(&info.peer) && view.len() >= self.config.max_peers {
            debug!(origin = %info.peer.short(), "presence view full; ignored a peer");
            return;
        }
        let before = view.insert(info.peer, Seen { info: info.clone(), at: now });
        drop(view);
        match before {
            None => {
                let _ = self.events.send(PresenceEvent::Online(info));
            }
            Some(before) if before.info != info => {
                let _ = self.events.send(PresenceEvent::Updated(info));
            }
            Some(_) => {}
        }
    }

    /// Drops the peers that fell silent or lost their direct connection; returns when the next
    /// one would fall silent.
    fn expire(&self, now: Instant, connected: &[PublicKey], was_connected: &[PublicKey]) -> Option<Instant> {
        let timeout = self.config.offline_timeout;
        let mut view = self.lock();
        let gone: Vec<PublicKey> = view
            .values()
            .filter(|seen| {
                let disconnected =
                    was_connected.contains(&seen.info.peer) && !connected.contains(&seen.info.peer);
                disconnected || now.saturating_duration_since(seen.at) >= timeout
            })
            .map(|seen| seen.info.peer)
            .collect();
        for peer in &gone {
            view.remove(peer);
        }
        let next = view.values().map(|seen| seen.at + timeout).min();
        drop(view);
        for peer in gone {
            let _ = self.events.send(PresenceEvent::Offline(peer));
        }
        next
    }
}

async fn run(shared: Arc<Shared>, mut announces: Subscription) {
    let mut ticker = tokio::time::interval(shared.config.announce_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peers: watch::Receiver<Vec<PublicKey>> = shared.gossip.watch_peers();
    let mut connected = peers.borrow_and_update().clone();
    let mut next_expiry: Option<Instant> = None;
    loop {
        let expiry = async {
            match next_expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => shared.announce(),
            announce = announces.recv() => match announce {
                Some(announce) => {
                    let now = Instant::now();
                    shared.receive(&announce, now);
                    let at = now + shared.config.offline_timeout;
                    next_expiry = Some(next_expiry.map_or(at, |t| t.min(at)));
                }
                None => return,
            },
            () = expiry => next_expiry = shared.expire(Instant::now(), &connected, &connected),
            changed = peers.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_connected = peers.borrow_and_update().clone();
                next_expiry = shared.expire(Instant::now(), &now_connected, &connected);
                connected = now_connected;
                // A new neighbour learns of this peer at once rather than an interval later.
                shared.announce();
            }
        }
    }
}
