//! What other servers say, applied to the hub: decoding, bookkeeping and membership changes.
//!
//! No I/O: the link publishes what a message asks for, and the fuzzing harness feeds raw payloads
//! here the way the link does.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mesh_proto::{
    Message as _,
    mesh::v1::{self as wire, federation::Body},
};
use tracing::{info, warn};

use super::{
    Outbox, ServerId,
    remote::{Change, Remote},
};
use crate::{
    hub::{Hub, Key},
    metrics::Metrics,
};

/// Topics per query taken from another server.
pub(crate) const QUERY_TOPICS: usize = 1_000;
/// The most other servers one server keeps track of.
const MAX_SERVERS: usize = 1_024;
/// The longest topic or peer key taken from another server.
const MAX_KEY: usize = 1_024;

/// What a received message asks of the link.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Asks {
    /// A server not known to be alive spoke: ask it for its members of the local topics.
    pub(crate) query: Option<ServerId>,
    /// A server asked for snapshots of these local topics.
    pub(crate) snapshots: Option<(ServerId, Vec<Key>)>,
}

/// The receiving half of the federation.
pub(crate) struct Inbound {
    own: ServerId,
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    remote: Remote,
}

impl Inbound {
    /// Receives for the server `own`, giving up servers silent for `timeout` and keeping at most
    /// `max_members` per server and topic.
    pub(crate) fn new(
        own: ServerId,
        hub: Arc<Hub>,
        outbox: Arc<Outbox>,
        metrics: Arc<Metrics>,
        timeout: Duration,
        max_members: usize,
    ) -> Self {
        Self { own, hub, outbox, metrics, remote: Remote::new(timeout, max_members, MAX_SERVERS) }
    }

    /// Takes one message from NATS: `peer` is the peer whose subject it came on, if any, and
    /// `local` says which topics have local members (news of others is ignored: it is nobody's
    /// business here, and keeping it would let another server fill this one's memory).
    pub(crate) fn receive(
        &mut self,
        payload: Bytes,
        peer: Option<&Key>,
        local: impl Fn(&Key) -> bool,
        now: Instant,
    ) -> Asks {
        let mut asks = Asks::default();
        let Ok(envelope) = wire::Federation::decode(payload) else {
            self.metrics.federation_rejected.inc();
            return asks;
        };
        let (server, seq) = (envelope.server, envelope.seq);
        if server == self.own {
            return asks;
        }
        self.metrics.federation_received.inc();
        if self.remote.heard(server, now) {
            info!(server = %format!("{server:016x}"), "a federated server appeared: asking for its members");
            asks.query = Some(server);
        }
        let changes = match envelope.body {
            None | Some(Body::Heartbeat(_)) => Vec::new(),
            Some(Body::Goodbye(_)) => {
                info!(server = %format!("{server:016x}"), "a federated server left");
                self.remote.gone(server)
            }
            Some(Body::Presence(presence)) => {
                let (Some(topic), Some(member)) = (key(presence.topic), key(presence.peer)) else {
                    self.metrics.federation_rejected.inc();
                    return asks;
                };
                if !local(&topic) {
                    return asks;
                }
                let since = presence.present.then(|| presence.since.unwrap_or_default());
                self.remote.presence(server, seq, &topic, &member, since, now)
            }
            Some(Body::Snapshot(snapshot)) => {
                let Some(topic) = key(snapshot.topic) else {
                    self.metrics.federation_rejected.inc();
                    return asks;
                };
                if !local(&topic) {
                    return asks;
                }
                let members = snapshot
                    .members
                    .into_iter()
                    .filter_map(|member| Some((key(member.peer)?, member.since.unwrap_or_default())));
                self.remote.snapshot(server, seq, &topic, members, snapshot.last, now)
            }
            Some(Body::Query(query)) => {
                let topics: Vec<Key> = query
                    .topics
                    .into_iter()
                    .take(QUERY_TOPICS)
                    .filter_map(key)
                    .filter(|topic| local(topic))
                    .collect();
                asks.snapshots = Some((server, topics));
                Vec::new()
            }
            Some(Body::Relay(relay)) => {
                if let Some(peer) = peer {
                    let message = Bytes::from(relay.message);
                    if self.outbox.first_sighting(&message, now) {
                        self.hub.deliver(peer, &message);
                    }
                }
                Vec::new()
            }
        };
        self.apply(changes);
        self.metrics.federation_servers.set(self.remote.servers() as i64);
        asks
    }

    /// Gives up the servers silent for longer than the timeout, with their peers.
    pub(crate) fn expire(&mut self, now: Instant) {
        let (changes, silent) = self.remote.expire(now);
        for server in &silent {
            warn!(server = %format!("{server:016x}"), "a federated server went silent: its peers are gone");
        }
        self.apply(changes);
        self.metrics.federation_servers.set(self.remote.servers() as i64);
    }

    /// This server stopped listening to `topic`: what the others held there goes.
    pub(crate) fn forget_topic(&mut self, topic: &Key) {
        let changes = self.remote.forget_topic(topic);
        self.apply(changes);
    }

    fn apply(&self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Present { topic, peer, server, since } => {
                    self.hub.remote_present(&topic, &peer, server, since)
                }
                Change::Absent { topic, peer, server } => self.hub.remote_absent(&topic, &peer, server),
            }
        }
    }
}

/// A key from another server, if it is one a client could have used.
fn key(bytes: Vec<u8>) -> Option<Key> {
    (!bytes.is_empty() && bytes.len() <= MAX_KEY).then(|| Key::from(bytes))
}
