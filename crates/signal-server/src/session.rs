//! One connection's protocol state: which streams it opened, which keys it proved, its rate limit.
//!
//! `Session` turns each WebSocket message into replies and hub updates. It owns no socket and reads
//! no clock (time is passed in); the connection task drives it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use mesh_keys::{PublicKey, Signature};
use mesh_proto::{
    Any, Message, Timestamp, any,
    dxos::{
        error::Error as ErrorMessage,
        mesh::signal::{self, JoinRequest, ReceptionRequest, SwarmEvent, swarm_event},
        rpc::{Request, Response, RpcMessage, response, rpc_message},
    },
    mesh::v1::{AuthenticateRequest, AuthenticateResponse, ChallengeRequest, ChallengeResponse},
};

use crate::{
    AuthPolicy, Limits,
    hub::{Endpoint, Hub, JoinRefusal, Key, Outbound, Registration},
    limiter::TokenBucket,
    mailbox::{Post, Unsent},
    metrics::Metrics,
};

#[cfg(feature = "fuzzing")]
mod census;

/// Longest topic or peer key accepted. DXOS keys are 32 bytes; a little slack costs nothing.
const MAX_KEY_LEN: usize = 64;
/// Nonces a session may have outstanding at once.
const MAX_PENDING_CHALLENGES: usize = 8;

pub(crate) const JOIN: &str = "dxos.mesh.signal.Signal.Join";
pub(crate) const RECEIVE_MESSAGES: &str = "dxos.mesh.signal.Signal.ReceiveMessages";
pub(crate) const SEND_MESSAGE: &str = "dxos.mesh.signal.Signal.SendMessage";
pub(crate) const CHALLENGE: &str = "mesh.v1.SignalAuth.Challenge";
pub(crate) const AUTHENTICATE: &str = "mesh.v1.SignalAuth.Authenticate";
/// The `type_url` of a unary reply's empty payload, as `any::pack_request(&())` writes it.
const EMPTY_TYPE: &str = ".google.protobuf.Empty";

/// Error names sent in `dxos.error.Error.name`.
pub(crate) mod codes {
    pub(crate) const RATE_LIMIT_EXCEEDED: &str = "RATE_LIMIT_EXCEEDED";
    pub(crate) const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub(crate) const UNKNOWN_METHOD: &str = "UNKNOWN_METHOD";
    pub(crate) const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
    pub(crate) const DUPLICATE_STREAM_ID: &str = "DUPLICATE_STREAM_ID";
    pub(crate) const UNAUTHORIZED: &str = "UNAUTHORIZED";
    pub(crate) const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";
    pub(crate) const AUTH_DISABLED: &str = "AUTH_DISABLED";
}

/// Why a connection must be closed: its peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    #[error("malformed RpcMessage: {0}")]
    Malformed(String),
    #[error("unexpected {0} from a client")]
    Unexpected(&'static str),
}

/// A request refused with an error response.
struct Refusal {
    name: &'static str,
    message: String,
}

impl Refusal {
    fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self { name, message: message.into() }
    }
}

/// The per-connection caps a session enforces, copied out of [`Limits`]: a whole copy would cost
/// every connection another 170 bytes.
struct Caps {
    joins: usize,
    inboxes: usize,
    proven_keys: usize,
}

pub(crate) struct Session {
    endpoint: Endpoint,
    /// The authority (`host[:port]`) authentication signatures cover: the server's public URL's,
    /// or else the `Host` header the client connected with.
    authority: Arc<str>,
    policy: AuthPolicy,
    caps: Caps,
    /// Every frame from the client takes from this.
    limiter: TokenBucket,
    /// Joins take from this as well.
    join_limiter: TokenBucket,
    joins: HashMap<i32, (Key, Key)>,
    inboxes: HashMap<i32, Key>,
    proven: HashSet<Key>,
    challenges: HashMap<Key, [u8; 32]>,
}

