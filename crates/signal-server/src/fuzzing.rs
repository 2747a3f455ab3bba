//! A doorway for fuzz targets and property tests (feature `fuzzing`; not a stable API).
//!
//! [`Harness`] runs several connections' [`Session`]s on one real [`Hub`] without sockets: frames
//! go to `Session::handle`, and what the hub queues for a connection comes out through
//! the connection's mailbox (swarm events, withdrawals) and `Session::outbound` (relayed
//! messages), the way the connection task moves them. A connection closed for breaking the
//! protocol is replaced by a fresh one, as a reconnecting client would be.
//! [`ClientFrame`] writes the requests a client sends.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use mesh_proto::{
    Any, Message, any,
    dxos::{
        mesh::signal::{self, JoinRequest, ReceptionRequest},
        rpc::{Request, RpcMessage, StreamClose, rpc_message},
    },
    mesh::v1::{AuthenticateRequest, ChallengeRequest},
};
use tokio::sync::mpsc;

use crate::{
    AuthPolicy, Limits, RateLimit, Stats,
    federation::{Inbound, Outbox},
    hub::{Endpoint, Hub, Key, Outbound},
    mailbox::Mailbox,
    metrics::Metrics,
    session::{AUTHENTICATE, CHALLENGE, JOIN, RECEIVE_MESSAGES, SEND_MESSAGE, Session},
};

/// The host name sessions of a harness believe they were reached at.
const HOST: &str = "signal.invalid";
/// A federated harness's own server id.
pub const SERVER: u64 = 0x5e1f;

/// How much one session holds, with the caps it must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSizes {
    /// Open Join streams.
    pub joins: usize,
    /// Open inbox streams.
    pub inboxes: usize,
    /// Keys the session proved.
    pub proven: usize,
    /// Challenges waiting for an answer.
    pub challenges: usize,
    /// The most challenges that may wait at once.
    pub max_challenges: usize,
}

/// Limits small enough for a few dozen frames to reach every one of them.
pub fn tight_limits() -> Limits {
    Limits {
        max_joins_per_connection: 3,
        max_inboxes_per_connection: 2,
        rate_limit: RateLimit { per_second: 20.0, burst: 25 },
        send_queue: 4,
        ..Limits::default()
    }
}

/// What a frame (or a drain of the outbound queue) did to its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The frames the connection writes to its client, in order.
    Frames(Vec<Vec<u8>>),
    /// The connection was closed (a protocol violation); a fresh one took its place.
    Closed,
}

struct Connection {
    session: Session,
    outbound: mpsc::Receiver<Outbound>,
    mailbox: Arc<Mailbox>,
}

/// The federation's receiving side of a federated harness.
struct Federated {
    inbound: Inbound,
    outbox: Arc<Outbox>,
    relays: mpsc::Receiver<(Key, bytes::Bytes)>,
}

/// Several connections' sessions on one hub, on a clock the caller advances.
pub struct Harness {
    hub: Arc<Hub>,
    federated: Option<Federated>,
    metrics: Arc<Metrics>,
    policy: AuthPolicy,
    limits: Limits,
    start: Instant,
    elapsed: Duration,
    wall: SystemTime,
    next_conn: u64,
    connections: Vec<Connection>,
}

impl Harness {
    /// `connections` connections (at least one) under `policy` and `limits`.
    pub fn new(connections: usize, policy: AuthPolicy, limits: Limits) -> Self {
        Self::build(connections, policy, limits, false)
    }

    /// Like [`Harness::new`], with the hub federated: what other servers say arrives through
    /// [`Harness::from_server`], as the federation task hands it over.
    pub fn federated(connections: usize, policy: AuthPolicy, limits: Limits) -> Self {
        Self::build(connections, policy, limits, true)
    }

