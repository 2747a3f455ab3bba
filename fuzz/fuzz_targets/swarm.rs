//! `Swarm::handle_message` with arbitrary swarm messages, Struct signals among them, between
//! signaling and transport reports and time, through the swarm's public API.
//!
//! Records (see `mesh_fuzz`): the tag's low 4 bits pick the action, the top 4 the remote peer (of
//! six, half with keys below ours). Actions: 0–3 a `SwarmMessage` decoded from the body (bytes that
//! do not decode are dropped, as the messenger drops them); 4–9 a message built from the body, with
//! sessions and offer ids that are the swarm's own or made up; 10 the peer is available; 11 it
//! left; 12 a transport report built from the body; 13 the swarm leaves; 14–15 time passes (the
//! body's number, in milliseconds, times ten).
//!
//! Checked: nothing panics, transports are opened, signalled and closed in order, and no handled
//! deadline stays pending (a driver would spin).

#![no_main]

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::{pool_key, records};
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{
    Message, Struct,
    dxos::mesh::swarm::{Answer, MessageData, Offer, Signal, SignalBatch, SwarmMessage, message_data},
};
use mesh_swarm::{ConnectionState, Event, Output, Swarm, SwarmConfig, topology::FullyConnected};

/// A key the swarm made (a session or an offer id it sent) or one made up.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum KeyRef {
    Seen(u8),
    MadeUp(u8),
}

/// A swarm message from the remote; signal payloads are Structs decoded from bytes.
#[derive(Arbitrary, Debug)]
enum Remote {
    Offer { session: KeyRef, id: KeyRef },
    Answer { session: KeyRef, accept: bool, offer: Option<KeyRef> },
    Signal { session: KeyRef, payload: Vec<u8> },
    Batch { session: KeyRef, payloads: Vec<Vec<u8>> },
    Empty { session: KeyRef },
}

/// What a transport reports.
#[derive(Arbitrary, Debug)]
enum Report {
    Connected { session: KeyRef },
    Closed { session: KeyRef },
    Undeliverable { session: KeyRef },
    Signal { session: KeyRef, payload: Vec<u8> },
}

fn own() -> PublicKey {
    PublicKey::from_bytes([0x70; 32])
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_bytes([0xee; 32])
}

/// What the swarm did, as far as the checks need.
#[derive(Default)]
struct Seen {
    /// Sessions and message ids from the swarm's outputs.
    keys: Vec<PublicKey>,
    /// Transports asked for and not closed since, as (peer, session).
    open: HashSet<(PublicKey, PublicKey)>,
}

impl Seen {
    fn key(&self, reference: KeyRef) -> PublicKey {
        match reference {
            KeyRef::Seen(index) if !self.keys.is_empty() => self.keys[usize::from(index) % self.keys.len()],
            KeyRef::Seen(byte) | KeyRef::MadeUp(byte) => PublicKey::from_bytes([byte; 32]),
        }
    }

    fn drain(&mut self, swarm: &mut Swarm) {
        while let Some(output) = swarm.poll_output() {
            match output {
                Output::Send { message, .. } => {
                    let keys = [message.session_id, message.message_id];
                    self.keys.extend(keys.iter().flatten().filter_map(|key| key.to_key().ok()));
                }
                Output::OpenTransport { peer, session, .. } => {
                    assert!(self.open.insert((peer, session)), "a transport opened while open");
                }
                Output::SignalTransport { peer, session, .. } => {
                    assert!(
                        self.open.contains(&(peer, session)),
                        "a signal for a transport that is not open"
                    );
                }
                Output::CloseTransport { peer, session } => {
                    assert!(self.open.remove(&(peer, session)), "closing a transport that is not open");
                }
                Output::Event(Event::State { session, state: ConnectionState::Created, .. }) => {
                    self.keys.push(session);
                }
                Output::Event(_) => {}
            }
        }
    }

    fn message(&self, step: usize, remote: Remote) -> SwarmMessage {
        // A fresh id for each message, as the remote's messenger would use.
        let fresh = PublicKey::from_bytes([step as u8; 32]);
        let decode = |bytes: Vec<u8>| Struct::decode(bytes.as_slice()).ok();
        let (session, id, payload) = match remote {
            Remote::Offer { session, id } => {
                (self.key(session), self.key(id), message_data::Payload::Offer(Offer::default()))
            }
            Remote::Answer { session, accept, offer } => {
                let offer_message_id = offer.map(|offer| self.key(offer).into());
                // Fields an answer may gain (link authentication) keep their defaults.
                #[allow(clippy::needless_update)]
                let answer = Answer { accept, offer_message_id, ..Answer::default() };
                (self.key(session), fresh, message_data::Payload::Answer(answer))
            }
            Remote::Signal { session, payload } => {
                (self.key(session), fresh, message_data::Payload::Signal(Signal { payload: decode(payload) }))
            }
            Remote::Batch { session, payloads } => {
                let signals =
                    payloads.into_iter().map(|payload| Signal { payload: decode(payload) }).collect();
                (self.key(session), fresh, message_data::Payload::SignalBatch(SignalBatch { signals }))
            }
            Remote::Empty { session } => {
                let message =
                    SwarmMessage { session_id: Some(self.key(session).into()), ..SwarmMessage::default() };
                return message;
            }
        };
        SwarmMessage {
            topic: Some(PublicKey::from_bytes(topic().to_bytes()).into()),
            session_id: Some(session.into()),
            data: Some(MessageData { payload: Some(payload) }),
            message_id: Some(id.into()),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let config = SwarmConfig::default().with_max_initiating(3);
    let mut swarm = Swarm::new(own(), topic(), Box::new(FullyConnected), config, 7);
    let mut seen = Seen::default();
    let mut now = Instant::now();
    for (step, record) in records(input).enumerate() {
        let from = PublicKey::from_bytes(pool_key(record.tag >> 4, 6));
        match record.tag & 0x0f {
            0..=3 => {
                if let Ok(message) = SwarmMessage::decode(record.body) {
                    swarm.handle_message(now, from, message);
                }
            }
            4..=9 => {
                if let Some(remote) = record.structured::<Remote>() {
                    swarm.handle_message(now, from, seen.message(step, remote));
                }
            }
            10 => swarm.handle_peer_available(now, from),
            11 => swarm.handle_peer_left(now, from),
            12 => match record.structured::<Report>() {
                Some(Report::Connected { session }) => {
                    swarm.handle_transport_connected(now, from, seen.key(session))
                }
                Some(Report::Closed { session }) => {
                    swarm.handle_transport_closed(now, from, seen.key(session), None)
                }
                Some(Report::Undeliverable { session }) => {
                    swarm.handle_undeliverable(now, from, seen.key(session))
                }
                Some(Report::Signal { session, payload }) => {
                    if let Ok(payload) = Struct::decode(payload.as_slice()) {
                        swarm.handle_transport_signal(now, from, seen.key(session), payload);
                    }
                }
                None => {}
            },
            13 => swarm.leave(now),
            _ => {
                now += Duration::from_millis(u64::from(record.number()) * 10);
                swarm.handle_timeout(now);
            }
        }
        seen.drain(&mut swarm);
        if swarm.poll_timeout().is_some_and(|at| at <= now) {
            swarm.handle_timeout(now);
            seen.drain(&mut swarm);
            assert!(swarm.poll_timeout().is_none_or(|at| at > now), "a handled deadline stays pending");
        }
    }
});
