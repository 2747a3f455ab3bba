//! A doorway for fuzz targets and property tests (feature `fuzzing`; not a stable API).
//!
//! [`ClientCore`] is the sans-IO state of one client connection, the part of [`Client`](crate::Client)
//! that reads the server's frames, with the calls its driver makes. [`ServerFrame`] writes what a
//! server sends. [`Views`] checks the events the core reports against what it announced before.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::{
    Any, Message, any,
    dxos::{
        error::Error as ErrorMessage,
        mesh::signal::{self, SwarmEvent, swarm_event},
        rpc::{Bye, Request, Response, RpcMessage, response, rpc_message},
    },
    mesh::v1::ChallengeResponse,
};

use crate::{
    Event, SignalError, SignalMessage,
    client::core::{self, Core},
};

/// The authority the core believes it connected to.
const HOST: &str = "signal.invalid:443";
/// Peers the core keeps per topic: small, so inputs reach the cap.
const MAX_PEERS_PER_TOPIC: usize = 64;

/// What the core hands back besides frames.
#[derive(Debug)]
pub enum Output {
    /// Something to tell the client's user.
    Event(Event),
    /// The outcome of the send made with this token.
    SendResult(u64, Result<(), SignalError>),
}

/// The client's protocol state for one server, driven by hand.
pub struct ClientCore(Core);

impl ClientCore {
    /// A core with default timeouts that proves `identities` after every connect.
    pub fn new(identities: Vec<Keypair>) -> Self {
        Self(Core::new(core::Timeouts::default(), HOST.to_owned(), identities, MAX_PEERS_PER_TOPIC))
    }

    /// A connection is up.
    pub fn on_connected(&mut self, now: Instant) {
        self.0.on_connected(now);
    }

    /// The connection is gone.
    pub fn on_disconnected(&mut self) {
        self.0.on_disconnected();
    }

    /// The user joins `topic` as `peer`.
    pub fn join(&mut self, now: Instant, topic: DiscoveryKey, peer: PublicKey) {
        self.0.join(now, topic, peer);
    }

    /// The user leaves `topic`.
    pub fn leave(&mut self, topic: DiscoveryKey, peer: PublicKey) {
        self.0.leave(topic, peer);
    }

    /// The user opens `peer`'s inbox.
    pub fn subscribe(&mut self, now: Instant, peer: PublicKey) {
        self.0.subscribe(now, peer);
    }

    /// The user closes `peer`'s inbox.
    pub fn unsubscribe(&mut self, peer: PublicKey) {
        self.0.unsubscribe(peer);
    }

    /// The user sends `message`; its result comes back as [`Output::SendResult`] with `token`.
    pub fn send(&mut self, now: Instant, token: u64, message: &SignalMessage) {
        self.0.send(now, token, message);
    }

    /// One frame from the server; an error means the driver drops the connection.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), mesh_proto::prost::DecodeError> {
        self.0.handle_frame(now, frame)
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }

    /// When [`ClientCore::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    /// The next frame for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.0.poll_transmit()
    }

    /// The next event or send result.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.0.poll_output().map(|output| match output {
            core::Output::Event(event) => Output::Event(event),
            core::Output::SendResult(token, result) => Output::SendResult(token, result),
        })
    }
}

/// The peers a core announced in each topic and has not reported as left, kept from its outputs
/// to check them.
#[derive(Debug, Default, Clone)]
pub struct Views(HashMap<DiscoveryKey, HashSet<PublicKey>>);

impl Views {
    /// Takes in one output.
    pub fn record(&mut self, output: &Output) {
        match output {
            Output::Event(Event::PeerAvailable { topic, peer, .. }) => {
                self.0.entry(*topic).or_default().insert(*peer);
            }
            Output::Event(Event::PeerLeft { topic, peer }) => {
                if let Some(view) = self.0.get_mut(topic) {
                    view.remove(peer);
                    if view.is_empty() {
                        self.0.remove(topic);
                    }
                }
            }
            Output::Event(_) | Output::SendResult(..) => {}
        }
    }

