//! Random swarm messages (offers, answers, Struct signals and batches, with sessions and offer ids
//! that are sometimes the swarm's own and sometimes made up), transport reports and time into a
//! `Swarm`: nothing panics, the swarm remembers only peers that advertised or offered, the
//! connections being set up stay within the limiter, and the transports it asks for are opened,
//! signalled and closed in order.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{
    Struct,
    dxos::mesh::swarm::{Answer, MessageData, Offer, Signal, SignalBatch, SwarmMessage, message_data},
};
use mesh_swarm::{
    ConnectionState, Event, Output, Swarm, SwarmConfig,
    topology::{Action, FullyConnected, SwarmState, Topology},
};
use proptest::{collection::vec, prelude::*};

const MAX_INITIATING: usize = 3;

fn own() -> PublicKey {
    PublicKey::from_bytes([0x70; 32])
}

/// Six remote peers, half below and half above our key (so both glare roles occur).
fn peer(index: u8) -> PublicKey {
    PublicKey::from_bytes([(index % 6) * 0x20 + 0x10; 32])
}

/// The fully connected topology, remembering every peer the swarm ever showed it.
#[derive(Debug, Default)]
struct Probe {
    known: Arc<Mutex<BTreeSet<PublicKey>>>,
}

impl Topology for Probe {
    fn update(&mut self, now: Instant, state: &SwarmState) -> Vec<Action> {
        self.known.lock().expect("probe lock").extend(state.all.iter().copied());
        FullyConnected.update(now, state)
    }

