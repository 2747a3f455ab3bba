//! The protocol state of one client connection, without I/O.
//!
//! `Core` keeps what the user wants (joined topics, open inboxes) and what the current connection
//! has (streams by request id), and reconciles the two: after a reconnect it reopens everything,
//! after a failed stream it retries. It also keeps, per joined topic, the peers the server reported
//! available (the view): when the connection is lost or the topic is left, every peer in the view
//! is reported as left, and the server's fresh announcements after a reconnect rebuild it, so a
//! peer that left during an outage is never left behind as a ghost.
//!
//! Proving keys comes first on every connection: streams open and sends go out only once every
//! proof is answered (or refused, or late), because a server that requires authentication refuses
//! what arrives before. The driver feeds it frames, commands and the time, and sends what
//! [`Core::poll_transmit`] returns; [`Core::poll_output`] gives events and send results.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::{
    Any, Message, Name, any,
    dxos::{
        mesh::signal::{self, JoinRequest, ReceptionRequest, SwarmEvent, swarm_event},
        rpc::{Request, Response, RpcMessage, StreamClose, response, rpc_message},
    },
    mesh::v1::{AuthenticateRequest, ChallengeRequest, ChallengeResponse},
};

use crate::{Event, SignalError, SignalMessage};

/// Sends waiting for a connection or a reply at most; more fail with [`SignalError::Busy`].
const MAX_PENDING_SENDS: usize = 1024;

/// How long each step may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the server's `stream_ready` after a Join or ReceiveMessages.
    pub stream_ready: Duration,
    /// For the server's reply to a send, including time spent waiting for a connection.
    pub send: Duration,
    /// Before a failed stream is opened again.
    pub retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            stream_ready: Duration::from_secs(5),
            send: Duration::from_secs(3),
            retry: Duration::from_secs(1),
        }
    }
}

/// Identifies a send, so its result can be matched to the caller.
pub(crate) type SendToken = u64;

/// What the core hands back besides frames.
#[derive(Debug)]
pub(crate) enum Output {
    Event(Event),
    SendResult(SendToken, Result<(), SignalError>),
}

/// A stream the client keeps open. Inboxes order first, so that after a reconnect a peer can
/// receive messages before it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum StreamKind {
    Inbox(PublicKey),
    Join(DiscoveryKey, PublicKey),
}

#[derive(Debug)]
struct OpenStream {
    kind: StreamKind,
    /// Until `stream_ready` arrives, the time by which it must.
    ready_by: Option<Instant>,
}

#[derive(Debug)]
struct PendingSend {
    token: SendToken,
    message: signal::Message,
    deadline: Instant,
}

#[derive(Debug)]
enum AuthStep {
    Challenge(usize),
    Authenticate(usize),
}

pub(crate) struct Core {
    timeouts: Timeouts,
    /// The authority (host:port) of the server URL, which authentication signatures cover.
    host: String,
    identities: Vec<Keypair>,
    /// Peers remembered per topic at most; announcements past it are dropped.
    max_peers_per_topic: usize,
    wanted: BTreeSet<StreamKind>,
    connected: bool,
    /// Authentication requests in flight; streams open and sends go out once none are left.
    authenticating: HashMap<i32, AuthStep>,
    /// When unanswered proofs are given up on, so a server that never answers cannot hold
    /// everything back.
    authenticated_by: Option<Instant>,
    /// Per joined topic, the peers the server reported available on this connection.
    views: HashMap<DiscoveryKey, HashSet<PublicKey>>,
    next_id: i32,
    streams: HashMap<i32, OpenStream>,
    open: HashMap<StreamKind, i32>,
    in_flight: HashMap<i32, PendingSend>,
    queued: VecDeque<PendingSend>,
    retry_at: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    output: VecDeque<Output>,
}

impl Core {
    pub(crate) fn new(
        timeouts: Timeouts,
        host: String,
        identities: Vec<Keypair>,
        max_peers_per_topic: usize,
    ) -> Self {
        Self {
            timeouts,
            host,
            identities,
            max_peers_per_topic,
            wanted: BTreeSet::new(),
            connected: false,
            authenticating: HashMap::new(),
            authenticated_by: None,
            views: HashMap::new(),
            next_id: 0,
            streams: HashMap::new(),
            open: HashMap::new(),
            in_flight: HashMap::new(),
            queued: VecDeque::new(),
            retry_at: None,
            transmit: VecDeque::new(),
            output: VecDeque::new(),
        }
    }

    pub(crate) fn join(&mut self, now: Instant, topic: DiscoveryKey, peer: PublicKey) {
        self.want(now, StreamKind::Join(topic, peer));
    }

