//! The federation task: one NATS connection, subscriptions that follow the local topics and
//! inboxes, and a loop that moves news both ways.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use futures::{
    StreamExt,
    stream::{AbortHandle, Abortable, BoxStream, SelectAll},
};
use mesh_proto::{
    Message as _, Timestamp,
    mesh::v1::{self as wire, federation::Body},
};
use tokio::{
    sync::{mpsc, watch},
    time::timeout,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Federation, Outbox, ServerId,
    inbound::{Inbound, QUERY_TOPICS},
    outbox::Dirty,
};
use crate::{
    hub::{Hub, Key},
    metrics::Metrics,
};

/// Members per snapshot part, well under NATS's default 1 MiB payload limit.
const SNAPSHOT_PART: usize = 1_000;
/// How many times per heartbeat interval silent servers are looked for.
const SWEEPS_PER_HEARTBEAT: u32 = 4;
/// Messages taken from the relay queue at once.
const RELAY_BATCH: usize = 256;
/// The longest a publish may wait for room in the NATS client's queue.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Which subscription a NATS message came through.
#[derive(Debug, Clone)]
enum Source {
    /// A topic's subject, or this server's own or the heartbeat subject.
    Shared,
    /// The subject of a peer whose inbox is open here.
    Peer(Key),
}

/// What the NATS client reported about its connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Health {
    connected: bool,
    /// Counts the times messages were lost (a slow consumer): each calls for a resynchronisation.
    losses: u64,
}

/// What the federation task takes from the server.
pub(crate) struct Parts {
    pub(crate) config: Federation,
    pub(crate) hub: Arc<Hub>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) relays: mpsc::Receiver<(Key, Bytes)>,
    pub(crate) metrics: Arc<Metrics>,
    /// The most members one server may report in one topic.
    pub(crate) max_members: usize,
}

struct Link {
    id: ServerId,
    prefix: String,
    client: async_nats::Client,
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    seq: u64,
    connected: bool,
    inbound: Inbound,
    /// What this server last told the others its local members are, per topic.
    announced: HashMap<Key, HashMap<Key, Timestamp>>,
    topics: HashMap<Key, AbortHandle>,
    peers: HashMap<Key, AbortHandle>,
    incoming: SelectAll<BoxStream<'static, (Source, async_nats::Message)>>,
}

/// Runs the federation until `shutdown`, then says goodbye (aborting the task leaves without a
/// word, as a server that dies does).
pub(crate) async fn run(parts: Parts, shutdown: CancellationToken) {
    let Parts { config, hub, outbox, mut relays, metrics, max_members } = parts;
    let id: ServerId = rand::random();
    let (health_tx, mut health) = watch::channel(Health::default());
    let options = ConnectOptions::new()
        .no_echo()
        .name(format!("mesh-signal-{id:016x}"))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let health = health_tx.clone();
            async move {
                match event {
                    Event::Connected => health.send_modify(|health| health.connected = true),
                    Event::Disconnected => health.send_modify(|health| health.connected = false),
                    Event::SlowConsumer(_) => health.send_modify(|health| health.losses += 1),
                    other => debug!(event = %other, "NATS"),
                }
            }
        });
    let client = match options.connect(config.urls.as_slice()).await {
        Ok(client) => client,
        Err(err) => {
            warn!(error = %err, urls = ?config.urls, "federation off: the NATS addresses are not usable");
            return;
        }
    };
    info!(server = %format!("{id:016x}"), urls = ?config.urls, "federating through NATS");
    let inbound =
        Inbound::new(id, hub.clone(), outbox.clone(), metrics.clone(), config.server_timeout, max_members);
    let mut link = Link {
        id,
        prefix: config.prefix.clone(),
        client,
        hub,
        outbox,
        metrics,
        seq: 0,
        connected: false,
        inbound,
        announced: HashMap::new(),
        topics: HashMap::new(),
        peers: HashMap::new(),
        incoming: SelectAll::new(),
    };
    for subject in [link.heartbeat_subject(), link.server_subject(id)] {
        link.subscribe(subject, Source::Shared).await;
    }
    let mut heartbeats = tokio::time::interval(config.heartbeat);
    // Silence is checked more often than heartbeats come, so a dead server is given up soon
    // after its timeout rather than up to a heartbeat later.
    let mut sweeps = tokio::time::interval(config.heartbeat / SWEEPS_PER_HEARTBEAT);
    let mut seen = *health.borrow();
    let outbox = link.outbox.clone();
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Ok(()) = health.changed() => {
                let now = *health.borrow_and_update();
                link.health(seen, now).await;
                seen = now;
            }
            dirty = outbox.changes() => link.reconcile(dirty).await,
            taken = relays.recv_many(&mut batch, RELAY_BATCH) => {
                if taken == 0 {
                    break;
                }
                for (peer, message) in batch.drain(..) {
                    link.relay(peer, message).await;
                }
            }
            Some((source, message)) = link.incoming.next() => link.receive(source, message.payload).await,
            _ = heartbeats.tick() => link.heartbeat().await,
            _ = sweeps.tick() => link.inbound.expire(Instant::now()),
        }
    }
    let goodbye = link.publish(link.heartbeat_subject(), Body::Goodbye(wire::Goodbye {})).await;
    if goodbye {
        let _ = timeout(PUBLISH_TIMEOUT, link.client.flush()).await;
    }
    link.metrics.federation_connected.set(0);
}