impl Session {
    pub(crate) fn new(
        endpoint: Endpoint,
        authority: Arc<str>,
        policy: AuthPolicy,
        limits: &Limits,
        now: Instant,
    ) -> Self {
        Self {
            endpoint,
            authority,
            policy,
            limiter: TokenBucket::new(limits.rate_limit, now),
            join_limiter: TokenBucket::new(limits.join_rate_per_connection, now),
            caps: Caps {
                joins: limits.max_joins_per_connection,
                inboxes: limits.max_inboxes_per_connection,
                proven_keys: limits.max_proven_keys_per_connection,
            },
            joins: HashMap::new(),
            inboxes: HashMap::new(),
            proven: HashSet::new(),
            challenges: HashMap::new(),
        }
    }

    /// Handles one binary WebSocket message; returns the frames to send back, in order.
    pub(crate) fn handle(
        &mut self,
        frame: &[u8],
        now: Instant,
        wall: SystemTime,
        hub: &Hub,
        metrics: &Metrics,
    ) -> Result<Vec<Vec<u8>>, Violation> {
        let message = RpcMessage::decode(frame).map_err(|err| Violation::Malformed(err.to_string()))?;
        match message.content {
            Some(rpc_message::Content::Request(request)) => {
                let id = request.id.unwrap_or_default();
                if !self.limiter.try_take(now) {
                    metrics.rate_limited.inc();
                    return Ok(vec![error_frame(id, codes::RATE_LIMIT_EXCEEDED, "too many requests")]);
                }
                Ok(self
                    .request(id, request, now, wall, hub, metrics)
                    .unwrap_or_else(|refusal| vec![error_frame(id, refusal.name, &refusal.message)]))
            }
            Some(rpc_message::Content::StreamClose(close)) => {
                if !self.limiter.try_take(now) {
                    metrics.rate_limited.inc();
                }
                // Honoured even beyond the rate limit, which opening the stream already paid:
                // ignoring it would leave the client in a topic it left.
                self.close_stream(close.id.unwrap_or_default(), hub);
                Ok(Vec::new())
            }
            // The signal protocol has no handshake, but answering keeps a client that tries one
            // going. Beyond the rate limit there is no answer: `open` has no id to refuse.
            Some(rpc_message::Content::Open(_)) => {
                if !self.limiter.try_take(now) {
                    metrics.rate_limited.inc();
                    return Ok(Vec::new());
                }
                Ok(vec![frame_of(rpc_message::Content::OpenAck(true))])
            }
            Some(rpc_message::Content::OpenAck(_)) => Ok(Vec::new()),
            Some(rpc_message::Content::Response(_)) => Err(Violation::Unexpected("response")),
            Some(rpc_message::Content::Bye(_)) => Err(Violation::Unexpected("bye")),
            None => Err(Violation::Malformed("empty RpcMessage".into())),
        }
    }

    fn request(
        &mut self,
        id: i32,
        request: Request,
        now: Instant,
        wall: SystemTime,
        hub: &Hub,
        metrics: &Metrics,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let payload = request.payload.unwrap_or_default();
        match request.method.as_str() {
            JOIN => self.join(id, &payload, now, wall, hub, metrics),
            RECEIVE_MESSAGES => self.receive(id, &payload, hub),
            SEND_MESSAGE => self.send(id, payload, hub),
            CHALLENGE => self.challenge(id, &payload),
            AUTHENTICATE => self.authenticate(id, &payload, hub, metrics),
            other => Err(Refusal::new(codes::UNKNOWN_METHOD, format!("unknown method {other:?}"))),
        }
    }

