//! Seed inputs for the fuzz targets, written from the golden vectors (`tests/golden/vectors`) in
//! the record format the targets read (`fuzz/src/lib.rs`: `[tag][u16 BE length][body]`), so that
//! fuzzing starts from what real DXOS peers send.

use std::path::Path;

use anyhow::{Context, Result};
use mesh_keys::{Keypair, SecretKey};
use mesh_proto::{
    Message, any,
    dxos::{
        mesh::{messaging::ReliablePayload, signal, teleport::control::ControlHeartbeatRequest},
        rpc::{Request, RpcMessage, rpc_message},
    },
};

/// Record tags, as the targets' docs define them.
mod tag {
    /// signal_server: a raw frame on connection 0; write out connection 0's queue; a raw frame on
    /// connection 1.
    pub(super) const SERVER_FRAME: u8 = 0x00;
    pub(super) const SERVER_DRAIN: u8 = 0x0c;
    pub(super) const SERVER_FRAME_ON_1: u8 = 0x10;
    /// signal_client: a raw frame from the server.
    pub(super) const CLIENT_FRAME: u8 = 0x00;
    /// swarm: a decoded message from the first peer.
    pub(super) const SWARM_MESSAGE: u8 = 0x00;
    /// teleport_stream: bytes from the remote.
    pub(super) const STREAM_BYTES: u8 = 0x00;
    /// rpc: a raw message on the served extension's channel, and on the control channel.
    pub(super) const RPC_SERVED: u8 = 0x00;
    pub(super) const RPC_CONTROL: u8 = 0x04;
}

/// One record: tag, big-endian length, body.
fn record(tag: u8, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(&body[..usize::from(length)]);
    bytes
}

/// A Teleport frame carrying `message` whole on balancer channel 0.
fn teleport_frame(message: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::new();
    mesh_proto::prost::encoding::encode_varint(0, &mut chunk);
    mesh_proto::prost::encoding::encode_varint(message.len() as u64, &mut chunk);
    chunk.extend_from_slice(message);
    let mut frame = (chunk.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&chunk);
    frame
}

fn vector(root: &Path, name: &str) -> Result<Vec<u8>> {
    let path = root.join("tests/golden/vectors").join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().find(|line| !line.starts_with('#')).context("a vector without bytes")?;
    hex::decode(line.trim()).with_context(|| format!("{}: not hex", path.display()))
}

/// The `SwarmMessage` inside a reliable signal message.
fn swarm_message(signal_message: &[u8]) -> Result<Vec<u8>> {
    let message = signal::Message::decode(signal_message)?;
    let reliable = ReliablePayload::decode(message.payload.unwrap_or_default().value.as_slice())?;
    Ok(reliable.payload.unwrap_or_default().value)
}

/// Writes every target's seeds under `dir/<target>/`, replacing earlier ones.
pub(super) fn write_all(root: &Path, dir: &Path) -> Result<()> {
    let join = vector(root, "rpc-request-join")?;
    let send = vector(root, "rpc-request-send-message")?;
    let responses = ["rpc-response-empty", "rpc-response-peer-available", "rpc-response-stream-ready"]
        .map(|name| vector(root, name));
    let responses = responses.into_iter().collect::<Result<Vec<_>>>()?;
    let heartbeat = ControlHeartbeatRequest::decode(vector(root, "control-heartbeat-request")?.as_slice())?;
    let heartbeat_request = RpcMessage {
        content: Some(rpc_message::Content::Request(Request {
            id: Some(0),
            method: "dxos.mesh.teleport.control.ControlService.Heartbeat".into(),
            payload: Some(any::pack_request(&heartbeat)),
            stream: Some(false),
        })),
    }
    .encode_to_vec();

    let mut seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "signal_server",
            "join",
            [record(tag::SERVER_FRAME, &join), record(tag::SERVER_DRAIN, &[])].concat(),
        ),
        ("signal_server", "send", record(tag::SERVER_FRAME, &send)),
        (
            "signal_server",
            "join-twice-and-send",
            [
                record(tag::SERVER_FRAME, &join),
                record(tag::SERVER_FRAME_ON_1, &join),
                record(tag::SERVER_FRAME, &send),
            ]
            .concat(),
        ),
        (
            "swarm",
            "reliable-swarm",
            record(tag::SWARM_MESSAGE, &swarm_message(&vector(root, "signal-message-reliable-swarm")?)?),
        ),
        ("teleport_stream", "first-frame", record(tag::STREAM_BYTES, &vector(root, "teleport-first-frame")?)),
        (
            "teleport_stream",
            "open-channel",
            record(tag::STREAM_BYTES, &teleport_frame(&vector(root, "muxer-open-channel")?)),
        ),
        ("rpc", "heartbeat", record(tag::RPC_CONTROL, &heartbeat_request)),
        ("rpc", "join", record(tag::RPC_SERVED, &join)),
    ];
    for (index, response) in responses.iter().enumerate() {
        seeds.push((
            "signal_client",
            ["empty", "peer-available", "stream-ready"][index],
            record(tag::CLIENT_FRAME, response),
        ));
        seeds.push((
            "rpc",
            ["response-empty", "response-peer-available", "response-stream-ready"][index],
            record(tag::RPC_SERVED, response),
        ));
    }
    seeds.extend(key_seeds());

    for target in super::TARGETS {
        let target_dir = dir.join(target);
        if target_dir.exists() {
            std::fs::remove_dir_all(&target_dir)
                .with_context(|| format!("clearing {}", target_dir.display()))?;
        }
        std::fs::create_dir_all(&target_dir).with_context(|| format!("creating {}", target_dir.display()))?;
    }
    for (target, name, bytes) in seeds {
        let path = dir.join(target).join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The keys target reads its input whole: key text, key bytes, and a key, a signature and the
/// signed message one after another.
fn key_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let pair = Keypair::from_secret(&SecretKey::from_bytes([7; 32]));
    let message = b"mesh fuzz seed";
    let signed = [pair.public().as_bytes().as_slice(), pair.sign(message).as_bytes(), message].concat();
    vec![
        ("keys", "hex", pair.public().to_hex().into_bytes()),
        ("keys", "secret-line", format!("{}\n", pair.secret().to_hex()).into_bytes()),
        ("keys", "bytes", pair.public().as_bytes().to_vec()),
        ("keys", "signed", signed),
    ]
}