impl Link {
    fn heartbeat_subject(&self) -> String {
        format!("{}.heartbeat", self.prefix)
    }

    fn server_subject(&self, server: ServerId) -> String {
        format!("{}.server.{server:016x}", self.prefix)
    }

    fn topic_subject(&self, topic: &[u8]) -> String {
        format!("{}.topic.{}", self.prefix, hash(topic))
    }

    fn peer_subject(&self, peer: &[u8]) -> String {
        format!("{}.peer.{}", self.prefix, hash(peer))
    }

    /// The NATS connection came or went, or lost messages.
    async fn health(&mut self, before: Health, now: Health) {
        self.connected = now.connected;
        self.metrics.federation_connected.set(i64::from(now.connected));
        if before.connected && !now.connected {
            warn!(
                "lost NATS: serving local peers only, and other servers' peers leave; resynchronising when it returns"
            );
        }
        if now.connected && (!before.connected || now.losses != before.losses) {
            if now.losses != before.losses {
                warn!("NATS dropped messages for this server: resynchronising");
            } else {
                info!("connected to NATS: resynchronising");
            }
            self.resync().await;
        }
    }

    /// Tells the others everything this server holds and asks them for everything they hold in
    /// its topics: after (re)connecting, or losing messages.
    async fn resync(&mut self) {
        self.publish(self.heartbeat_subject(), Body::Heartbeat(wire::Heartbeat {})).await;
        for topic in self.hub.local_topics() {
            let subject = self.topic_subject(&topic);
            // The snapshot told everyone the topic's members: that is now what was announced, and
            // changes after it go out as presence when the topic is next reconciled.
            let members = self.publish_snapshot(subject.clone(), &topic).await;
            self.announced.insert(topic.clone(), members);
            self.publish(subject, Body::Query(wire::Query { topics: vec![topic.to_vec()] })).await;
        }
    }

    /// Catches up with what changed here: announces joins and departures, and follows the local
    /// topics and inboxes with subscriptions.
    async fn reconcile(&mut self, dirty: Dirty) {
        for topic in dirty.topics {
            let local: HashMap<Key, Timestamp> = self.hub.local_members(&topic).into_iter().collect();
            let announced = self.announced.remove(&topic).unwrap_or_default();
            let subject = self.topic_subject(&topic);
            for (peer, since) in &local {
                if announced.get(peer) != Some(since) {
                    self.publish_presence(subject.clone(), &topic, peer, Some(*since)).await;
                }
            }
            for peer in announced.keys().filter(|peer| !local.contains_key(*peer)) {
                self.publish_presence(subject.clone(), &topic, peer, None).await;
            }
            if local.is_empty() {
                if let Some(subscription) = self.topics.remove(&topic) {
                    subscription.abort();
                }
                self.inbound.forget_topic(&topic);
                continue;
            }
            self.announced.insert(topic.clone(), local);
            if !self.topics.contains_key(&topic) {
                if let Some(subscription) = self.subscribe(subject.clone(), Source::Shared).await {
                    self.topics.insert(topic.clone(), subscription);
                }
                self.publish(subject, Body::Query(wire::Query { topics: vec![topic.to_vec()] })).await;
            }
        }
        for peer in dirty.inboxes {
            let open = self.hub.has_inbox(&peer);
            if open && !self.peers.contains_key(&peer) {
                let subject = self.peer_subject(&peer);
                if let Some(subscription) = self.subscribe(subject, Source::Peer(peer.clone())).await {
                    self.peers.insert(peer, subscription);
                }
            } else if !open && let Some(subscription) = self.peers.remove(&peer) {
                subscription.abort();
            }
        }
    }

