//! Lean views of the few MESH signal frames the load generator writes and reads most, so that it
//! spends its CPU on the socket rather than on allocation: the machine is shared with the server
//! under test. They are the `dxos.rpc` / `dxos.mesh.signal` messages of MESH-SPEC §2–§3 with only
//! the fields the bench needs, using `Bytes` fields that decode without copying from a `Bytes`
//! frame and encode without allocating. On the wire a `string` and a `bytes` field are alike, and
//! an `Any`'s `value` may be declared as the message it holds.
//!
//! The payload of a relayed message is the bench's own: an `Any` whose value is a [`Stamp`].

use bytes::Bytes;
use prost::Message as _;

/// `RpcMessage` with only `request` (tag 1), holding a SendMessage request.
#[derive(Clone, PartialEq, prost::Message)]
struct SendRpc {
    #[prost(message, optional, tag = "1")]
    request: Option<SendRequest>,
}

/// `Request { id, method, payload: Any(Message), stream }`.
#[derive(Clone, PartialEq, prost::Message)]
struct SendRequest {
    #[prost(int32, optional, tag = "1")]
    id: Option<i32>,
    #[prost(bytes = "bytes", tag = "2")]
    method: Bytes,
    #[prost(message, optional, tag = "3")]
    payload: Option<MessageAny>,
    #[prost(bool, optional, tag = "4")]
    stream: Option<bool>,
}

/// `google.protobuf.Any` holding a `dxos.mesh.signal.Message`.
#[derive(Clone, PartialEq, prost::Message)]
struct MessageAny {
    #[prost(bytes = "bytes", tag = "1")]
    type_url: Bytes,
    #[prost(message, optional, tag = "2")]
    value: Option<SignalMessage>,
}

/// `dxos.mesh.signal.Message { author, recipient, payload }`.
#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessage {
    #[prost(bytes = "bytes", tag = "1")]
    author: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    recipient: Bytes,
    #[prost(message, optional, tag = "3")]
    payload: Option<StampAny>,
}

/// `google.protobuf.Any` holding a [`Stamp`].
#[derive(Clone, PartialEq, prost::Message)]
struct StampAny {
    #[prost(bytes = "bytes", tag = "1")]
    type_url: Bytes,
    #[prost(message, optional, tag = "2")]
    value: Option<Stamp>,
}

/// The bench's payload: when the message was sent, in nanoseconds since the run's start.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Stamp {
    /// Send time, ns since the run's start.
    #[prost(fixed64, tag = "1")]
    pub sent_ns: u64,
}

/// `RpcMessage` with only `response` (tag 2).
#[derive(Clone, PartialEq, prost::Message)]
struct ReplyRpc {
    #[prost(message, optional, tag = "2")]
    response: Option<Reply>,
}

/// `Response { id, payload, error, stream_ready }`; the payload stays undecoded until the stream
/// id says what it holds, and the error is only noticed.
#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(int32, optional, tag = "1")]
    id: Option<i32>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    payload: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    error: Option<Bytes>,
    #[prost(bool, optional, tag = "5")]
    stream_ready: Option<bool>,
}

/// A response read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `stream_ready` for stream `id`.
    Ready(i32),
    /// A payload for request or stream `id`: the encoded `Any`.
    Payload(i32, Bytes),
    /// An error for `id`.
    Error(i32),
    /// Anything else (not a response, `close`, or undecodable).
    Other,
}

const SEND_MESSAGE: &[u8] = b"dxos.mesh.signal.Signal.SendMessage";
const MESSAGE_TYPE: &[u8] = b".dxos.mesh.signal.Message";
const STAMP_TYPE: &[u8] = b"mesh.bench.Stamp";

/// A SendMessage request `id` from `author` to `recipient` carrying `stamp`.
pub fn send_message(id: i32, author: &Bytes, recipient: &Bytes, stamp: Stamp) -> Vec<u8> {
    let message = SignalMessage {
        author: author.clone(),
        recipient: recipient.clone(),
        payload: Some(StampAny { type_url: Bytes::from_static(STAMP_TYPE), value: Some(stamp) }),
    };
    let request = SendRequest {
        id: Some(id),
        method: Bytes::from_static(SEND_MESSAGE),
        payload: Some(MessageAny { type_url: Bytes::from_static(MESSAGE_TYPE), value: Some(message) }),
        stream: Some(false),
    };
    SendRpc { request: Some(request) }.encode_to_vec()
}

/// Reads a frame from the server as a response.
pub fn response(frame: Bytes) -> Response {
    let Ok(ReplyRpc { response: Some(reply) }) = ReplyRpc::decode(frame) else { return Response::Other };
    let id = reply.id.unwrap_or_default();
    match reply {
        Reply { stream_ready: Some(true), .. } => Response::Ready(id),
        Reply { error: Some(_), .. } => Response::Error(id),
        Reply { payload: Some(payload), .. } => Response::Payload(id, payload),
        _ => Response::Other,
    }
}

/// The stamp inside a relayed message's `Any` (an inbox stream's payload).
pub fn stamp_of(any: Bytes) -> Option<Stamp> {
    MessageAny::decode(any).ok()?.value?.payload?.value
}

#[cfg(test)]
mod tests {
    use mesh_proto::{
        Message as _,
        dxos::{
            mesh::signal::Message,
            rpc::{RpcMessage, rpc_message},
        },
    };

    use super::*;

    #[test]
    fn send_frames_are_what_the_full_types_read() {
        let (author, recipient) = (Bytes::from(vec![1; 32]), Bytes::from(vec![2; 32]));
        let frame = send_message(7, &author, &recipient, Stamp { sent_ns: 42 });
        let Ok(RpcMessage { content: Some(rpc_message::Content::Request(request)) }) =
            RpcMessage::decode(frame.as_slice())
        else {
            panic!("not a request");
        };
        assert_eq!(
            (request.id, request.method.as_str(), request.stream),
            (Some(7), "dxos.mesh.signal.Signal.SendMessage", Some(false))
        );
        let payload = request.payload.expect("a payload");
        assert_eq!(payload.type_url, ".dxos.mesh.signal.Message");
        let message = Message::decode(payload.value.as_slice()).expect("a Message");
        assert_eq!((&message.author, &message.recipient), (&author.to_vec(), &recipient.to_vec()));
        let relayed =
            mesh_proto::Any { type_url: payload.type_url, value: message.encode_to_vec() }.encode_to_vec();
        assert_eq!(stamp_of(Bytes::from(relayed)), Some(Stamp { sent_ns: 42 }));
    }
}