    fn build(connections: usize, policy: AuthPolicy, limits: Limits, federated: bool) -> Self {
        let metrics = Arc::new(Metrics::new());
        let outbox = federated.then(|| Outbox::new(Duration::from_millis(500), metrics.clone()));
        let hub =
            Arc::new(Hub::new(metrics.clone(), &limits, outbox.as_ref().map(|(outbox, _)| outbox.clone())));
        let federated = outbox.map(|(outbox, relays)| {
            let inbound = Inbound::new(
                SERVER,
                hub.clone(),
                outbox.clone(),
                metrics.clone(),
                Duration::from_secs(3),
                limits.max_topic_members,
            );
            Federated { inbound, outbox, relays }
        });
        let mut harness = Self {
            hub,
            federated,
            metrics,
            policy,
            limits,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            next_conn: 0,
            connections: Vec::new(),
        };
        harness.connections = (0..connections.max(1)).map(|_| harness.connect()).collect();
        harness
    }

    /// How many connections there are; connection indexes are taken modulo this.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// The limits the sessions run with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Moves the clock on.
    pub fn advance(&mut self, by: Duration) {
        self.elapsed = self.elapsed.saturating_add(by);
    }

    /// Feeds one WebSocket message from the client of connection `conn`.
    pub fn handle(&mut self, conn: usize, frame: &[u8]) -> Handled {
        let index = conn % self.connections.len();
        let (now, wall) = (self.start + self.elapsed, self.wall + self.elapsed);
        let result = self.connections[index].session.handle(frame, now, wall, &self.hub, &self.metrics);
        match result {
            Ok(frames) => Handled::Frames(frames),
            Err(_) => {
                self.metrics.frames_rejected.inc();
                self.reconnect(index);
                Handled::Closed
            }
        }
    }

    /// Takes what the hub queued for connection `conn`, as its task would write it.
    pub fn drain(&mut self, conn: usize) -> Handled {
        let index = conn % self.connections.len();
        let connection = &mut self.connections[index];
        // The task writes the mailbox's snapshot before what is queued.
        let mut frames = Vec::new();
        if connection.mailbox.is_ready() {
            frames = connection.session.delivery(connection.mailbox.take());
        }
        while let Ok(outbound) = connection.outbound.try_recv() {
            frames.extend(connection.session.outbound(outbound));
        }
        Handled::Frames(frames)
    }

    /// One NATS message from another server: `peer` is the peer whose subject it came on (a
    /// directed message), or `None` for a topic's, a server's or the heartbeat subject. A harness
    /// that is not federated ignores it.
    pub fn from_server(&mut self, payload: &[u8], peer: Option<&[u8]>) {
        let now = self.start + self.elapsed;
        let Some(federated) = &mut self.federated else { return };
        let hub = &self.hub;
        let peer = peer.map(Key::copy_from_slice);
        let local = |topic: &Key| !hub.local_members(topic).is_empty();
        federated.inbound.receive(bytes::Bytes::copy_from_slice(payload), peer.as_ref(), local, now);
    }

    /// Does what the federation task does between messages: gives up servers silent past their
    /// timeout (on the harness's clock), forgets what other servers said of topics without local
    /// members, and drops the messages queued for other servers.
    pub fn settle_federation(&mut self) {
        let now = self.start + self.elapsed;
        let Some(federated) = &mut self.federated else { return };
        federated.inbound.expire(now);
        for topic in federated.outbox.take_changes().topics {
            if self.hub.local_members(&topic).is_empty() {
                federated.inbound.forget_topic(&topic);
            }
        }
        while federated.relays.try_recv().is_ok() {}
    }

    /// Closes connection `conn` as a client hanging up would, and opens a fresh one in its place.
    pub fn reconnect(&mut self, conn: usize) {
        let index = conn % self.connections.len();
        let fresh = self.connect();
        let mut old = std::mem::replace(&mut self.connections[index], fresh);
        old.session.close(&self.hub);
    }

    /// Closes every connection; fresh ones take their places.
    pub fn reconnect_all(&mut self) {
        for index in 0..self.connections.len() {
            self.reconnect(index);
        }
    }