    fn on_offer(&mut self, now: Instant, state: &SwarmState, peer: PublicKey) -> bool {
        self.known.lock().expect("probe lock").extend(state.all.iter().copied());
        FullyConnected.on_offer(now, state, peer)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// A key the swarm made (a session or an offer id it sent), or one made up.
#[derive(Debug, Clone, Copy)]
enum KeyRef {
    Seen(usize),
    MadeUp(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Available(u8),
    Left(u8),
    Offer { from: u8, session: KeyRef, id: KeyRef },
    Answer { from: u8, session: KeyRef, accept: bool, offer: KeyRef },
    Signal { from: u8, session: KeyRef, payload: Struct },
    Batch { from: u8, session: KeyRef, payloads: Vec<Struct> },
    Empty { from: u8, session: KeyRef },
    Connected { peer: u8, session: KeyRef },
    Closed { peer: u8, session: KeyRef },
    Undeliverable { peer: u8, session: KeyRef },
    LocalSignal { peer: u8, session: KeyRef, payload: Struct },
    Advance { millis: u64 },
    Leave,
}

fn key_ref() -> impl Strategy<Value = KeyRef> {
    prop_oneof![3 => any::<usize>().prop_map(KeyRef::Seen), 1 => any::<u8>().prop_map(KeyRef::MadeUp)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::Available),
        1 => any::<u8>().prop_map(Op::Left),
        3 => (any::<u8>(), key_ref(), key_ref()).prop_map(|(from, session, id)| Op::Offer { from, session, id }),
        3 => (any::<u8>(), key_ref(), any::<bool>(), key_ref())
            .prop_map(|(from, session, accept, offer)| Op::Answer { from, session, accept, offer }),
        2 => (any::<u8>(), key_ref(), any::<Struct>())
            .prop_map(|(from, session, payload)| Op::Signal { from, session, payload }),
        1 => (any::<u8>(), key_ref(), vec(any::<Struct>(), 0..4))
            .prop_map(|(from, session, payloads)| Op::Batch { from, session, payloads }),
        1 => (any::<u8>(), key_ref()).prop_map(|(from, session)| Op::Empty { from, session }),
        3 => (any::<u8>(), key_ref()).prop_map(|(peer, session)| Op::Connected { peer, session }),
        1 => (any::<u8>(), key_ref()).prop_map(|(peer, session)| Op::Closed { peer, session }),
        1 => (any::<u8>(), key_ref()).prop_map(|(peer, session)| Op::Undeliverable { peer, session }),
        1 => (any::<u8>(), key_ref(), any::<Struct>())
            .prop_map(|(peer, session, payload)| Op::LocalSignal { peer, session, payload }),
        3 => (0..12_000u64).prop_map(|millis| Op::Advance { millis }),
        1 => Just(Op::Leave),
    ]
}

/// What the test saw the swarm do.
#[derive(Default)]
struct Model {
    /// Sessions and offer ids from the swarm's outputs, for ops to refer to.
    seen: Vec<PublicKey>,
    /// Peers that advertised or offered: the only ones the swarm may remember.
    heard: HashSet<PublicKey>,
    states: HashMap<PublicKey, ConnectionState>,
    /// Transports asked for and not closed since, as (peer, session).
    open_transports: HashSet<(PublicKey, PublicKey)>,
}

impl Model {
    fn key(&self, reference: KeyRef) -> PublicKey {
        match reference {
            KeyRef::Seen(index) if !self.seen.is_empty() => self.seen[index % self.seen.len()],
            KeyRef::Seen(index) => PublicKey::from_bytes([index as u8; 32]),
            KeyRef::MadeUp(byte) => PublicKey::from_bytes([byte; 32]),
        }
    }

    fn check(&mut self, output: Output) -> Result<(), TestCaseError> {
        match output {
            Output::Send { to, message } => {
                prop_assert_ne!(to, own());
                let keys = [message.session_id, message.message_id];
                self.seen.extend(keys.iter().flatten().filter_map(|key| key.to_key().ok()));
            }
            Output::OpenTransport { peer, session, .. } => {
                prop_assert!(self.open_transports.insert((peer, session)), "a transport opened while open");
            }
            Output::SignalTransport { peer, session, .. } => {
                let open = self.open_transports.contains(&(peer, session));
                prop_assert!(open, "a signal for a transport that is not open");
            }
            Output::CloseTransport { peer, session } => {
                prop_assert!(
                    self.open_transports.remove(&(peer, session)),
                    "closing a transport that is not open"
                );
            }
            Output::Event(Event::State { session, state, .. }) => {
                if state == ConnectionState::Created {
                    self.seen.push(session);
                }
                self.states.insert(session, state);
            }
            Output::Event(_) => {}
        }
        Ok(())
    }

    fn setting_up(&self) -> usize {
        let states = self.states.values();
        states.filter(|s| matches!(s, ConnectionState::Initial | ConnectionState::Connecting)).count()
    }
}

fn message(session: PublicKey, id: PublicKey, payload: Option<message_data::Payload>) -> SwarmMessage {
    SwarmMessage {
        topic: Some(PublicKey::from_bytes(topic().to_bytes()).into()),
        session_id: Some(session.into()),
        data: Some(MessageData { payload }),
        message_id: Some(id.into()),
    }
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_bytes([0xee; 32])
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let probe = Probe::default();
    let known = probe.known.clone();
    let config = SwarmConfig::default().with_max_initiating(MAX_INITIATING);
    let mut swarm = Swarm::new(own(), topic(), Box::new(probe), config, 7);
    let mut model = Model::default();
    let mut now = Instant::now();
    for (step, op) in ops.iter().enumerate() {
        // A fresh id for each message, as the remote's messenger would use.
        let fresh_id = PublicKey::from_bytes([step as u8; 32]);
        match op.clone() {
            Op::Available(index) => {
                model.heard.insert(peer(index));
                swarm.handle_peer_available(now, peer(index));
            }
            Op::Left(index) => swarm.handle_peer_left(now, peer(index)),
            Op::Offer { from, session, id } => {
                model.heard.insert(peer(from));
                let payload = message_data::Payload::Offer(Offer::default());
                swarm.handle_message(
                    now,
                    peer(from),
                    message(model.key(session), model.key(id), Some(payload)),
                );
            }
            Op::Answer { from, session, accept, offer } => {
                // Fields an answer may gain (link authentication) keep their defaults.
                #[allow(clippy::needless_update)]
                let answer =
                    Answer { accept, offer_message_id: Some(model.key(offer).into()), ..Answer::default() };
                let payload = message_data::Payload::Answer(answer);
                swarm.handle_message(now, peer(from), message(model.key(session), fresh_id, Some(payload)));
            }
            Op::Signal { from, session, payload } => {
                let payload = message_data::Payload::Signal(Signal { payload: Some(payload) });
                swarm.handle_message(now, peer(from), message(model.key(session), fresh_id, Some(payload)));
            }
            Op::Batch { from, session, payloads } => {
                let signals = payloads.into_iter().map(|payload| Signal { payload: Some(payload) }).collect();
                let payload = message_data::Payload::SignalBatch(SignalBatch { signals });
                swarm.handle_message(now, peer(from), message(model.key(session), fresh_id, Some(payload)));
            }
            Op::Empty { from, session } => {
                swarm.handle_message(now, peer(from), message(model.key(session), fresh_id, None));
            }
            Op::Connected { peer: index, session } => {
                swarm.handle_transport_connected(now, peer(index), model.key(session));
            }
            Op::Closed { peer: index, session } => {
                swarm.handle_transport_closed(now, peer(index), model.key(session), None);
            }
            Op::Undeliverable { peer: index, session } => {
                swarm.handle_undeliverable(now, peer(index), model.key(session));
            }
            Op::LocalSignal { peer: index, session, payload } => {
                swarm.handle_transport_signal(now, peer(index), model.key(session), payload);
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(millis);
                swarm.handle_timeout(now);
            }
            Op::Leave => swarm.leave(now),
        }
        while let Some(output) = swarm.poll_output() {
            model.check(output)?;
        }
        prop_assert!(model.setting_up() <= MAX_INITIATING, "{} connections in setup", model.setting_up());
        if swarm.poll_timeout().is_some_and(|at| at <= now) {
            // A deadline that stays in the past after its timeout was handled makes a driver spin.
            swarm.handle_timeout(now);
            while let Some(output) = swarm.poll_output() {
                model.check(output)?;
            }
            prop_assert!(swarm.poll_timeout().is_none_or(|at| at > now), "a passed deadline stays pending");
        }
    }
    let known = known.lock().expect("probe lock");
    prop_assert!(!known.contains(&own()), "the swarm lists itself as a peer");
    let strangers: Vec<_> = known.iter().filter(|key| !model.heard.contains(key)).collect();
    prop_assert!(strangers.is_empty(), "remembered peers that never advertised or offered: {strangers:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_swarm_messages_keep_the_swarm_consistent(ops in vec(op(), 1..120)) {
        run(&ops)?;
    }
}