    fn join(
        &mut self,
        id: i32,
        payload: &Any,
        now: Instant,
        wall: SystemTime,
        hub: &Hub,
        metrics: &Metrics,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let join: JoinRequest = decode(payload)?;
        let (topic, peer) = (key(join.swarm, "swarm")?, key(join.peer, "peer")?);
        self.check_new_stream(id)?;
        if self.joins.len() >= self.caps.joins {
            return Err(Refusal::new(codes::LIMIT_EXCEEDED, "too many joins on this connection"));
        }
        self.authorize(&peer, hub)?;
        let joined = if self.join_limiter.try_take(now) {
            hub.join(&topic, &peer, self.registration(id, &peer), now, wall)
        } else {
            Err(JoinRefusal::RateLimited)
        };
        let members = match joined {
            Ok(members) => members,
            Err(JoinRefusal::RateLimited) => {
                metrics.rate_limited.inc();
                metrics.joins_rate_limited.inc();
                return Err(Refusal::new(codes::RATE_LIMIT_EXCEEDED, "too many joins; try again later"));
            }
            Err(JoinRefusal::TopicFull) => {
                return Err(Refusal::new(codes::LIMIT_EXCEEDED, "this topic has as many members as it may"));
            }
        };
        let mut frames = Vec::with_capacity(1 + members.len());
        frames.push(frame_of(response(id, response::Content::StreamReady(true))));
        frames.extend(members.into_iter().map(|(peer, since)| event_frame(id, available(peer, since))));
        self.joins.insert(id, (topic, peer));
        Ok(frames)
    }

    fn receive(&mut self, id: i32, payload: &Any, hub: &Hub) -> Result<Vec<Vec<u8>>, Refusal> {
        let request: ReceptionRequest = decode(payload)?;
        let peer = key(request.peer, "peer")?;
        self.check_new_stream(id)?;
        if self.inboxes.len() >= self.caps.inboxes {
            return Err(Refusal::new(codes::LIMIT_EXCEEDED, "too many inboxes on this connection"));
        }
        self.authorize(&peer, hub)?;
        if !hub.subscribe(&peer, self.registration(id, &peer)) {
            return Err(Refusal::new(codes::LIMIT_EXCEEDED, "this key has as many inboxes open as it may"));
        }
        self.inboxes.insert(id, peer);
        Ok(vec![frame_of(response(id, response::Content::StreamReady(true)))])
    }

    fn send(&mut self, id: i32, payload: Any, hub: &Hub) -> Result<Vec<Vec<u8>>, Refusal> {
        let message: signal::Message = decode(&payload)?;
        let author = key(message.author, "author")?;
        let recipient = key(message.recipient, "recipient")?;
        if self.policy != AuthPolicy::Off && !self.proven.contains(&author) {
            // An authenticated session speaks only as its own keys; anyone else only as keys
            // nobody has proven.
            let allowed = match self.policy {
                AuthPolicy::Required => false,
                _ => self.proven.is_empty() && !hub.is_claimed(&author),
            };
            if !allowed {
                return Err(Refusal::new(codes::UNAUTHORIZED, "this session may not send as that author"));
            }
        }
        // The message travels as the client encoded it: the server never re-encodes payloads.
        // It also keeps the client's buffer rather than copying it.
        hub.relay(&recipient, &Bytes::from(payload.value));
        Ok(vec![payload_frame(id, EMPTY_TYPE, &[])])
    }

    fn challenge(&mut self, id: i32, payload: &Any) -> Result<Vec<Vec<u8>>, Refusal> {
        if self.policy == AuthPolicy::Off {
            return Err(Refusal::new(codes::AUTH_DISABLED, "authentication is off on this server"));
        }
        let request: ChallengeRequest = decode(payload)?;
        let peer = key(request.peer, "peer")?;
        if self.challenges.len() >= MAX_PENDING_CHALLENGES && !self.challenges.contains_key(&peer) {
            return Err(Refusal::new(codes::LIMIT_EXCEEDED, "too many pending challenges"));
        }
        let nonce: [u8; 32] = rand::random();
        self.challenges.insert(peer, nonce);
        let reply = ChallengeResponse { nonce: nonce.to_vec() };
        Ok(vec![frame_of(response(id, response::Content::Payload(any::pack_request(&reply))))])
    }

