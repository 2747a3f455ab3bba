//! The signal server's federation input: what other servers publish on NATS, raw or well formed,
//! interleaved with client requests, on one real hub (`Harness::federated`).
//!
//! Records (see `mesh_fuzz`): the tag's low 4 bits pick the action, bit 4 the connection. Actions:
//! 0–3 a client request built from the body; 4–5 a raw NATS payload on a shared subject; 6 a raw
//! payload on a peer's subject (the body's first byte picks the peer); 7–10 a federation message
//! built from the body; 11–12 write out the connection's queue; 13 the client reconnects; 14–15
//! time passes (the body's number, in milliseconds, times ten) and the federation settles.
//!
//! Checked: nothing panics, no session holds more than its limits, and once every connection is
//! gone and the other servers fall silent, the hub holds nothing.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::{pool_key, records};
use mesh_proto::{
    Message, Timestamp,
    mesh::v1::{self as wire, federation},
};
use mesh_signal_server::{
    AuthPolicy,
    fuzzing::{ClientFrame, Harness, SERVER, tight_limits},
};

const CONNECTIONS: usize = 2;

fn key(index: u8) -> Vec<u8> {
    pool_key(index, 4).to_vec()
}

/// A client request, with keys from a small pool.
#[derive(Arbitrary, Debug)]
enum Request {
    Join { id: i8, topic: u8, peer: u8 },
    Receive { id: i8, peer: u8 },
    Send { id: i8, author: u8, recipient: u8, payload: Vec<u8> },
    StreamClose { id: i8 },
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
            Self::StreamClose { id } => ClientFrame::StreamClose { id: id.into() },
        }
    }
}

/// A federation message from one of a few servers (one of them this server's own id).
#[derive(Arbitrary, Debug)]
struct Envelope {
    server: u8,
    seq: u16,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Heartbeat,
    Goodbye,
    Presence { topic: u8, peer: u8, present: bool, seconds: i64 },
    Snapshot { topic: u8, members: Vec<u8>, last: bool },
    Query { topics: Vec<u8> },
    Relay { peer: u8, payload: Vec<u8> },
}

impl Envelope {
    /// The payload, and the peer whose subject it comes on.
    fn encode(self) -> (Vec<u8>, Option<Vec<u8>>) {
        let server = match self.server % 4 {
            0 => SERVER,
            other => u64::from(other),
        };
        let since = |seconds| Some(Timestamp { seconds, nanos: 0 });
        let (body, peer) = match self.body {
            Body::Heartbeat => (federation::Body::Heartbeat(wire::Heartbeat {}), None),
            Body::Goodbye => (federation::Body::Goodbye(wire::Goodbye {}), None),
            Body::Presence { topic, peer, present, seconds } => {
                let presence =
                    wire::Presence { topic: key(topic), peer: key(peer), since: since(seconds), present };
                (federation::Body::Presence(presence), None)
            }
            Body::Snapshot { topic, members, last } => {
                let members = members
                    .into_iter()
                    .map(|peer| wire::SnapshotMember { peer: key(peer), since: since(1) })
                    .collect();
                (federation::Body::Snapshot(wire::Snapshot { topic: key(topic), members, last }), None)
            }
            Body::Query { topics } => {
                (federation::Body::Query(wire::Query { topics: topics.into_iter().map(key).collect() }), None)
            }
            Body::Relay { peer, payload } => {
                (federation::Body::Relay(wire::Relay { message: payload }), Some(key(peer)))
            }
        };
        let envelope = wire::Federation { server, seq: self.seq.into(), body: Some(body) };
        (envelope.encode_to_vec(), peer)
    }
}

fn check_limits(harness: &Harness) {
    let limits = harness.limits();
    for conn in 0..harness.connections() {
        let sizes = harness.sizes(conn);
        assert!(sizes.joins <= limits.max_joins_per_connection, "{sizes:?}");
        assert!(sizes.inboxes <= limits.max_inboxes_per_connection, "{sizes:?}");
    }
}

fuzz_target!(|input: &[u8]| {
    let mut harness = Harness::federated(CONNECTIONS, AuthPolicy::Off, tight_limits());
    for record in records(input) {
        let conn = usize::from(record.tag >> 4) % CONNECTIONS;
        match record.tag & 0x0f {
            0..=3 => {
                if let Some(request) = record.structured::<Request>() {
                    let _ = harness.handle(conn, &request.frame().encode());
                }
            }
            4 | 5 => harness.from_server(record.body, None),
            6 => {
                let (peer, payload) =
                    record.body.split_first().map_or((0, &[][..]), |(peer, rest)| (*peer, rest));
                harness.from_server(payload, Some(&key(peer)));
            }
            7..=10 => {
                if let Some(envelope) = record.structured::<Envelope>() {
                    let (payload, peer) = envelope.encode();
                    harness.from_server(&payload, peer.as_deref());
                }
            }
            11 | 12 => {
                let _ = harness.drain(conn);
            }
            13 => harness.reconnect(conn),
            _ => {
                harness.advance(Duration::from_millis(u64::from(record.number()) * 10));
                harness.settle_federation();
            }
        }
        check_limits(&harness);
    }
    harness.reconnect_all();
    harness.advance(Duration::from_secs(3600));
    harness.settle_federation();
    let stats = harness.stats();
    assert_eq!(
        (stats.topics, stats.members),
        (0, 0),
        "the hub kept state of closed connections or silent servers"
    );
});
