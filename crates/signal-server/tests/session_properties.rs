//! Random client frames into the server's sessions (several connections on one real hub): nothing
//! panics, every reply is a well-formed frame, no session holds more than its limits allow, and
//! once every connection is gone the hub holds nothing.

use std::time::Duration;

use mesh_proto::{Message, dxos::rpc::RpcMessage};
use mesh_signal_server::{
    AuthPolicy, Limits,
    fuzzing::{ClientFrame, Handled, Harness, tight_limits},
};
use proptest::{collection::vec, prelude::*};

const CONNECTIONS: usize = 3;

/// A key from a small pool, so that connections meet in topics and inboxes; the last ones have
/// lengths the server refuses.
fn key(index: u8) -> Vec<u8> {
    match index % 8 {
        6 => Vec::new(),
        7 => vec![7; 65],
        n => vec![n; 32],
    }
}

#[derive(Debug, Clone)]
enum Op {
    Frame { conn: usize, frame: ClientFrame },
    Raw { conn: usize, bytes: Vec<u8> },
    Drain { conn: usize },
    Reconnect { conn: usize },
    Advance { millis: u64 },
}

fn frame() -> impl Strategy<Value = ClientFrame> {
    // Few stream ids, so that duplicates and closes hit open streams.
    let id = 0..6i32;
    let payload = || vec(any::<u8>(), 0..16);
    prop_oneof![
        4 => (id.clone(), any::<u8>(), any::<u8>())
            .prop_map(|(id, topic, peer)| ClientFrame::Join { id, topic: key(topic), peer: key(peer) }),
        2 => (id.clone(), any::<u8>()).prop_map(|(id, peer)| ClientFrame::Receive { id, peer: key(peer) }),
        3 => (id.clone(), any::<u8>(), any::<u8>(), payload()).prop_map(|(id, author, recipient, payload)| {
            ClientFrame::Send { id, author: key(author), recipient: key(recipient), payload }
        }),
        1 => (id.clone(), any::<u8>()).prop_map(|(id, peer)| ClientFrame::Challenge { id, peer: key(peer) }),
        1 => (id.clone(), any::<u8>(), vec(any::<u8>(), 0..70)).prop_map(|(id, peer, signature)| {
            ClientFrame::Authenticate { id, peer: key(peer), signature }
        }),
        1 => (id.clone(), ".{0,40}", payload())
            .prop_map(|(id, method, payload)| ClientFrame::Request { id, method, payload }),
        2 => id.prop_map(|id| ClientFrame::StreamClose { id }),
        1 => Just(ClientFrame::Open),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0..CONNECTIONS;
    prop_oneof![
        8 => (conn.clone(), frame()).prop_map(|(conn, frame)| Op::Frame { conn, frame }),
        1 => (conn.clone(), vec(any::<u8>(), 0..48)).prop_map(|(conn, bytes)| Op::Raw { conn, bytes }),
        3 => conn.clone().prop_map(|conn| Op::Drain { conn }),
        1 => conn.prop_map(|conn| Op::Reconnect { conn }),
        1 => (0..3_000u64).prop_map(|millis| Op::Advance { millis }),
    ]
}

fn policy() -> impl Strategy<Value = AuthPolicy> {
    prop_oneof![Just(AuthPolicy::Off), Just(AuthPolicy::Optional), Just(AuthPolicy::Required)]
}

/// Every frame the server writes is an `RpcMessage` a client can read.
fn assert_well_formed(handled: &Handled) -> Result<(), TestCaseError> {
    if let Handled::Frames(frames) = handled {
        for frame in frames {
            let message = RpcMessage::decode(frame.as_slice());
            prop_assert!(message.is_ok_and(|m| m.content.is_some()), "unreadable frame {frame:?}");
        }
    }
    Ok(())
}

fn assert_within_limits(harness: &Harness) -> Result<(), TestCaseError> {
    let limits = harness.limits().clone();
    for conn in 0..harness.connections() {
        let sizes = harness.sizes(conn);
        prop_assert!(sizes.joins <= limits.max_joins_per_connection, "{sizes:?}");
        prop_assert!(sizes.inboxes <= limits.max_inboxes_per_connection, "{sizes:?}");
        prop_assert!(sizes.challenges <= sizes.max_challenges, "{sizes:?}");
    }
    let stats = harness.stats();
    prop_assert!(stats.members <= (harness.connections() * limits.max_joins_per_connection) as u64);
    prop_assert!(stats.topics <= stats.members, "{stats:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_keep_sessions_within_their_limits(policy in policy(), ops in vec(op(), 1..120)) {
        let mut harness = Harness::new(CONNECTIONS, policy, tight_limits());
        for op in &ops {
            match op {
                Op::Frame { conn, frame } => assert_well_formed(&harness.handle(*conn, &frame.encode()))?,
                Op::Raw { conn, bytes } => assert_well_formed(&harness.handle(*conn, bytes))?,
                Op::Drain { conn } => assert_well_formed(&harness.drain(*conn))?,
                Op::Reconnect { conn } => harness.reconnect(*conn),
                Op::Advance { millis } => harness.advance(Duration::from_millis(*millis)),
            }
            assert_within_limits(&harness)?;
        }
        harness.reconnect_all();
        let stats = harness.stats();
        prop_assert_eq!((stats.topics, stats.members), (0, 0), "the hub kept state of closed connections");
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_session(frames in vec(vec(any::<u8>(), 0..96), 1..40)) {
        let mut harness = Harness::new(1, AuthPolicy::Optional, Limits::default());
        for frame in &frames {
            assert_well_formed(&harness.handle(0, frame))?;
        }
    }
}