    fn authenticate(
        &mut self,
        id: i32,
        payload: &Any,
        hub: &Hub,
        metrics: &Metrics,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        if self.policy == AuthPolicy::Off {
            return Err(Refusal::new(codes::AUTH_DISABLED, "authentication is off on this server"));
        }
        let request: AuthenticateRequest = decode(payload)?;
        let peer = key(request.peer, "peer")?;
        let verified = self.challenges.remove(&peer).is_some_and(|nonce| {
            let Ok(public) = PublicKey::try_from_slice(&peer) else { return false };
            let Ok(signature) = Signature::try_from_slice(&request.signature) else { return false };
            public.verify(&mesh_proto::auth::signal_challenge(&self.authority, &nonce), &signature).is_ok()
        });
        if !verified {
            metrics.auth_failures.inc();
            return Err(Refusal::new(
                codes::AUTHENTICATION_FAILED,
                "no matching challenge, or a bad signature",
            ));
        }
        if self.proven.contains(&peer) {
            return Ok(vec![authenticated(id)]);
        }
        if self.proven.len() >= self.caps.proven_keys {
            return Err(Refusal::new(
                codes::LIMIT_EXCEEDED,
                "this connection has proven as many keys as it may",
            ));
        }
        self.proven.insert(peer.clone());
        hub.claim(&peer);
        Ok(vec![authenticated(id)])
    }

    /// Whether this session may join as, or read the inbox of, `peer`.
    fn authorize(&self, peer: &Key, hub: &Hub) -> Result<(), Refusal> {
        let allowed = match self.policy {
            AuthPolicy::Off => true,
            AuthPolicy::Optional => self.proven.contains(peer) || !hub.is_claimed(peer),
            AuthPolicy::Required => self.proven.contains(peer),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::new(codes::UNAUTHORIZED, "this key needs an authenticated session"))
        }
    }

    /// How the hub reaches stream `stream`, opened as `peer`.
    fn registration(&self, stream: i32, peer: &Key) -> Registration {
        Registration { endpoint: self.endpoint.clone(), stream, authenticated: self.proven.contains(peer) }
    }

    fn check_new_stream(&self, id: i32) -> Result<(), Refusal> {
        if self.joins.contains_key(&id) || self.inboxes.contains_key(&id) {
            return Err(Refusal::new(codes::DUPLICATE_STREAM_ID, format!("stream {id} is already open")));
        }
        Ok(())
    }

    fn close_stream(&mut self, id: i32, hub: &Hub) {
        if let Some((topic, peer)) = self.joins.remove(&id) {
            hub.leave(&topic, &peer, self.endpoint.conn, id);
        } else if let Some(peer) = self.inboxes.remove(&id) {
            hub.unsubscribe(&peer, self.endpoint.conn, id);
        } else {
            return;
        }
        self.endpoint.mailbox.forget(id);
    }

    /// Turns something the hub queued for this connection into the frame to send, if any.
    pub(crate) fn outbound(&self, outbound: Outbound) -> Option<Vec<u8>> {
        match outbound {
            Outbound::Message { stream, message } => self
                .inboxes
                .contains_key(&stream)
                .then(|| payload_frame(stream, ".dxos.mesh.signal.Message", &message)),
            // The caller looks at the mailbox on every wake-up.
            Outbound::Wake => None,
        }
    }

    /// Turns what the mailbox held into frames: withdrawals first, then the swarm events of the
    /// Join streams still open.
    pub(crate) fn delivery(&mut self, post: Post) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for stream in post.revoked {
            // The hub already removed the registration; only this side's record is left.
            if self.joins.remove(&stream).is_some() || self.inboxes.remove(&stream).is_some() {
                frames.push(error_frame(
                    stream,
                    codes::UNAUTHORIZED,
                    "an authenticated session claimed this key",
                ));
            }
        }
        for (stream, peers) in post.events {
            if !self.joins.contains_key(&stream) {
                continue;
            }
            for (peer, unsent) in peers {
                match unsent {
                    Unsent::Arrived(since) | Unsent::Reannounced(since) => {
                        frames.push(event_frame(stream, available(peer, since)));
                    }
                    Unsent::Left => frames.push(event_frame(stream, left(peer))),
                    Unsent::Rejoined(since) => {
                        frames.push(event_frame(stream, left(peer.clone())));
                        frames.push(event_frame(stream, available(peer, since)));
                    }
                }
            }
        }
        frames
    }

    /// Releases every claim, leaves every topic and closes every inbox of this connection.
    /// Claims go first, so that whoever sees this peer's PeerLeft may already use its key.
    pub(crate) fn close(&mut self, hub: &Hub) {
        for peer in self.proven.drain() {
            hub.release(&peer);
        }
        for (id, (topic, peer)) in self.joins.drain() {
            hub.leave(&topic, &peer, self.endpoint.conn, id);
        }
        for (id, peer) in self.inboxes.drain() {
            hub.unsubscribe(&peer, self.endpoint.conn, id);
        }
    }
}

