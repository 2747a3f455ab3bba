//! Byte vectors written by the real DXOS 0.8.3 encoders (tests/golden/make-vectors.mjs): each one
//! decodes to the expected message and re-encodes to the same bytes, and the messages built here
//! from scratch encode to those bytes too.

use std::path::PathBuf;

use mesh_keys::PublicKey;
use mesh_proto::{
    Any, Message, Struct, Timestamp, Value, any,
    dxos::{
        keys::PublicKey as KeyMessage,
        mesh::{
            messaging::{Acknowledgement, ReliablePayload},
            muxer::{Command, OpenChannel, command},
            signal::{self, JoinRequest, SwarmEvent, swarm_event},
            swarm::{MessageData, Signal, SignalBatch, SwarmMessage, message_data},
            teleport::{control::ControlHeartbeatRequest, gossip::GossipMessage},
        },
        rpc::{Request, Response, RpcMessage, response, rpc_message},
    },
};

struct Vector {
    type_name: String,
    bytes: Vec<u8>,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/vectors")
}

fn vector(name: &str) -> Vector {
    let path = vectors_dir().join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut lines = text.lines();
    let type_name = lines.next().and_then(|line| line.strip_prefix("# ")).expect("type line").to_owned();
    let bytes = hex::decode(lines.next().expect("hex line")).expect("hex");
    Vector { type_name, bytes }
}

/// Decodes a vector as `M`, checks it re-encodes to the same bytes, and returns it.
fn decode<M: Message + Default>(name: &str) -> M {
    let vector = vector(name);
    let message = M::decode(vector.bytes.as_slice()).unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(
        hex::encode(message.encode_to_vec()),
        hex::encode(&vector.bytes),
        "{name} re-encodes differently"
    );
    message
}

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn since() -> Timestamp {
    // 2025-05-06T07:08:09.123Z
    Timestamp { seconds: 1_746_515_289, nanos: 123_000_000 }
}

