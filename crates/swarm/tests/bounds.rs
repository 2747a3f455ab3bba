//! What a remote can make one swarm core hold stays bounded: spoofed offers, peers beyond the
//! limit, signals sent before a transport exists, and connections waiting for a place.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
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
use rand::{SeedableRng, rngs::SmallRng};

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&key(0xee))
}

fn swarm(own: PublicKey, topology: Box<dyn Topology>, config: SwarmConfig) -> Swarm {
    Swarm::new(own, topic(), topology, config, 7)
}

fn message(session: PublicKey, id: PublicKey, payload: message_data::Payload) -> SwarmMessage {
    SwarmMessage {
        topic: Some(PublicKey::from_bytes(topic().to_bytes()).into()),
        session_id: Some(session.into()),
        data: Some(MessageData { payload: Some(payload) }),
        message_id: Some(id.into()),
    }
}

fn offer(session: PublicKey, id: PublicKey) -> SwarmMessage {
    message(session, id, message_data::Payload::Offer(Offer::default()))
}

fn signal(session: PublicKey, payload: Struct) -> SwarmMessage {
    let signal = Signal { payload: Some(payload) };
    message(session, key(0x99), message_data::Payload::SignalBatch(SignalBatch { signals: vec![signal] }))
}

fn outputs(swarm: &mut Swarm) -> Vec<Output> {
    std::iter::from_fn(|| swarm.poll_output()).collect()
}

fn is_send(output: &Output) -> bool {
    matches!(output, Output::Send { .. })
}

/// The offer `own` sent to `to` among `outputs`: (session, message id).
fn sent_offer(outputs: &[Output], to: PublicKey) -> Option<(PublicKey, PublicKey)> {
    outputs.iter().find_map(|output| match output {
        Output::Send { to: recipient, message } if *recipient == to => {
            let is_offer = matches!(
                message.data.as_ref().and_then(|d| d.payload.as_ref()),
                Some(message_data::Payload::Offer(_))
            );
            let session = message.session_id.as_ref()?.to_key().ok()?;
            let id = message.message_id.as_ref()?.to_key().ok()?;
            is_offer.then_some((session, id))
        }
        _ => None,
    })
}

fn accept(session: PublicKey, offer_id: PublicKey) -> SwarmMessage {
    let answer = Answer { accept: true, offer_message_id: Some(offer_id.into()), link_nonce: Vec::new() };
    message(session, key(0x98), message_data::Payload::Answer(answer))
}

/// Random keys, the same in every run.
fn random_keys(count: usize, seed: u64) -> Vec<PublicKey> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count).map(|_| PublicKey::random_from(&mut rng)).collect()
}

/// Brings the connection to `peer` up: `own` initiated, so its offer is among `outputs`.
fn connect_as_initiator(swarm: &mut Swarm, now: Instant, peer: PublicKey, outputs: &[Output]) {
    let (session, offer_id) = sent_offer(outputs, peer).expect("an offer to the peer");
    swarm.handle_message(now, peer, accept(session, offer_id));
    let opened = self::outputs(swarm);
    assert!(opened.iter().any(|o| matches!(o, Output::OpenTransport { peer: p, .. } if *p == peer)));
    swarm.handle_transport_connected(now, peer, session);
}

#[test]
fn spoofed_offers_leave_the_peer_map_bounded_and_the_swarm_working() {
    let config = SwarmConfig::default();
    let t0 = Instant::now();
    let own = key(0x10);
    let mut swarm = swarm(own, Box::new(FullyConnected), config.clone());

    // 100,000 offers from random keys (no signal server ever advertised them), random sessions.
    let strangers = random_keys(100_000, 1);
    let sessions = random_keys(strangers.len(), 2);
    let mut sent = 0;
    for (stranger, session) in strangers.iter().zip(&sessions) {
        swarm.handle_message(t0, *stranger, offer(*session, *session));
        sent += outputs(&mut swarm).iter().filter(|o| is_send(o)).count();
    }
    let tracked = strangers.iter().filter(|s| swarm.connection_state(s).is_some()).count();
    assert!(tracked <= config.max_initiating, "{tracked} spoofed offers hold a connection");
    assert!(swarm.peer_count() <= config.max_initiating, "{} peers tracked", swarm.peer_count());
    assert!(sent <= config.max_initiating, "the flood made the swarm send {sent} messages");

    // A real peer arrives while the strangers hold every place: its connection waits its turn.
    let real = key(0x20);
    swarm.handle_peer_available(t0, real);
    assert_eq!(sent_offer(&outputs(&mut swarm), real), None, "no place free yet");

    // The strangers never bring a transport up; once they time out the real peer connects.
    let later = t0 + config.connect_timeout + Duration::from_millis(1);
    swarm.handle_timeout(later);
    let after_timeout = outputs(&mut swarm);
    assert!(strangers.iter().all(|s| swarm.connection_state(s).is_none()), "a stranger is still tracked");
    connect_as_initiator(&mut swarm, later, real, &after_timeout);
    assert_eq!(swarm.connected(), vec![real]);
    assert_eq!(swarm.peer_count(), 1);
}