    /// Passes a message on to the servers holding its recipient.
    async fn relay(&mut self, peer: Key, message: Bytes) {
        let subject = self.peer_subject(&peer);
        if !self.publish(subject, Body::Relay(wire::Relay { message: message.to_vec() })).await {
            self.metrics.federation_dropped.inc();
        }
    }

    /// Takes one message from NATS, and does what it asks.
    async fn receive(&mut self, source: Source, payload: Bytes) {
        let peer = match &source {
            Source::Peer(peer) => Some(peer),
            Source::Shared => None,
        };
        let announced = &self.announced;
        let asks = self.inbound.receive(payload, peer, |topic| announced.contains_key(topic), Instant::now());
        if let Some(server) = asks.query {
            let topics: Vec<Vec<u8>> = self.announced.keys().map(|topic| topic.to_vec()).collect();
            for chunk in topics.chunks(QUERY_TOPICS) {
                let query = Body::Query(wire::Query { topics: chunk.to_vec() });
                self.publish(self.server_subject(server), query).await;
            }
        }
        if let Some((server, topics)) = asks.snapshots {
            let subject = self.server_subject(server);
            for topic in topics {
                self.publish_snapshot(subject.clone(), &topic).await;
            }
        }
    }

    /// Says this server is alive.
    async fn heartbeat(&mut self) {
        self.publish(self.heartbeat_subject(), Body::Heartbeat(wire::Heartbeat {})).await;
    }

    async fn publish_presence(&mut self, subject: String, topic: &Key, peer: &Key, since: Option<Timestamp>) {
        let presence =
            wire::Presence { topic: topic.to_vec(), peer: peer.to_vec(), since, present: since.is_some() };
        self.publish(subject, Body::Presence(presence)).await;
    }

    /// Publishes every local member of `topic`, in parts; returns the members published.
    async fn publish_snapshot(&mut self, subject: String, topic: &Key) -> HashMap<Key, Timestamp> {
        let local = self.hub.local_members(topic);
        let members: Vec<wire::SnapshotMember> = local
            .iter()
            .map(|(peer, since)| wire::SnapshotMember { peer: peer.to_vec(), since: Some(*since) })
            .collect();
        // All parts carry one sequence number: the receiver puts them together by it.
        let seq = self.next_seq();
        let parts = members.len().div_ceil(SNAPSHOT_PART).max(1);
        for (index, chunk) in
            members.chunks(SNAPSHOT_PART).chain(members.is_empty().then_some(&[][..])).enumerate()
        {
            let snapshot =
                wire::Snapshot { topic: topic.to_vec(), members: chunk.to_vec(), last: index + 1 == parts };
            self.send(subject.clone(), seq, Body::Snapshot(snapshot)).await;
        }
        local.into_iter().collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Publishes `body` with the next sequence number; false if NATS is away or too slow.
    async fn publish(&mut self, subject: String, body: Body) -> bool {
        let seq = self.next_seq();
        self.send(subject, seq, body).await
    }

    async fn send(&mut self, subject: String, seq: u64, body: Body) -> bool {
        if !self.connected {
            return false;
        }
        let envelope = wire::Federation { server: self.id, seq, body: Some(body) };
        let payload = Bytes::from(envelope.encode_to_vec());
        match timeout(PUBLISH_TIMEOUT, self.client.publish(subject, payload)).await {
            Ok(Ok(())) => {
                self.metrics.federation_published.inc();
                true
            }
            Ok(Err(err)) => {
                debug!(error = %err, "publishing to NATS failed");
                false
            }
            Err(_) => {
                debug!("publishing to NATS timed out");
                false
            }
        }
    }

    /// Subscribes to `subject`; its messages arrive in `incoming` until the handle aborts them.
    async fn subscribe(&mut self, subject: String, source: Source) -> Option<AbortHandle> {
        match self.client.subscribe(subject.clone()).await {
            Ok(subscriber) => {
                let (handle, registration) = AbortHandle::new_pair();
                let stream =
                    Abortable::new(subscriber, registration).map(move |message| (source.clone(), message));
                self.incoming.push(stream.boxed());
                Some(handle)
            }
            Err(err) => {
                warn!(error = %err, subject, "subscribing on NATS failed");
                None
            }
        }
    }
}

/// The subject token for a key: the first 16 bytes of its BLAKE3 hash in hex, so any key bytes
/// make a valid subject of fixed length.
fn hash(key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut token = String::with_capacity(32);
    for byte in &blake3::hash(key).as_bytes()[..16] {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    token
}
