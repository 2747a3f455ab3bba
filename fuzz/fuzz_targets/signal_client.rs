//! The signal client's frame handling: the client's sans-IO core (`Core::handle_frame`), connected,
//! joined to a topic and reading an inbox, so that its streams exist before the server's frames
//! arrive.
//!
//! Records (see `mesh_fuzz`): the tag's low 4 bits pick the action; the first record's top bit
//! gives the client a key to prove. Actions: 0–5 a raw frame from the server (the body); 6–9 a
//! server frame built from the body; 10 the connection drops and comes back; 11 a user call built
//! from the body; 12–15 time passes (the body's number, in milliseconds).
//!
//! Checked: nothing panics, every frame the client writes is a readable `RpcMessage`, no send is
//! answered twice or without being made, and each frame from the server gives at most one output,
//! except a frame that ends a topic's last Join stream: it reports each peer the client had
//! announced in that topic as left, once, and nothing else.

#![no_main]

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::{pool_key, records};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey, SecretKey};
use mesh_proto::{Any, Message, dxos::rpc::RpcMessage};
use mesh_signal::{
    SignalMessage,
    fuzzing::{ClientCore, Output, ServerFrame, Views},
};

/// A frame from the server, answering ids the client uses (it counts from 0), with keys from a
/// small pool or of any length.
#[derive(Arbitrary, Debug)]
enum Frame {
    StreamReady { id: u8 },
    PeerAvailable { id: u8, peer: Key },
    PeerLeft { id: u8, peer: Key },
    Message { id: u8, author: Key, recipient: Key },
    Challenge { id: u8, nonce: Vec<u8> },
    Payload { id: i32, value: Vec<u8> },
    Error { id: u8, name: String },
    Close { id: u8 },
    Empty { id: i32 },
    Request { id: i32 },
    Open,
    Bye,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Pool(u8),
    Bytes(Vec<u8>),
}

impl Key {
    fn bytes(self) -> Vec<u8> {
        match self {
            Self::Pool(index) => pool_key(index, 4).to_vec(),
            Self::Bytes(bytes) => bytes,
        }
    }
}

impl Frame {
    fn server_frame(self) -> ServerFrame {
        match self {
            Self::StreamReady { id } => ServerFrame::StreamReady { id: id.into() },
            Self::PeerAvailable { id, peer } => {
                ServerFrame::PeerAvailable { id: id.into(), peer: peer.bytes() }
            }
            Self::PeerLeft { id, peer } => ServerFrame::PeerLeft { id: id.into(), peer: peer.bytes() },
            Self::Message { id, author, recipient } => {
                ServerFrame::Message { id: id.into(), author: author.bytes(), recipient: recipient.bytes() }
            }
            Self::Challenge { id, nonce } => ServerFrame::Challenge { id: id.into(), nonce },
            Self::Payload { id, value } => ServerFrame::Payload { id, value },
            Self::Error { id, name } => ServerFrame::Error { id: id.into(), name },
            Self::Close { id } => ServerFrame::Close { id: id.into() },
            Self::Empty { id } => ServerFrame::Empty { id },
            Self::Request { id } => ServerFrame::Request { id },
            Self::Open => ServerFrame::Open,
            Self::Bye => ServerFrame::Bye,
        }
    }
}

/// What the client's user does, with keys from a small pool.
#[derive(Arbitrary, Debug)]
enum Call {
    Join { topic: u8, peer: u8 },
    Leave { topic: u8, peer: u8 },
    Subscribe { peer: u8 },
    Unsubscribe { peer: u8 },
    Send { author: u8, recipient: u8 },
}

fn peer(index: u8) -> PublicKey {
    PublicKey::from_bytes(pool_key(index, 4))
}

fn topic(index: u8) -> DiscoveryKey {
    DiscoveryKey::from_bytes(pool_key(index.wrapping_add(4), 7))
}

/// What the client has reported so far, to check its outputs against.
#[derive(Default)]
struct Model {
    /// Sends made so far.
    sends_made: u64,
    /// Sends answered.
    answered: HashSet<u64>,
    /// The peers announced in each topic and not yet reported as left.
    views: Views,
}

/// Takes what the core queued after one frame from the server and checks it.
fn drain_frame(core: &mut ClientCore, model: &mut Model) {
    let outputs = drain(core, model);
    if let Err(err) = model.views.check_frame(&outputs) {
        panic!("{err}");
    }
}

/// Takes what the core queued after anything but a frame from the server.
fn drain_other(core: &mut ClientCore, model: &mut Model) {
    for output in drain(core, model) {
        model.views.record(&output);
    }
}

/// Takes what the core queued, checks each piece, and returns the outputs.
fn drain(core: &mut ClientCore, model: &mut Model) -> Vec<Output> {
    while let Some(frame) = core.poll_transmit() {
        assert!(RpcMessage::decode(frame.as_slice()).is_ok(), "the client wrote an unreadable frame");
    }
    let mut outputs = Vec::new();
    while let Some(output) = core.poll_output() {
        if let Output::SendResult(token, _) = output {
            assert!(token < model.sends_made, "a result for a send never made");
            assert!(model.answered.insert(token), "send {token} answered twice");
        }
        outputs.push(output);
    }
    outputs
}

fuzz_target!(|input: &[u8]| {
    let identities = match input.first() {
        Some(tag) if tag & 0x80 != 0 => vec![Keypair::from_secret(&SecretKey::from_bytes([9; 32]))],
        _ => Vec::new(),
    };
    let mut core = ClientCore::new(identities);
    let mut model = Model::default();
    let mut now = Instant::now();
    core.on_connected(now);
    core.join(now, topic(0), peer(0));
    core.subscribe(now, peer(0));
    drain_other(&mut core, &mut model);
    for record in records(input) {
        match record.tag & 0x0f {
            0..=5 => {
                let _ = core.handle_frame(now, record.body);
                drain_frame(&mut core, &mut model);
            }
            6..=9 => {
                if let Some(frame) = record.structured::<Frame>() {
                    let _ = core.handle_frame(now, &frame.server_frame().encode());
                    drain_frame(&mut core, &mut model);
                }
            }
            10 => {
                core.on_disconnected();
                core.on_connected(now);
            }
            11 => match record.structured::<Call>() {
                Some(Call::Join { topic: t, peer: p }) => core.join(now, topic(t), peer(p)),
                Some(Call::Leave { topic: t, peer: p }) => core.leave(topic(t), peer(p)),
                Some(Call::Subscribe { peer: p }) => core.subscribe(now, peer(p)),
                Some(Call::Unsubscribe { peer: p }) => core.unsubscribe(peer(p)),
                Some(Call::Send { author, recipient }) => {
                    let message = SignalMessage {
                        author: peer(author),
                        recipient: peer(recipient),
                        payload: Any::default(),
                    };
                    core.send(now, model.sends_made, &message);
                    model.sends_made += 1;
                }
                None => {}
            },
            _ => {
                now += Duration::from_millis(record.number().into());
                core.handle_timeout(now);
            }
        }
        drain_other(&mut core, &mut model);
    }
});