fn decode<M: Message + mesh_proto::Name + Default>(payload: &Any) -> Result<M, Refusal> {
    any::decode_value(payload).map_err(|err| Refusal::new(codes::INVALID_REQUEST, err.to_string()))
}

fn key(bytes: Vec<u8>, field: &str) -> Result<Key, Refusal> {
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
        return Err(Refusal::new(
            codes::INVALID_REQUEST,
            format!("{field} must hold 1 to {MAX_KEY_LEN} bytes, got {}", bytes.len()),
        ));
    }
    Ok(Bytes::from(bytes))
}

fn response(id: i32, content: response::Content) -> rpc_message::Content {
    rpc_message::Content::Response(Response { id: Some(id), content: Some(content) })
}

fn frame_of(content: rpc_message::Content) -> Vec<u8> {
    RpcMessage { content: Some(content) }.encode_to_vec()
}

fn available(peer: Key, since: Timestamp) -> swarm_event::Event {
    swarm_event::Event::PeerAvailable(swarm_event::PeerAvailable {
        peer: peer.into(),
        since: Some(since),
        until: None,
        announce_back_to_host: None,
    })
}

fn left(peer: Key) -> swarm_event::Event {
    swarm_event::Event::PeerLeft(swarm_event::PeerLeft { peer: peer.into() })
}

fn event_frame(stream: i32, event: swarm_event::Event) -> Vec<u8> {
    let event = SwarmEvent { event: Some(event) }.encode_to_vec();
    payload_frame(stream, ".dxos.mesh.signal.SwarmEvent", &event)
}

fn authenticated(id: i32) -> Vec<u8> {
    frame_of(response(id, response::Content::Payload(any::pack_request(&AuthenticateResponse {}))))
}

/// `RpcMessage { response: Response { id: stream, payload: Any { type_url, value } } }`: the bytes
/// [`frame_of`] gives for it, written straight from borrowed `value` instead of copying it into
/// an owned `Any` first. Every relayed message and swarm event takes this path.
fn payload_frame(stream: i32, type_url: &str, value: &[u8]) -> Vec<u8> {
    use mesh_proto::prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    let delimited_len = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let delimited_head = |tag: u32, len: usize, frame: &mut Vec<u8>| {
        encode_key(tag, WireType::LengthDelimited, frame);
        encode_varint(len as u64, frame);
    };
    // protobuf writes an int32 as the varint of its sign-extended 64-bit value.
    let id = i64::from(stream) as u64;
    // `Any` always writes both fields (see mesh_proto::wkt); `Response.id` is always set.
    let any_len = delimited_len(1, type_url.len()) + delimited_len(2, value.len());
    let response_len = key_len(1) + encoded_len_varint(id) + delimited_len(2, any_len);
    let mut frame = Vec::with_capacity(delimited_len(2, response_len));
    delimited_head(2, response_len, &mut frame); // RpcMessage.response
    encode_key(1, WireType::Varint, &mut frame); // Response.id
    encode_varint(id, &mut frame);
    delimited_head(2, any_len, &mut frame); // Response.payload
    delimited_head(1, type_url.len(), &mut frame); // Any.type_url
    frame.extend_from_slice(type_url.as_bytes());
    delimited_head(2, value.len(), &mut frame); // Any.value
    frame.extend_from_slice(value);
    frame
}