    /// Checks what one frame from the server made, given the views before it: at most one
    /// output, or, when the frame ended a topic's last Join stream, the departure of each peer
    /// announced in that topic, once, and nothing else. Records the outputs.
    pub fn check_frame(&mut self, outputs: &[Output]) -> Result<(), String> {
        let before = self.0.clone();
        outputs.iter().for_each(|output| self.record(output));
        if outputs.len() <= 1 {
            return Ok(());
        }
        let mut left: HashMap<DiscoveryKey, HashSet<PublicKey>> = HashMap::new();
        for output in outputs {
            let Output::Event(Event::PeerLeft { topic, peer }) = output else {
                return Err(format!("one frame made several outputs, not all departures: {outputs:?}"));
            };
            if !left.entry(*topic).or_default().insert(*peer) {
                return Err(format!("a peer reported as left twice: {outputs:?}"));
            }
        }
        let mut topics = left.into_iter();
        match (topics.next(), topics.next()) {
            (Some((topic, peers)), None) if before.get(&topic) == Some(&peers) => Ok(()),
            (Some(_), None) => Err(format!("a dropped view reported other peers than it held: {outputs:?}")),
            _ => Err(format!("one frame ended the views of several topics: {outputs:?}")),
        }
    }
}

/// A frame a server sends, with keys as raw bytes (of any length, as a hostile server's may be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// The stream `id` is open.
    StreamReady {
        /// The stream id.
        id: i32,
    },
    /// A `PeerAvailable` swarm event on stream `id`.
    PeerAvailable {
        /// The stream id.
        id: i32,
        /// The peer.
        peer: Vec<u8>,
    },
    /// A `PeerLeft` swarm event on stream `id`.
    PeerLeft {
        /// The stream id.
        id: i32,
        /// The peer.
        peer: Vec<u8>,
    },
    /// A message on the inbox stream `id`.
    Message {
        /// The stream id.
        id: i32,
        /// The sender.
        author: Vec<u8>,
        /// The recipient.
        recipient: Vec<u8>,
    },
    /// A `ChallengeResponse` to request `id`.
    Challenge {
        /// The request id.
        id: i32,
        /// The nonce to sign.
        nonce: Vec<u8>,
    },
    /// A reply to `id` with any payload bytes.
    Payload {
        /// The request or stream id.
        id: i32,
        /// The payload bytes.
        value: Vec<u8>,
    },
    /// An error reply to `id`.
    Error {
        /// The request or stream id.
        id: i32,
        /// The error's name.
        name: String,
    },
    /// The server closes stream `id`.
    Close {
        /// The stream id.
        id: i32,
    },
    /// A reply to `id` with no content.
    Empty {
        /// The request or stream id.
        id: i32,
    },
    /// A request from the server (which the signal protocol never sends).
    Request {
        /// The request id.
        id: i32,
    },
    /// The RPC handshake's `open`.
    Open,
    /// The RPC `bye`.
    Bye,
}

impl ServerFrame {
    /// The frame's bytes, as a server writes them.
    pub fn encode(&self) -> Vec<u8> {
        let event = |event| response::Content::Payload(any::pack_request(&SwarmEvent { event: Some(event) }));
        let (id, content) = match self.clone() {
            Self::StreamReady { id } => (id, Some(response::Content::StreamReady(true))),
            Self::PeerAvailable { id, peer } => {
                let available = swarm_event::PeerAvailable {
                    peer,
                    since: None,
                    until: None,
                    announce_back_to_host: None,
                };
                (id, Some(event(swarm_event::Event::PeerAvailable(available))))
            }
            Self::PeerLeft { id, peer } => {
                (id, Some(event(swarm_event::Event::PeerLeft(swarm_event::PeerLeft { peer }))))
            }
            Self::Message { id, author, recipient } => {
                let message =
                    signal::Message { author, recipient, payload: Some(Any::default()), metadata: None };
                (id, Some(response::Content::Payload(any::pack_request(&message))))
            }
            Self::Challenge { id, nonce } => {
                (id, Some(response::Content::Payload(any::pack_request(&ChallengeResponse { nonce }))))
            }
            Self::Payload { id, value } => {
                (id, Some(response::Content::Payload(Any { type_url: String::new(), value })))
            }
            Self::Error { id, name } => {
                let error = ErrorMessage { name: Some(name), message: None, stack: None, context: None };
                (id, Some(response::Content::Error(error)))
            }
            Self::Close { id } => (id, Some(response::Content::Close(true))),
            Self::Empty { id } => (id, None),
            Self::Request { id } => {
                let request = Request { id: Some(id), ..Request::default() };
                return frame(rpc_message::Content::Request(request));
            }
            Self::Open => return frame(rpc_message::Content::Open(true)),
            Self::Bye => return frame(rpc_message::Content::Bye(Bye {})),
        };
        frame(rpc_message::Content::Response(Response { id: Some(id), content }))
    }
}

fn frame(content: rpc_message::Content) -> Vec<u8> {
    RpcMessage { content: Some(content) }.encode_to_vec()
}