fn request(message: &RpcMessage) -> &Request {
    match &message.content {
        Some(rpc_message::Content::Request(request)) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn response(message: &RpcMessage) -> &Response {
    match &message.content {
        Some(rpc_message::Content::Response(response)) => response,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn every_vector_round_trips() {
    let mut count = 0;
    for entry in std::fs::read_dir(vectors_dir()).expect("vectors directory") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_owned();
        match vector(&name).type_name.as_str() {
            "dxos.rpc.RpcMessage" => {
                decode::<RpcMessage>(&name);
            }
            "dxos.mesh.signal.Message" => {
                decode::<signal::Message>(&name);
            }
            "dxos.mesh.muxer.Command" => {
                decode::<Command>(&name);
            }
            "dxos.mesh.teleport.control.ControlHeartbeatRequest" => {
                decode::<ControlHeartbeatRequest>(&name);
            }
            "dxos.mesh.teleport.gossip.GossipMessage" => {
                decode::<GossipMessage>(&name);
            }
            "frame" => {}
            other => panic!("{name}: no decoder for {other}"),
        }
        count += 1;
    }
    assert!(count >= 10, "only {count} vectors found");
}

#[test]
fn join_request_from_dxos_client() {
    let message = decode::<RpcMessage>("rpc-request-join");
    let request = request(&message);
    // The first request of a DXOS RPC peer has id 0, written explicitly.
    assert_eq!(request.id, Some(0));
    assert_eq!(request.method, "dxos.mesh.signal.Signal.Join");
    assert_eq!(request.stream, Some(true));
    let payload = request.payload.as_ref().expect("payload");
    assert_eq!(payload.type_url, ".dxos.mesh.signal.JoinRequest");
    let join: JoinRequest = any::unpack(payload).expect("join request");
    assert_eq!(join.swarm, key(0x11).as_bytes());
    assert_eq!(join.peer, key(0xa1).as_bytes());
    let metadata = join.metadata.as_ref().expect("metadata");
    assert_eq!(metadata.fields.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["version", "agent"]);

    // Built from scratch, the same request encodes to the same bytes.
    let built = RpcMessage {
        content: Some(rpc_message::Content::Request(Request {
            id: Some(0),
            method: "dxos.mesh.signal.Signal.Join".into(),
            payload: Some(any::pack_request(&JoinRequest {
                swarm: key(0x11).as_bytes().to_vec(),
                peer: key(0xa1).as_bytes().to_vec(),
                metadata: Some(Struct::new().with("version", "0.8.3").with("agent", "golden")),
            })),
            stream: Some(true),
        })),
    };
    assert_eq!(built.encode_to_vec(), vector("rpc-request-join").bytes);
}

#[test]
fn stream_ready_from_dxos_server() {
    let message = decode::<RpcMessage>("rpc-response-stream-ready");
    let built = RpcMessage {
        content: Some(rpc_message::Content::Response(Response {
            id: Some(0),
            content: Some(response::Content::StreamReady(true)),
        })),
    };
    assert_eq!(message, built);
}

#[test]
fn peer_available_with_timestamp() {
    let message = decode::<RpcMessage>("rpc-response-peer-available");
    let response = response(&message);
    assert_eq!(response.id, Some(0));
    let Some(response::Content::Payload(payload)) = &response.content else { panic!("expected a payload") };
    assert_eq!(payload.type_url, ".dxos.mesh.signal.SwarmEvent");
    let event: SwarmEvent = any::unpack(payload).expect("swarm event");
    let expected = SwarmEvent {
        event: Some(swarm_event::Event::PeerAvailable(swarm_event::PeerAvailable {
            peer: key(0xb2).as_bytes().to_vec(),
            since: Some(since()),
            until: None,
            announce_back_to_host: None,
        })),
    };
    assert_eq!(event, expected);
    assert_eq!(any::pack_request(&expected), *payload);
}

/// The swarm offer built here as our swarm messenger will build it.
fn swarm_message() -> SwarmMessage {
    let offer = Struct::new()
        .with("data", Struct::new().with("type", "offer").with("sdp", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"));
    let candidate = Struct::new().with(
        "data",
        Struct::new().with("type", "candidate").with(
            "candidate",
            Struct::new()
                .with("candidate", "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host")
                .with("sdpMLineIndex", 0.0)
                .with("sdpMid", "0"),
        ),
    );
    let port = Struct::new().with("port", 40123u16);
    SwarmMessage {
        topic: Some(key(0x11).into()),
        session_id: Some(key(0x5e).into()),
        message_id: Some(key(0x6d).into()),
        data: Some(MessageData {
            payload: Some(message_data::Payload::SignalBatch(SignalBatch {
                signals: [offer, candidate, port]
                    .into_iter()
                    .map(|payload| Signal { payload: Some(payload) })
                    .collect(),
            })),
        }),
    }
}

#[test]
fn reliable_swarm_signal_batch() {
    let message = decode::<signal::Message>("signal-message-reliable-swarm");
    assert_eq!(message.author, key(0xa1).as_bytes());
    assert_eq!(message.recipient, key(0xb2).as_bytes());
    let payload = message.payload.as_ref().expect("payload");
    assert_eq!(payload.type_url, "dxos.mesh.messaging.ReliablePayload");
    let reliable: ReliablePayload = any::unpack(payload).expect("reliable payload");
    assert_eq!(reliable.message_id.as_ref().map(KeyMessage::to_key), Some(Ok(key(0x7c))));
    let inner = reliable.payload.as_ref().expect("inner payload");
    assert_eq!(inner.type_url, "dxos.mesh.swarm.SwarmMessage");
    let swarm: SwarmMessage = any::unpack(inner).expect("swarm message");
    assert_eq!(swarm, swarm_message());

    let Some(message_data::Payload::SignalBatch(batch)) = swarm.data.and_then(|d| d.payload) else {
        panic!("expected a signal batch")
    };
    let port = batch.signals[2].payload.as_ref().and_then(|p| p.get("port")).and_then(Value::as_f64);
    assert_eq!(port, Some(40123.0));

    let built = signal::Message {
        author: key(0xa1).as_bytes().to_vec(),
        recipient: key(0xb2).as_bytes().to_vec(),
        payload: Some(any::pack(&ReliablePayload {
            message_id: Some(key(0x7c).into()),
            payload: Some(any::pack(&swarm_message())),
        })),
        metadata: None,
    };
    assert_eq!(built.encode_to_vec(), vector("signal-message-reliable-swarm").bytes);
}

#[test]
fn send_message_request_and_empty_reply() {
    let message = decode::<RpcMessage>("rpc-request-send-message");
    let request = request(&message);
    assert_eq!(request.id, Some(1));
    assert_eq!(request.method, "dxos.mesh.signal.Signal.SendMessage");
    // A unary DXOS request says `stream: false` explicitly.
    assert_eq!(request.stream, Some(false));
    let relayed: signal::Message =
        any::decode_value(request.payload.as_ref().expect("payload")).expect("message");
    assert_eq!(relayed.encode_to_vec(), vector("signal-message-reliable-swarm").bytes);

    let reply = decode::<RpcMessage>("rpc-response-empty");
    let built = RpcMessage {
        content: Some(rpc_message::Content::Response(Response {
            id: Some(1),
            content: Some(response::Content::Payload(any::pack_request(&()))),
        })),
    };
    assert_eq!(reply, built);
}

#[test]
fn acknowledgement() {
    let message = decode::<signal::Message>("signal-message-acknowledgement");
    let ack: Acknowledgement = any::unpack(message.payload.as_ref().expect("payload")).expect("ack");
    assert_eq!(ack.message_id.as_ref().map(KeyMessage::to_key), Some(Ok(key(0x7c))));
}

#[test]
fn muxer_open_channel_matches_observed_first_frame() {
    let command = decode::<Command>("muxer-open-channel");
    let expected = Command {
        payload: Some(command::Payload::OpenChannel(OpenChannel {
            id: 1,
            tag: "dxos.mesh.teleport.control/rpc".into(),
            content_type: Some("application/x-protobuf; messageType=\"dxos.rpc.Message\"".into()),
        })),
    };
    assert_eq!(command, expected);
    // Frame: u16 length 0x5e; balancer: channel 0, total length 0x5c; then the command.
    let frame = vector("teleport-first-frame").bytes;
    assert_eq!(&frame[..4], &[0x00, 0x5e, 0x00, 0x5c]);
    assert_eq!(&frame[4..], expected.encode_to_vec().as_slice());
}

#[test]
fn heartbeat_and_gossip() {
    let heartbeat = decode::<ControlHeartbeatRequest>("control-heartbeat-request");
    assert_eq!(heartbeat.request_timestamp, Some(since()));

    let gossip = decode::<GossipMessage>("gossip-presence");
    assert_eq!(gossip.channel_id, "dxos.mesh.presence.Presence");
    assert_eq!(gossip.timestamp, Some(since()));
    let state: mesh_proto::dxos::mesh::presence::PeerState =
        any::unpack(gossip.payload.as_ref().expect("payload")).expect("peer state");
    assert_eq!(state.connections, vec![KeyMessage::from(key(0xb2))]);
    assert_eq!(state.peer_id, Some(key(0xa1).into()));
    // Inner payloads carry their type without a leading dot.
    assert_eq!(gossip.payload.as_ref().map(|p| p.type_url.as_str()), Some("dxos.mesh.presence.PeerState"));
    let _: &Any = gossip.payload.as_ref().expect("payload");
}
