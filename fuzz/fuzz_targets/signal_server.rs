//! The signal server's request handling: several connections' sessions on one real hub
//! (`Session::handle`), with what the hub queues for each connection written out through the
//! session's outbound path.
//!
//! Records (see `mesh_fuzz`): the tag's low 4 bits pick the action, the next 2 the connection,
//! and the first record's top 2 bits the auth policy. Actions: 0–7 a raw WebSocket message (the
//! body); 8–11 a request built from the body; 12–13 write out the connection's queue; 14 the client
//! reconnects; 15 time passes (the body's number, in milliseconds).
//!
//! Checked: nothing panics, every frame the server writes is a readable `RpcMessage`, no session
//! holds more than its limits, and once every connection is gone the hub holds nothing.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::{pool_key, records};
use mesh_proto::{Message, dxos::rpc::RpcMessage};
use mesh_signal_server::{
    AuthPolicy,
    fuzzing::{ClientFrame, Handled, Harness, tight_limits},
};

const CONNECTIONS: usize = 3;

/// A request, with keys from a small pool (and two of lengths the server refuses).
#[derive(Arbitrary, Debug)]
enum Request {
    Join { id: i8, topic: u8, peer: u8 },
    Receive { id: i8, peer: u8 },
    Send { id: i8, author: u8, recipient: u8, payload: Vec<u8> },
    Challenge { id: i8, peer: u8 },
    Authenticate { id: i8, peer: u8, signature: Vec<u8> },
    Other { id: i32, method: String, payload: Vec<u8> },
    StreamClose { id: i8 },
    Open,
}

fn key(index: u8) -> Vec<u8> {
    match index % 8 {
        6 => Vec::new(),
        7 => vec![7; 65],
        n => pool_key(n, 6).to_vec(),
    }
}

impl Request {
    fn frame(self) -> ClientFrame {
        match self {
            Self::Join { id, topic, peer } => {
                ClientFrame::Join { id: id.into(), topic: key(topic), peer: key(peer) }
            }
            Self::Receive { id, peer } => ClientFrame::Receive { id: id.into(), peer: key(peer) },
            Self::Send { id, author, recipient, payload } => {
                ClientFrame::Send { id: id.into(), author: key(author), recipient: key(recipient), payload }
            }
            Self::Challenge { id, peer } => ClientFrame::Challenge { id: id.into(), peer: key(peer) },
            Self::Authenticate { id, peer, signature } => {
                ClientFrame::Authenticate { id: id.into(), peer: key(peer), signature }
            }
            Self::Other { id, method, payload } => ClientFrame::Request { id, method, payload },
            Self::StreamClose { id } => ClientFrame::StreamClose { id: id.into() },
            Self::Open => ClientFrame::Open,
        }
    }
}

fn check_frames(handled: &Handled) {
    if let Handled::Frames(frames) = handled {
        for frame in frames {
            let message = RpcMessage::decode(frame.as_slice());
            assert!(message.is_ok_and(|m| m.content.is_some()), "the server wrote an unreadable frame");
        }
    }
}

fn check_limits(harness: &Harness) {
    let limits = harness.limits();
    for conn in 0..harness.connections() {
        let sizes = harness.sizes(conn);
        assert!(sizes.joins <= limits.max_joins_per_connection, "{sizes:?}");
        assert!(sizes.inboxes <= limits.max_inboxes_per_connection, "{sizes:?}");
        assert!(sizes.challenges <= sizes.max_challenges, "{sizes:?}");
    }
    let stats = harness.stats();
    assert!(stats.members <= (harness.connections() * limits.max_joins_per_connection) as u64, "{stats:?}");
}

fuzz_target!(|input: &[u8]| {
    let policy = match input.first().map_or(0, |tag| tag >> 6) {
        0 | 1 => AuthPolicy::Optional,
        2 => AuthPolicy::Off,
        _ => AuthPolicy::Required,
    };
    let mut harness = Harness::new(CONNECTIONS, policy, tight_limits());
    for record in records(input) {
        let conn = usize::from(record.tag >> 4) % CONNECTIONS;
        match record.tag & 0x0f {
            0..=7 => check_frames(&harness.handle(conn, record.body)),
            8..=11 => {
                if let Some(request) = record.structured::<Request>() {
                    check_frames(&harness.handle(conn, &request.frame().encode()));
                }
            }
            12 | 13 => check_frames(&harness.drain(conn)),
            14 => harness.reconnect(conn),
            _ => harness.advance(Duration::from_millis(record.number().into())),
        }
        check_limits(&harness);
    }
    harness.reconnect_all();
    let stats = harness.stats();
    assert_eq!((stats.topics, stats.members), (0, 0), "the hub kept state of closed connections");
});