pub(crate) fn error_frame(id: i32, name: &str, message: &str) -> Vec<u8> {
    let error =
        ErrorMessage { name: Some(name.into()), message: Some(message.into()), stack: None, context: None };
    frame_of(response(id, response::Content::Error(error)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_proto::dxos::rpc::StreamClose;
    use tokio::sync::mpsc;

    use super::*;
    use crate::mailbox::Mailbox;

    /// A session of connection 1 with its mailbox, on `hub`.
    fn session(policy: AuthPolicy) -> (Session, Arc<Mailbox>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(8);
        let mailbox = Arc::new(Mailbox::default());
        let endpoint = Endpoint { conn: 1, tx, mailbox: mailbox.clone() };
        (Session::new(endpoint, Arc::from("host"), policy, &Limits::default(), Instant::now()), mailbox, rx)
    }

    fn join_frame(id: i32, topic: &[u8], peer: &[u8]) -> Vec<u8> {
        let join = JoinRequest { swarm: topic.to_vec(), peer: peer.to_vec(), metadata: None };
        let request = Request {
            id: Some(id),
            method: JOIN.into(),
            payload: Some(any::pack_request(&join)),
            stream: Some(true),
        };
        frame_of(rpc_message::Content::Request(request))
    }

    fn close_frame(id: i32) -> Vec<u8> {
        frame_of(rpc_message::Content::StreamClose(StreamClose { id: Some(id) }))
    }

    #[test]
    fn a_stream_id_reused_after_a_withdrawal_keeps_the_new_stream() {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(metrics.clone(), &Limits::default(), None);
        let (mut session, mailbox, _rx) = session(AuthPolicy::Optional);
        let (topic, owner, other) = ([1; 32], [2; 32], [3; 32]);
        let handle = |frame: Vec<u8>, session: &mut Session| {
            session.handle(&frame, Instant::now(), SystemTime::now(), &hub, &metrics).expect("valid frames")
        };
        handle(join_frame(5, &topic, &owner), &mut session);
        // The owner proves its key elsewhere: stream 5 is withdrawn, but before the session
        // hears of it, the client closes stream 5 and opens another with the same id.
        hub.claim(&Key::copy_from_slice(&owner));
        handle(close_frame(5), &mut session);
        handle(join_frame(5, &topic, &other), &mut session);
        assert_eq!(session.delivery(mailbox.take()), Vec::<Vec<u8>>::new(), "the new stream stays");
        assert_eq!(metrics.members.get(), 1);
        session.close(&hub);
        assert_eq!(metrics.members.get(), 0, "closing the session leaves the topic");
    }

    #[test]
    fn payload_frames_match_the_generic_encoder() {
        for stream in [0, 1, 127, 128, 300_000, i32::MAX, -1, i32::MIN] {
            for value in [&b""[..], b"x", &[7u8; 200][..]] {
                for type_url in ["", ".dxos.mesh.signal.Message"] {
                    let payload = Any { type_url: type_url.into(), value: value.to_vec() };
                    let expected = frame_of(response(stream, response::Content::Payload(payload)));
                    assert_eq!(payload_frame(stream, type_url, value), expected, "{stream} {type_url:?}");
                }
            }
        }
    }

    #[test]
    fn empty_replies_match_pack_request() {
        for id in [0, 5, 1 << 20, -3] {
            let expected = frame_of(response(id, response::Content::Payload(any::pack_request(&()))));
            assert_eq!(payload_frame(id, EMPTY_TYPE, &[]), expected);
        }
    }
}