    /// Leaves `topic` as `peer`. Once no join in the topic is left, its view goes: every peer in
    /// it is reported as left, so whoever merges several sources stops counting on this one.
    pub(crate) fn leave(&mut self, topic: DiscoveryKey, peer: PublicKey) {
        self.unwant(&StreamKind::Join(topic, peer));
        let still_joined =
            self.wanted.iter().any(|kind| matches!(kind, StreamKind::Join(t, _) if *t == topic));
        if !still_joined {
            self.forget_view(topic);
        }
    }

    /// The peers the server reported available in `topic` on this connection.
    pub(crate) fn members(&self, topic: DiscoveryKey) -> Vec<PublicKey> {
        self.views.get(&topic).map(|view| view.iter().copied().collect()).unwrap_or_default()
    }

    pub(crate) fn subscribe(&mut self, now: Instant, peer: PublicKey) {
        self.want(now, StreamKind::Inbox(peer));
    }

    pub(crate) fn unsubscribe(&mut self, peer: PublicKey) {
        self.unwant(&StreamKind::Inbox(peer));
    }

    pub(crate) fn send(&mut self, now: Instant, token: SendToken, message: &SignalMessage) {
        let message = signal::Message {
            author: message.author.as_bytes().to_vec(),
            recipient: message.recipient.as_bytes().to_vec(),
            payload: Some(message.payload.clone()),
            metadata: None,
        };
        if self.in_flight.len() + self.queued.len() >= MAX_PENDING_SENDS {
            self.output.push_back(Output::SendResult(token, Err(SignalError::Busy)));
            return;
        }
        let pending = PendingSend { token, message, deadline: now + self.timeouts.send };
        if self.ready() {
            self.transmit_send(pending);
        } else {
            self.queued.push_back(pending);
        }
    }

