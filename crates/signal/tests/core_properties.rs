//! Random server frames (and random user calls between them) into the client's sans-IO core:
//! nothing panics, the core never keeps more streams open than its user wants, never answers a
//! send twice, reports events only for topics it joined, and each frame makes at most a bounded
//! amount of work: no more frames than its streams and waiting sends, and one output, or, when it
//! ends a topic's last Join stream, the departure of each peer announced in that topic.

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::{
    Any, Message,
    dxos::rpc::{RpcMessage, rpc_message},
};
use mesh_signal::{
    Event, SignalMessage,
    fuzzing::{ClientCore, Output, ServerFrame, Views},
};
use proptest::{collection::vec, prelude::*};

fn peer(index: u8) -> PublicKey {
    PublicKey::from_bytes([index % 4 + 1; 32])
}

fn topic(index: u8) -> DiscoveryKey {
    DiscoveryKey::from_bytes([index % 3 + 0x10; 32])
}

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Disconnect,
    Join { topic: u8, peer: u8 },
    Leave { topic: u8, peer: u8 },
    Subscribe { peer: u8 },
    Unsubscribe { peer: u8 },
    Send { author: u8, recipient: u8 },
    Reply(ServerFrame),
    Raw(Vec<u8>),
    Advance { millis: u64 },
}

fn key_bytes(index: u8) -> Vec<u8> {
    peer(index).as_bytes().to_vec()
}

fn reply() -> impl Strategy<Value = ServerFrame> {
    // Ids the core actually uses: it counts from 0.
    let id = || 0..24i32;
    prop_oneof![
        3 => id().prop_map(|id| ServerFrame::StreamReady { id }),
        3 => (id(), any::<u8>()).prop_map(|(id, peer)| ServerFrame::PeerAvailable { id, peer: key_bytes(peer) }),
        2 => (id(), any::<u8>()).prop_map(|(id, peer)| ServerFrame::PeerLeft { id, peer: key_bytes(peer) }),
        2 => (id(), any::<u8>(), any::<u8>()).prop_map(|(id, author, recipient)| {
            ServerFrame::Message { id, author: key_bytes(author), recipient: key_bytes(recipient) }
        }),
        1 => (id(), vec(any::<u8>(), 0..40)).prop_map(|(id, nonce)| ServerFrame::Challenge { id, nonce }),
        1 => (id(), vec(any::<u8>(), 0..40)).prop_map(|(id, value)| ServerFrame::Payload { id, value }),
        2 => id().prop_map(|id| ServerFrame::Error { id, name: "RATE_LIMIT_EXCEEDED".into() }),
        1 => id().prop_map(|id| ServerFrame::Close { id }),
        1 => id().prop_map(|id| ServerFrame::Empty { id }),
        1 => id().prop_map(|id| ServerFrame::Request { id }),
        1 => Just(ServerFrame::Open),
        1 => Just(ServerFrame::Bye),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(topic, peer)| Op::Join { topic, peer }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(topic, peer)| Op::Leave { topic, peer }),
        1 => any::<u8>().prop_map(|peer| Op::Subscribe { peer }),
        1 => any::<u8>().prop_map(|peer| Op::Unsubscribe { peer }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(author, recipient)| Op::Send { author, recipient }),
        9 => reply().prop_map(Op::Reply),
        1 => vec(any::<u8>(), 0..40).prop_map(Op::Raw),
        2 => (0..8_000u64).prop_map(|millis| Op::Advance { millis }),
    ]
}

/// What the user asked for, and what the core put on the wire.
#[derive(Default)]
struct Model {
    connected: bool,
    topics: BTreeSet<(u8, u8)>,
    inboxes: BTreeSet<u8>,
    /// Stream requests the core sent that neither side closed since.
    live_streams: HashSet<i32>,
    /// Every topic joined so far (events may follow a leave, reporting the topic's peers gone).
    ever_joined: HashSet<u8>,
    sent_tokens: u64,
    answered: HashSet<u64>,
    /// The peers the core announced in each topic and has not reported as left.
    views: Views,
}

impl Model {
    fn wanted(&self) -> usize {
        self.topics.len() + self.inboxes.len()
    }

    fn joined(&self, wanted: DiscoveryKey) -> bool {
        self.ever_joined.iter().any(|index| topic(*index) == wanted)
    }

    /// Sends made and not answered yet.
    fn unanswered(&self) -> usize {
        (self.sent_tokens as usize).saturating_sub(self.answered.len())
    }
}