    /// How much connection `conn`'s session holds.
    pub fn sizes(&self, conn: usize) -> SessionSizes {
        self.connections[conn % self.connections.len()].session.sizes()
    }

    /// The server's metrics (topics and members count what the hub holds).
    pub fn stats(&self) -> Stats {
        self.metrics.snapshot()
    }

    fn connect(&mut self) -> Connection {
        let (tx, outbound) = mpsc::channel(self.limits.send_queue.max(1));
        let mailbox = Arc::new(Mailbox::default());
        let endpoint = Endpoint { conn: self.next_conn, tx, mailbox: mailbox.clone() };
        self.next_conn += 1;
        let now = self.start + self.elapsed;
        let session = Session::new(endpoint, Arc::from(HOST), self.policy, &self.limits, now);
        Connection { session, outbound, mailbox }
    }
}

/// A frame a client sends, with keys as raw bytes (of any length, as a hostile client's may be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `Signal.Join` as stream `id`.
    Join {
        /// The request (and stream) id.
        id: i32,
        /// The topic.
        topic: Vec<u8>,
        /// The joining peer.
        peer: Vec<u8>,
    },
    /// `Signal.ReceiveMessages` (an inbox) as stream `id`.
    Receive {
        /// The request (and stream) id.
        id: i32,
        /// The inbox's peer.
        peer: Vec<u8>,
    },
    /// `Signal.SendMessage`.
    Send {
        /// The request id.
        id: i32,
        /// The sender.
        author: Vec<u8>,
        /// The recipient.
        recipient: Vec<u8>,
        /// The message's payload bytes.
        payload: Vec<u8>,
    },
    /// `SignalAuth.Challenge`.
    Challenge {
        /// The request id.
        id: i32,
        /// The key to prove.
        peer: Vec<u8>,
    },
    /// `SignalAuth.Authenticate`.
    Authenticate {
        /// The request id.
        id: i32,
        /// The key to prove.
        peer: Vec<u8>,
        /// The signature over the challenge.
        signature: Vec<u8>,
    },
    /// A request for any method with any payload bytes.
    Request {
        /// The request id.
        id: i32,
        /// The method's full name.
        method: String,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// Closes stream `id`.
    StreamClose {
        /// The stream id.
        id: i32,
    },
    /// The RPC handshake's `open`.
    Open,
}

impl ClientFrame {
    /// The frame's bytes, as a client writes them.
    pub fn encode(&self) -> Vec<u8> {
        let content = match self.clone() {
            Self::Join { id, topic, peer } => request(
                id,
                JOIN,
                any::pack_request(&JoinRequest { swarm: topic, peer, metadata: None }),
                true,
            ),
            Self::Receive { id, peer } => {
                request(id, RECEIVE_MESSAGES, any::pack_request(&ReceptionRequest { peer }), true)
            }
            Self::Send { id, author, recipient, payload } => {
                let payload = Some(Any { type_url: "mesh.fuzz".into(), value: payload });
                let message = signal::Message { author, recipient, payload, metadata: None };
                request(id, SEND_MESSAGE, any::pack_request(&message), false)
            }
            Self::Challenge { id, peer } => {
                request(id, CHALLENGE, any::pack_request(&ChallengeRequest { peer }), false)
            }
            Self::Authenticate { id, peer, signature } => {
                request(id, AUTHENTICATE, any::pack_request(&AuthenticateRequest { peer, signature }), false)
            }
            Self::Request { id, method, payload } => {
                request(id, &method, Any { type_url: String::new(), value: payload }, false)
            }
            Self::StreamClose { id } => rpc_message::Content::StreamClose(StreamClose { id: Some(id) }),
            Self::Open => rpc_message::Content::Open(true),
        };
        RpcMessage { content: Some(content) }.encode_to_vec()
    }
}

fn request(id: i32, method: &str, payload: Any, stream: bool) -> rpc_message::Content {
    rpc_message::Content::Request(Request {
        id: Some(id),
        method: method.to_owned(),
        payload: Some(payload),
        stream: Some(stream),
    })
}