    /// A connection is up: prove the keys, then (once every proof is answered) open every wanted
    /// stream and send what waited.
    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.connected = true;
        self.retry_at = None;
        for index in 0..self.identities.len() {
            let peer = self.identities[index].public();
            let id = self.request(ChallengeRequest { peer: peer.as_bytes().to_vec() }, CHALLENGE, false);
            self.authenticating.insert(id, AuthStep::Challenge(index));
        }
        if self.authenticating.is_empty() {
            self.on_ready(now);
        } else {
            self.authenticated_by = Some(now + self.timeouts.stream_ready);
        }
    }

    /// The connection is gone: its streams with it, and the views it built (every peer in them is
    /// reported as left). Sends in flight wait for the next connection.
    pub(crate) fn on_disconnected(&mut self) {
        self.connected = false;
        self.streams.clear();
        self.open.clear();
        self.authenticating.clear();
        self.authenticated_by = None;
        self.transmit.clear();
        let topics: Vec<DiscoveryKey> = self.views.keys().copied().collect();
        for topic in topics {
            self.forget_view(topic);
        }
        let mut in_flight: Vec<PendingSend> = self.in_flight.drain().map(|(_, pending)| pending).collect();
        in_flight.sort_by_key(|pending| pending.token);
        for pending in in_flight.into_iter().rev() {
            self.queued.push_front(pending);
        }
    }

    /// Handles one frame from the server. A frame that is not an `RpcMessage` is an error: the
    /// driver drops the connection.
    pub(crate) fn handle_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<(), mesh_proto::prost::DecodeError> {
        let message = RpcMessage::decode(frame)?;
        let Some(rpc_message::Content::Response(Response { id: Some(id), content: Some(content) })) =
            message.content
        else {
            return Ok(());
        };
        if let Some(step) = self.authenticating.remove(&id) {
            self.advance_auth(now, step, content);
        } else if let Some(pending) = self.in_flight.remove(&id) {
            let result = match content {
                response::Content::Error(error) => Err(SignalError::Refused {
                    name: error.name.unwrap_or_default(),
                    message: error.message.unwrap_or_default(),
                }),
                _ => Ok(()),
            };
            self.output.push_back(Output::SendResult(pending.token, result));
        } else if self.streams.contains_key(&id) {
            self.stream_response(now, id, content);
        }
        Ok(())
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<i32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.ready_by.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            tracing::debug!(host = %self.host, id, "stream not ready in time; retrying");
            self.fail_stream(now, id, true);
        }
        let expired: Vec<i32> =
            self.in_flight.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(pending) = self.in_flight.remove(&id) {
                self.output.push_back(Output::SendResult(pending.token, Err(SignalError::Timeout("send"))));
            }
        }
        while self.queued.front().is_some_and(|p| p.deadline <= now) {
            if let Some(pending) = self.queued.pop_front() {
                self.output.push_back(Output::SendResult(pending.token, Err(SignalError::Timeout("send"))));
            }
        }
        if self.authenticated_by.is_some_and(|t| t <= now) {
            tracing::warn!(host = %self.host, "no answer to the key proofs in time; carrying on without them");
            self.authenticating.clear();
            self.authenticated_by = None;
            self.on_ready(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.reconcile(now);
        }
    }

    /// The next time [`Core::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let streams = self.streams.values().filter_map(|s| s.ready_by);
        let sends = self.in_flight.values().chain(&self.queued).map(|p| p.deadline);
        streams.chain(sends).chain(self.retry_at).chain(self.authenticated_by).min()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.output.pop_front()
    }

    /// Connected, with every proof answered: streams may open and sends go out.
    fn ready(&self) -> bool {
        self.connected && self.authenticating.is_empty()
    }

    /// Authentication is over (or there was none): open every wanted stream, send what waited.
    fn on_ready(&mut self, now: Instant) {
        self.authenticated_by = None;
        self.reconcile(now);
        while let Some(pending) = self.queued.pop_front() {
            self.transmit_send(pending);
        }
    }

    fn want(&mut self, now: Instant, kind: StreamKind) {
        if self.wanted.insert(kind.clone()) && self.ready() {
            self.open_stream(now, kind);
        }
    }

    /// Drops the view of `topic`, reporting every peer in it as left.
    fn forget_view(&mut self, topic: DiscoveryKey) {
        for peer in self.views.remove(&topic).into_iter().flatten() {
            self.output.push_back(Output::Event(Event::PeerLeft { topic, peer }));
        }
    }

    /// Records what a Join stream reported in the view; returns whether to pass it on.
    fn update_view(&mut self, event: &Event) -> bool {
        match event {
            Event::PeerAvailable { topic, peer, .. } => {
                let view = self.views.entry(*topic).or_default();
                if view.len() >= self.max_peers_per_topic && !view.contains(peer) {
                    tracing::warn!(host = %self.host, topic = %topic.short(), "too many peers in a topic; dropped an announcement");
                    return false;
                }
                view.insert(*peer);
                true
            }
            Event::PeerLeft { topic, peer } => {
                if let Some(view) = self.views.get_mut(topic) {
                    view.remove(peer);
                }
                true
            }
            _ => true,
        }
    }

    fn unwant(&mut self, kind: &StreamKind) {
        self.wanted.remove(kind);
        if let Some(id) = self.open.remove(kind) {
            self.streams.remove(&id);
            self.transmit_message(rpc_message::Content::StreamClose(StreamClose { id: Some(id) }));
        }
    }

    fn reconcile(&mut self, now: Instant) {
        let missing: Vec<StreamKind> =
            self.wanted.iter().filter(|k| !self.open.contains_key(k)).cloned().collect();
        for kind in missing {
            self.open_stream(now, kind);
        }
    }

    fn open_stream(&mut self, now: Instant, kind: StreamKind) {
        let id = match &kind {
            StreamKind::Join(topic, peer) => self.request(
                JoinRequest {
                    swarm: topic.as_bytes().to_vec(),
                    peer: peer.as_bytes().to_vec(),
                    metadata: None,
                },
                JOIN,
                true,
            ),
            StreamKind::Inbox(peer) => {
                self.request(ReceptionRequest { peer: peer.as_bytes().to_vec() }, RECEIVE_MESSAGES, true)
            }
        };
        self.open.insert(kind.clone(), id);
        self.streams.insert(id, OpenStream { kind, ready_by: Some(now + self.timeouts.stream_ready) });
    }

    /// Drops a stream that failed and schedules another attempt. A topic no open Join stream
    /// watches any more loses its view: departures until the next attempt would go unheard.
    fn fail_stream(&mut self, now: Instant, id: i32, tell_server: bool) {
        if let Some(stream) = self.streams.remove(&id) {
            self.open.remove(&stream.kind);
            if tell_server {
                self.transmit_message(rpc_message::Content::StreamClose(StreamClose { id: Some(id) }));
            }
            let retry = now + self.timeouts.retry;
            self.retry_at = Some(self.retry_at.map_or(retry, |t| t.min(retry)));
            if let StreamKind::Join(topic, _) = stream.kind {
                let watched =
                    self.open.keys().any(|kind| matches!(kind, StreamKind::Join(t, _) if *t == topic));
                if !watched {
                    self.forget_view(topic);
                }
            }
        }
    }

    fn stream_response(&mut self, now: Instant, id: i32, content: response::Content) {
        match content {
            response::Content::StreamReady(_) => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.ready_by = None;
                }
            }
            response::Content::Payload(payload) => {
                // The first item also means the stream is ready.
                let Some(stream) = self.streams.get_mut(&id) else { return };
                stream.ready_by = None;
                let event = match &stream.kind {
                    StreamKind::Join(topic, _) => swarm_event(*topic, &payload),
                    StreamKind::Inbox(_) => inbox_message(&payload),
                };
                match event {
                    Some(event) => {
                        if self.update_view(&event) {
                            self.output.push_back(Output::Event(event));
                        }
                    }
                    None => tracing::debug!(host = %self.host, id, "dropped an undecodable stream item"),
                }
            }
            response::Content::Error(error) => {
                tracing::warn!(host = %self.host, id, name = ?error.name, message = ?error.message, "stream refused");
                self.fail_stream(now, id, false);
            }
            // The 0.8.3 protocol never closes streams from the server; if one is closed, reopen it.
            response::Content::Close(_) => self.fail_stream(now, id, false),
        }
    }

    fn advance_auth(&mut self, now: Instant, step: AuthStep, content: response::Content) {
        match (step, content) {
            (AuthStep::Challenge(index), response::Content::Payload(payload)) => {
                match any::decode_value::<ChallengeResponse>(&payload) {
                    Ok(challenge) => {
                        let identity = &self.identities[index];
                        let signed = mesh_proto::auth::signal_challenge(&self.host, &challenge.nonce);
                        let request = AuthenticateRequest {
                            peer: identity.public().as_bytes().to_vec(),
                            signature: identity.sign(&signed).as_bytes().to_vec(),
                        };
                        let id = self.request(request, AUTHENTICATE, false);
                        self.authenticating.insert(id, AuthStep::Authenticate(index));
                    }
                    Err(err) => tracing::warn!(%err, "undecodable challenge"),
                }
            }
            (AuthStep::Authenticate(index), response::Content::Payload(_)) => {
                tracing::debug!(host = %self.host, peer = %self.identities[index].public().short(), "authenticated");
            }
            (step, response::Content::Error(error)) => {
                tracing::warn!(host = %self.host, ?step, name = ?error.name, message = ?error.message, "authentication refused");
            }
            (step, _) => tracing::warn!(host = %self.host, ?step, "unexpected authentication reply"),
        }
        if self.authenticating.is_empty() {
            self.on_ready(now);
        }
    }

    fn transmit_send(&mut self, pending: PendingSend) {
        let id = self.request(pending.message.clone(), SEND_MESSAGE, false);
        self.in_flight.insert(id, pending);
    }

    /// Queues a request and returns its id.
    fn request<M: Message + Name>(&mut self, payload: M, method: &str, stream: bool) -> i32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(0);
        let request = Request {
            id: Some(id),
            method: method.to_owned(),
            payload: Some(any::pack_request(&payload)),
            stream: Some(stream),
        };
        self.transmit_message(rpc_message::Content::Request(request));
        id
    }

    fn transmit_message(&mut self, content: rpc_message::Content) {
        if self.connected {
            self.transmit.push_back(RpcMessage { content: Some(content) }.encode_to_vec());
        }
    }
}