/// Takes what the core queued and checks it against the model; returns how many frames there
/// were, and the outputs.
fn drain(core: &mut ClientCore, model: &mut Model) -> Result<(usize, Vec<Output>), TestCaseError> {
    let mut frames = 0;
    while let Some(bytes) = core.poll_transmit() {
        frames += 1;
        let message = RpcMessage::decode(bytes.as_slice());
        prop_assert!(message.is_ok(), "the core wrote an unreadable frame");
        match message.ok().and_then(|m| m.content) {
            Some(rpc_message::Content::Request(request)) if request.stream == Some(true) => {
                let id = request.id.unwrap_or_default();
                prop_assert!(model.live_streams.insert(id), "stream id {id} reused while open");
            }
            Some(rpc_message::Content::StreamClose(close)) => {
                model.live_streams.remove(&close.id.unwrap_or_default());
            }
            _ => {}
        }
    }
    let mut outputs = Vec::new();
    while let Some(output) = core.poll_output() {
        match &output {
            Output::SendResult(token, _) => {
                prop_assert!(*token < model.sent_tokens, "a result for a send never made");
                prop_assert!(model.answered.insert(*token), "send {token} answered twice");
            }
            Output::Event(Event::PeerAvailable { topic, .. } | Event::PeerLeft { topic, .. }) => {
                prop_assert!(model.joined(*topic), "an event for a topic never joined");
            }
            Output::Event(_) => {}
        }
        outputs.push(output);
    }
    prop_assert!(
        model.live_streams.len() <= model.wanted(),
        "{} streams open for {} wanted",
        model.live_streams.len(),
        model.wanted()
    );
    Ok((frames, outputs))
}

fn run(identities: Vec<Keypair>, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut core = ClientCore::new(identities);
    let mut model = Model::default();
    let mut now = Instant::now();
    for op in ops {
        match op {
            Op::Connect if !model.connected => {
                model.connected = true;
                core.on_connected(now);
            }
            Op::Connect => {}
            Op::Disconnect => {
                model.connected = false;
                model.live_streams.clear();
                core.on_disconnected();
            }
            Op::Join { topic: t, peer: p } => {
                model.topics.insert((t % 3, p % 4));
                model.ever_joined.insert(t % 3);
                core.join(now, topic(*t), peer(*p));
            }
            Op::Leave { topic: t, peer: p } => {
                model.topics.remove(&(t % 3, p % 4));
                core.leave(topic(*t), peer(*p));
            }
            Op::Subscribe { peer: p } => {
                model.inboxes.insert(p % 4);
                core.subscribe(now, peer(*p));
            }
            Op::Unsubscribe { peer: p } => {
                model.inboxes.remove(&(p % 4));
                core.unsubscribe(peer(*p));
            }
            Op::Send { author, recipient } => {
                let message = SignalMessage {
                    author: peer(*author),
                    recipient: peer(*recipient),
                    payload: Any::default(),
                };
                core.send(now, model.sent_tokens, &message);
                model.sent_tokens += 1;
            }
            Op::Reply(reply) => {
                if let ServerFrame::Error { id, .. } | ServerFrame::Close { id } = reply {
                    // The server ended that stream (if it was one).
                    model.live_streams.remove(id);
                }
                let _ = core.handle_frame(now, &reply.encode());
                // A frame may finish authentication, which opens every stream and sends what waited.
                let waiting = model.wanted() + model.unanswered();
                let (frames, outputs) = drain(&mut core, &mut model)?;
                model.views.check_frame(&outputs).map_err(TestCaseError::fail)?;
                prop_assert!(
                    frames <= 1 + waiting,
                    "one frame made {frames} frames for {waiting} streams and sends"
                );
            }
            Op::Raw(bytes) => {
                let _ = core.handle_frame(now, bytes);
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(*millis);
                core.handle_timeout(now);
                if let Some(at) = core.poll_timeout() {
                    prop_assert!(at > now, "a deadline already passed is still pending");
                }
            }
        }
        for output in drain(&mut core, &mut model)?.1 {
            model.views.record(&output);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_server_frames_keep_the_core_consistent(ops in vec(op(), 1..100)) {
        run(Vec::new(), &ops)?;
    }

    #[test]
    fn random_server_frames_during_authentication_keep_the_core_consistent(ops in vec(op(), 1..100)) {
        run(vec![Keypair::generate()], &ops)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_core(frames in vec(vec(any::<u8>(), 0..64), 1..30)) {
        let mut core = ClientCore::new(Vec::new());
        let now = Instant::now();
        core.on_connected(now);
        core.join(now, topic(0), peer(0));
        core.subscribe(now, peer(1));
        for frame in &frames {
            let _ = core.handle_frame(now, frame);
        }
    }
}
