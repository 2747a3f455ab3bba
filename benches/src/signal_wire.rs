//! The frames the signal load generator writes and reads: the MESH signal protocol (one
//! `dxos.rpc.RpcMessage` per binary WebSocket message, MESH-SPEC §2–§3) and the bare relay's
//! framing ([`crate::bare_relay`]). Each relayed message carries its send time, in nanoseconds
//! since the run's start, so the receiver can compute latency.

use bytes::Bytes;
use mesh_proto::{
    Any, Message as _, any,
    dxos::{
        mesh::signal::{JoinRequest, ReceptionRequest},
        rpc::{Request, RpcMessage, rpc_message},
    },
};

use crate::{
    bare_relay,
    signal_codec::{self, Response, Stamp},
};

/// Length of the peer and topic keys the load generator uses.
pub const KEY_LEN: usize = 32;

/// The mesh client's Join stream.
const JOIN_STREAM: i32 = 1;
/// The mesh client's inbox (ReceiveMessages) stream.
const INBOX_STREAM: i32 = 2;
/// The first request id a mesh client uses for SendMessage.
pub const FIRST_SEND_ID: i32 = 3;
const JOIN: &str = "dxos.mesh.signal.Signal.Join";
/// The text frame a DXOS client sends to keep its connection alive: the mesh server counts any
/// frame as activity and closes connections silent for its idle timeout; the bare relay ignores it.
pub const KEEP_ALIVE: &str = "__ping__";
const RECEIVE_MESSAGES: &str = "dxos.mesh.signal.Signal.ReceiveMessages";

/// Which server a client talks to, and so which framing it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The mesh signal server: Join, ReceiveMessages and SendMessage over `dxos.rpc`.
    Mesh,
    /// The bare relay written for the bench.
    Bare,
}

/// What a frame from the server means to the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// One of the streams (or registrations) asked for at setup is open.
    Ready,
    /// A relayed message, sent at `sent_ns` after the run's start.
    Delivered {
        /// When the sender wrote it, in nanoseconds since the run's start.
        sent_ns: u64,
    },
    /// A swarm event (PeerAvailable or PeerLeft) on the Join stream.
    SwarmEvent,
    /// The reply to a SendMessage.
    Reply,
    /// An error response (such as `RATE_LIMIT_EXCEEDED`).
    Refused,
    /// Anything else: frames the bench does not look at.
    Other,
}

impl Wire {
    /// The frames a client sends once connected: mesh joins `topic` as `peer` and opens its inbox;
    /// bare registers `peer`. The client is ready after as many [`Incoming::Ready`] as frames.
    pub fn setup_frames(self, topic: &[u8], peer: &[u8]) -> Vec<Vec<u8>> {
        match self {
            Self::Mesh => {
                let join = JoinRequest { swarm: topic.to_vec(), peer: peer.to_vec(), metadata: None };
                let inbox = ReceptionRequest { peer: peer.to_vec() };
                vec![
                    request(JOIN_STREAM, JOIN, any::pack_request(&join), true),
                    request(INBOX_STREAM, RECEIVE_MESSAGES, any::pack_request(&inbox), true),
                ]
            }
            Self::Bare => vec![bare_relay::register_frame(peer)],
        }
    }

    /// A frame sending a message from `author` to `recipient` stamped with `sent_ns`; `id` is the
    /// request id (mesh only).
    pub fn send_frame(self, id: i32, author: &Bytes, recipient: &Bytes, sent_ns: u64) -> Vec<u8> {
        match self {
            Self::Mesh => signal_codec::send_message(id, author, recipient, Stamp { sent_ns }),
            Self::Bare => {
                let mut payload = Vec::with_capacity(KEY_LEN + 8);
                payload.extend_from_slice(author);
                payload.extend_from_slice(&sent_ns.to_le_bytes());
                bare_relay::send_frame(recipient, &payload)
            }
        }
    }

    /// Reads a frame from the server.
    pub fn parse(self, frame: Bytes) -> Incoming {
        match self {
            Self::Mesh => parse_mesh(frame),
            Self::Bare => parse_bare(&frame),
        }
    }
}

fn request(id: i32, method: &str, payload: Any, stream: bool) -> Vec<u8> {
    let request =
        Request { id: Some(id), method: method.into(), payload: Some(payload), stream: Some(stream) };
    RpcMessage { content: Some(rpc_message::Content::Request(request)) }.encode_to_vec()
}

fn parse_mesh(frame: Bytes) -> Incoming {
    match signal_codec::response(frame) {
        Response::Ready(JOIN_STREAM | INBOX_STREAM) => Incoming::Ready,
        Response::Payload(INBOX_STREAM, any) => signal_codec::stamp_of(any)
            .map_or(Incoming::Other, |stamp| Incoming::Delivered { sent_ns: stamp.sent_ns }),
        Response::Payload(JOIN_STREAM, _) => Incoming::SwarmEvent,
        Response::Payload(id, _) if id >= FIRST_SEND_ID => Incoming::Reply,
        Response::Error(_) => Incoming::Refused,
        _ => Incoming::Other,
    }
}

fn parse_bare(frame: &[u8]) -> Incoming {
    if frame == bare_relay::REGISTERED {
        return Incoming::Ready;
    }
    // A delivered frame is the send frame unchanged: the recipient, then our payload (the author
    // and the 8-byte timestamp).
    match bare_relay::payload_of(frame).and_then(|payload| payload.get(KEY_LEN..)) {
        Some(stamp) => <[u8; 8]>::try_from(stamp)
            .map_or(Incoming::Other, |stamp| Incoming::Delivered { sent_ns: u64::from_le_bytes(stamp) }),
        None => Incoming::Other,
    }
}