const JOIN: &str = "dxos.mesh.signal.Signal.Join";
const RECEIVE_MESSAGES: &str = "dxos.mesh.signal.Signal.ReceiveMessages";
const SEND_MESSAGE: &str = "dxos.mesh.signal.Signal.SendMessage";
const CHALLENGE: &str = "mesh.v1.SignalAuth.Challenge";
const AUTHENTICATE: &str = "mesh.v1.SignalAuth.Authenticate";

fn swarm_event(topic: DiscoveryKey, payload: &Any) -> Option<Event> {
    let event = any::decode_value::<SwarmEvent>(payload).ok()?.event?;
    Some(match event {
        swarm_event::Event::PeerAvailable(available) => Event::PeerAvailable {
            topic,
            peer: PublicKey::try_from_slice(&available.peer).ok()?,
            since: available.since.and_then(|since| SystemTime::try_from(since).ok()),
        },
        swarm_event::Event::PeerLeft(left) => {
            Event::PeerLeft { topic, peer: PublicKey::try_from_slice(&left.peer).ok()? }
        }
    })
}

fn inbox_message(payload: &Any) -> Option<Event> {
    let message = any::decode_value::<signal::Message>(payload).ok()?;
    Some(Event::Message(SignalMessage {
        author: PublicKey::try_from_slice(&message.author).ok()?,
        recipient: PublicKey::try_from_slice(&message.recipient).ok()?,
        payload: message.payload.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests;