/// Refuses every offer, never connects, and remembers how many peers the swarm said it knows.
#[derive(Debug, Default)]
struct RefuseAll {
    known: Arc<AtomicUsize>,
}

impl Topology for RefuseAll {
    fn update(&mut self, _now: Instant, state: &SwarmState) -> Vec<Action> {
        self.known.store(state.all.len(), Ordering::Relaxed);
        Vec::new()
    }

    fn on_offer(&mut self, _now: Instant, state: &SwarmState, _peer: PublicKey) -> bool {
        self.known.store(state.all.len(), Ordering::Relaxed);
        false
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn refused_offers_from_strangers_leave_nothing_behind_and_get_no_answer() {
    let t0 = Instant::now();
    let known = Arc::new(AtomicUsize::new(0));
    let topology = RefuseAll { known: known.clone() };
    let mut swarm = swarm(key(0x10), Box::new(topology), SwarmConfig::default());
    let strangers = random_keys(100_000, 3);
    let mut sent = 0;
    for (i, stranger) in strangers.iter().enumerate() {
        let session = strangers[(i + 1) % strangers.len()];
        swarm.handle_message(t0, *stranger, offer(session, session));
        sent += outputs(&mut swarm).iter().filter(|o| is_send(o)).count();
    }
    // One more, seen by the topology: the swarm knows no peer.
    swarm.handle_peer_available(t0, key(0x20));
    assert_eq!(known.load(Ordering::Relaxed), 1, "only the advertised peer is known");
    assert_eq!(swarm.peer_count(), 1);
    assert_eq!(sent, 0, "spoofed offers make the swarm send nothing");
}

#[test]
fn availability_beyond_max_peers_is_ignored_until_there_is_room() {
    let t0 = Instant::now();
    let config = SwarmConfig::default().with_max_peers(8);
    let own = key(0x01);
    let mut swarm = swarm(own, Box::new(FullyConnected), config);
    let peers: Vec<PublicKey> = (0x10..0x24).map(key).collect();
    for peer in &peers {
        swarm.handle_peer_available(t0, *peer);
    }
    let offered: Vec<PublicKey> = outputs(&mut swarm)
        .iter()
        .filter_map(|o| if let Output::Send { to, .. } = o { Some(*to) } else { None })
        .collect();
    assert_eq!(swarm.peer_count(), 8);
    assert_eq!(offered, peers[..8].to_vec(), "offers go to the first 8 peers only");

    // One of them leaves (its connection is still being set up, so it is dropped): room for one.
    swarm.handle_peer_left(t0, peers[0]);
    swarm.handle_peer_available(t0, peers[9]);
    assert_eq!(swarm.peer_count(), 8);
    assert!(sent_offer(&outputs(&mut swarm), peers[9]).is_some());
}

#[test]
fn a_strangers_offer_never_waits_for_a_place() {
    let t0 = Instant::now();
    let own = key(0x10);
    let mut swarm = swarm(own, Box::new(FullyConnected), SwarmConfig::default().with_max_initiating(1));
    // The one place goes to our own connection to an advertised peer.
    let advertised = key(0x20);
    swarm.handle_peer_available(t0, advertised);
    assert!(sent_offer(&outputs(&mut swarm), advertised).is_some());

    let stranger = key(0x30);
    swarm.handle_message(t0, stranger, offer(key(0x31), key(0x32)));
    assert!(outputs(&mut swarm).is_empty(), "no answer, no state change");
    assert_eq!(swarm.connection_state(&stranger), None);
    assert_eq!(swarm.peer_count(), 1);
}

#[test]
fn an_accepted_offer_waiting_for_a_place_gives_up_after_the_answer_timeout() {
    let t0 = Instant::now();
    let config = SwarmConfig::default()
        .with_max_initiating(1)
        .with_answer_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(60));
    let own = key(0x10);
    let mut swarm = swarm(own, Box::new(FullyConnected), config);
    let (first, second) = (key(0x01), key(0x02));
    swarm.handle_peer_available(t0, first);
    swarm.handle_peer_available(t0, second);
    swarm.handle_message(t0, first, offer(key(0x41), key(0x51)));
    swarm.handle_message(t0, second, offer(key(0x42), key(0x52)));
    outputs(&mut swarm);
    assert_eq!(swarm.connection_state(&first), Some(ConnectionState::Connecting));
    assert_eq!(swarm.connection_state(&second), Some(ConnectionState::Created), "waits for the place");

    swarm.handle_timeout(t0 + Duration::from_secs(10) + Duration::from_millis(1));
    let aborted = outputs(&mut swarm).into_iter().any(|o| {
        matches!(o, Output::Event(Event::State { peer, state: ConnectionState::Aborted, .. }) if peer == second)
    });
    assert!(aborted, "the waiting connection is given up");
    assert_eq!(swarm.connection_state(&second), None);
    assert_eq!(swarm.connection_state(&first), Some(ConnectionState::Connecting), "the other one goes on");
}

/// `own` (the lower key) offers to `remote` and waits for the answer: (swarm, session, offer id).
fn waiting_for_an_answer(config: SwarmConfig, t0: Instant) -> (Swarm, PublicKey, PublicKey) {
    let (own, remote) = (key(0x01), key(0x02));
    let mut swarm = swarm(own, Box::new(FullyConnected), config);
    swarm.handle_peer_available(t0, remote);
    let (session, offer_id) = sent_offer(&outputs(&mut swarm), remote).unwrap();
    assert_eq!(swarm.connection_state(&remote), Some(ConnectionState::Initial));
    (swarm, session, offer_id)
}

fn signals_to_transport(outputs: &[Output]) -> usize {
    outputs.iter().filter(|o| matches!(o, Output::SignalTransport { .. })).count()
}

/// Sends `payloads` from the remote for `session`, one message each; whether the connection
/// aborted on the way.
fn early_signals_abort(
    swarm: &mut Swarm,
    now: Instant,
    session: PublicKey,
    payloads: impl IntoIterator<Item = Struct>,
) -> bool {
    let mut aborted = false;
    for payload in payloads {
        swarm.handle_message(now, key(0x02), signal(session, payload));
        aborted |= outputs(swarm)
            .iter()
            .any(|o| matches!(o, Output::Event(Event::State { state: ConnectionState::Aborted, .. })));
    }
    aborted
}

#[test]
fn a_flood_of_early_signals_aborts_the_connection_at_the_cap() {
    let t0 = Instant::now();
    let config = SwarmConfig::default();
    let (mut swarm, session, offer_id) = waiting_for_an_answer(config.clone(), t0);
    let flood = (0..10_000u16).map(|i| Struct::new().with("candidate", i));
    assert!(early_signals_abort(&mut swarm, t0, session, flood), "the connection is aborted");
    // The answer that comes after finds nothing to open: nothing of the flood reaches a transport.
    swarm.handle_message(t0, key(0x02), accept(session, offer_id));
    let after = outputs(&mut swarm);
    assert_eq!(signals_to_transport(&after), 0);
    assert!(!after.iter().any(|o| matches!(o, Output::OpenTransport { .. })));
}

#[test]
fn a_few_huge_early_signals_abort_the_connection_at_the_byte_cap() {
    let t0 = Instant::now();
    let config = SwarmConfig::default();
    let (mut swarm, session, _) = waiting_for_an_answer(config.clone(), t0);
    let huge = "x".repeat(config.max_buffered_signal_bytes / 2);
    let signals = (0..3).map(|_| Struct::new().with("sdp", huge.as_str()));
    assert!(early_signals_abort(&mut swarm, t0, session, signals), "the third signal passes the byte cap");
    assert_eq!(swarm.connection_state(&key(0x02)), None);
}

#[test]
fn early_signals_within_the_caps_reach_the_transport_once_it_opens() {
    let t0 = Instant::now();
    let (mut swarm, session, offer_id) = waiting_for_an_answer(SwarmConfig::default(), t0);
    let remote = key(0x02);
    for i in 0..3u16 {
        swarm.handle_message(t0, remote, signal(session, Struct::new().with("candidate", i)));
    }
    swarm.handle_message(t0, remote, accept(session, offer_id));
    let after = outputs(&mut swarm);
    let open = after.iter().position(|o| matches!(o, Output::OpenTransport { .. })).expect("opens");
    let signals: Vec<&Struct> = after[open..]
        .iter()
        .filter_map(|o| if let Output::SignalTransport { payload, .. } = o { Some(payload) } else { None })
        .collect();
    let expected: Vec<Struct> = (0..3u16).map(|i| Struct::new().with("candidate", i)).collect();
    assert_eq!(signals, expected.iter().collect::<Vec<_>>(), "in order, after the transport opens");
}
