//! The swarm behaviours of MESH-SPEC §7 on the virtual network: real swarm cores, modelled
//! signaling and transports, virtual time.

use std::time::{Duration, Instant};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_swarm::{
    CloseReason, ConnectionState, Event, Swarm, SwarmConfig,
    sim::{Sim, SimConfig},
    topology::{FullyConnected, Star, Topology},
};

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&key(0xee))
}

fn swarm(own: PublicKey, topology: Box<dyn Topology>) -> Swarm {
    swarm_with(own, topology, SwarmConfig::default())
}

fn swarm_with(own: PublicKey, topology: Box<dyn Topology>, config: SwarmConfig) -> Swarm {
    Swarm::new(own, topic(), topology, config, u64::from(own.as_bytes()[0]))
}

fn sim() -> Sim {
    Sim::new(SimConfig::default(), topic(), Instant::now())
}

fn full(sim: &mut Sim, keys: &[PublicKey]) {
    for key in keys {
        sim.join(swarm(*key, Box::new(FullyConnected)));
    }
}

fn assert_fully_connected(sim: &Sim, keys: &[PublicKey]) {
    let connections = sim.connections();
    for key in keys {
        let expected: Vec<PublicKey> = keys.iter().copied().filter(|k| k != key).collect();
        assert_eq!(connections[key], expected, "connections of {}", key.short());
    }
}

/// Connections that came up, as (local, remote, local initiated).
fn connected_events(sim: &Sim) -> Vec<(PublicKey, PublicKey, bool)> {
    sim.events()
        .iter()
        .filter_map(|(_, local, event)| match event {
            Event::Connected { peer, initiator } => Some((*local, *peer, *initiator)),
            _ => None,
        })
        .collect()
}

#[test]
fn join_exchange_and_clean_exit() {
    let mut sim = sim();
    let (a, b) = (key(1), key(2));
    full(&mut sim, &[a, b]);
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[a, b]);

    sim.leave(b);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.connections()[&a], Vec::<PublicKey>::new());
    let a_disconnected = sim.events().iter().any(|(_, local, event)| {
        *local == a && matches!(event, Event::Disconnected { peer, .. } if *peer == b)
    });
    assert!(a_disconnected);
}

#[test]
fn lower_key_initiates_and_each_pair_has_one_connection() {
    let mut sim = sim();
    let keys: Vec<PublicKey> = (1..=6).map(key).collect();
    full(&mut sim, &keys);
    sim.run_for(Duration::from_secs(2));
    assert_fully_connected(&sim, &keys);
    let events = connected_events(&sim);
    assert_eq!(events.len(), 6 * 5, "one Connected event per side per pair");
    for (local, remote, initiator) in events {
        assert_eq!(
            initiator,
            local < remote,
            "the lower key initiates: {} -> {}",
            local.short(),
            remote.short()
        );
    }
}

#[test]
fn star_connects_leaves_only_to_the_centre() {
    let mut sim = sim();
    let centre = key(9);
    let leaves: Vec<PublicKey> = (1..=5).map(key).collect();
    sim.join(swarm(centre, Box::new(Star::new(centre))));
    for leaf in &leaves {
        sim.join(swarm(*leaf, Box::new(Star::new(centre))));
    }
    sim.run_for(Duration::from_secs(2));
    let connections = sim.connections();
    assert_eq!(connections[&centre], leaves);
    for leaf in &leaves {
        assert_eq!(connections[leaf], vec![centre]);
    }
}

#[test]
fn simultaneous_origination_ends_with_one_connection_from_the_lower_key() {
    // Both sides initiate at once: no initiation delay for the higher key either.
    let config = SwarmConfig::default().with_initiation_delay(Duration::ZERO);
    let mut sim = sim();
    let (low, high) = (key(1), key(2));
    sim.join(swarm_with(low, Box::new(FullyConnected), config.clone()));
    sim.join(swarm_with(high, Box::new(FullyConnected), config));
    sim.run_for(Duration::from_secs(2));
    assert_fully_connected(&sim, &[low, high]);
    let mut events = connected_events(&sim);
    events.sort();
    assert_eq!(events, vec![(low, high, true), (high, low, false)]);
    let displaced_or_refused = sim.events().iter().any(|(_, local, event)| {
        *local == high
            && matches!(event, Event::State { state: ConnectionState::Closed | ConnectionState::Aborted, .. })
    });
    assert!(displaced_or_refused, "the higher key's own attempt gave way");
}

#[test]
fn the_lower_keys_offer_displaces_a_connection_in_progress() {
    // The higher key starts first; the lower key's offer arrives while it is being set up.
    let config = SwarmConfig::default().with_initiation_delay(Duration::ZERO);
    let mut sim = sim();
    let (low, high) = (key(1), key(2));
    sim.join(swarm_with(high, Box::new(FullyConnected), config.clone()));
    sim.run_for(Duration::from_millis(1));
    sim.join(swarm_with(low, Box::new(FullyConnected), config));
    sim.run_for(Duration::from_secs(2));
    assert_fully_connected(&sim, &[low, high]);
    let mut events = connected_events(&sim);
    events.sort();
    assert_eq!(events, vec![(low, high, true), (high, low, false)]);
    let high_gave_way = sim.events().iter().any(|(_, local, event)| {
        *local == high && matches!(event, Event::State { state: ConnectionState::Closed, .. })
    });
    assert!(high_gave_way, "the higher key's attempt was displaced");
}

#[test]
fn reconnects_after_a_connection_error() {
    let mut sim = sim();
    let (a, b) = (key(1), key(2));
    full(&mut sim, &[a, b]);
    sim.run_for(Duration::from_secs(1));
    sim.fail_connection(a, b);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.connections()[&a], Vec::<PublicKey>::new());
    // The first retry comes after 50 ms.
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[a, b]);
    let reasons: Vec<&CloseReason> = sim
        .events()
        .iter()
        .filter_map(|(_, _, e)| match e {
            Event::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(reasons.iter().all(|r| matches!(r, CloseReason::Transport(Some(_)))), "{reasons:?}");
}

#[test]
fn offline_then_online_again_via_peer_left() {
    let mut sim = sim();
    let (a, b, c) = (key(1), key(2), key(3));
    full(&mut sim, &[a, b, c]);
    sim.run_for(Duration::from_secs(1));
    sim.crash(c);
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[a, b]);
    assert!(sim.swarm(&a).is_some_and(|s| s.connection_state(&c).is_none()), "no ghost of c remains");
    sim.join(swarm(c, Box::new(FullyConnected)));
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[a, b, c]);
}

#[test]
fn a_restarted_peer_with_the_same_key_reconnects_at_once() {
    let mut sim = sim();
    let (a, b) = (key(1), key(2));
    full(&mut sim, &[a, b]);
    sim.run_for(Duration::from_secs(1));
    // b restarts: a new swarm with the same key joins before anything told a it was gone.
    sim.join(swarm(b, Box::new(FullyConnected)));
    let restarted = sim.now();
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[a, b]);
    let reconnected_at = sim
        .events()
        .iter()
        .filter(|(at, local, e)| *at > restarted && *local == a && matches!(e, Event::Connected { .. }))
        .map(|(at, ..)| *at)
        .next()
        .expect("a connects to the new b");
    assert!(reconnected_at - restarted < Duration::from_millis(500), "took {:?}", reconnected_at - restarted);
}

#[test]
fn late_discovery_still_connects() {
    let mut sim = sim();
    let keys: Vec<PublicKey> = (1..=3).map(key).collect();
    full(&mut sim, &keys);
    sim.run_for(Duration::from_secs(1));
    let late = key(4);
    sim.join(swarm(late, Box::new(FullyConnected)));
    sim.run_for(Duration::from_secs(1));
    assert_fully_connected(&sim, &[keys.clone(), vec![late]].concat());
}

#[test]
fn connections_that_never_come_up_time_out_and_are_retried() {
    let mut sim = sim();
    let (a, b) = (key(1), key(2));
    sim.break_links(true);
    full(&mut sim, &[a, b]);
    sim.run_for(Duration::from_secs(11));
    let timed_out = sim
        .events()
        .iter()
        .any(|(_, _, e)| matches!(e, Event::State { state: ConnectionState::Aborted, .. }));
    assert!(timed_out, "a connection stuck connecting is aborted after 10 s");
    sim.break_links(false);
    sim.run_for(Duration::from_secs(30));
    assert_fully_connected(&sim, &[a, b]);
}

#[test]
fn the_limiter_bounds_connections_being_set_up() {
    let config = SwarmConfig::default().with_max_initiating(2);
    let mut sim = sim();
    let keys: Vec<PublicKey> = (1..=8).map(key).collect();
    for key in &keys {
        sim.join(swarm_with(*key, Box::new(FullyConnected), config.clone()));
    }
    sim.run_for(Duration::from_secs(5));
    assert_fully_connected(&sim, &keys);
    // Replay each node's state events: never more than 2 connections past CREATED and not yet up.
    for node in &keys {
        let mut establishing = std::collections::BTreeSet::new();
        for (_, local, event) in sim.events() {
            if local != node {
                continue;
            }
            if let Event::State { session, state, .. } = event {
                match state {
                    ConnectionState::Initial | ConnectionState::Connecting => {
                        establishing.insert(*session);
                    }
                    _ => {
                        establishing.remove(session);
                    }
                }
                assert!(
                    establishing.len() <= 2,
                    "{} had {} connections in setup",
                    node.short(),
                    establishing.len()
                );
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut sim = Sim::new(SimConfig::default(), topic(), Instant::now());
        let keys: Vec<PublicKey> = (1..=5).map(key).collect();
        full(&mut sim, &keys);
        sim.run_for(Duration::from_secs(2));
        sim.events().iter().map(|(_, local, event)| format!("{local:?} {event:?}")).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// Whether the undirected graph of `connections` is connected.
fn is_connected(connections: &std::collections::BTreeMap<PublicKey, Vec<PublicKey>>) -> bool {
    let Some(start) = connections.keys().next() else { return true };
    let mut seen = std::collections::BTreeSet::from([*start]);
    let mut stack = vec![*start];
    while let Some(node) = stack.pop() {
        for next in connections.get(&node).into_iter().flatten() {
            if seen.insert(*next) {
                stack.push(*next);
            }
        }
    }
    seen.len() == connections.len()
}

#[test]
fn mmst_swarm_of_200_stays_connected_and_bounded_under_churn() {
    use mesh_swarm::topology::Mmst;
    let mut sim = sim();
    // 200 distinct keys spread over the key space, the same in every run.
    let keys: Vec<PublicKey> = (0..200u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            PublicKey::from_bytes(DiscoveryKey::from_party(&PublicKey::from_bytes(seed)).to_bytes())
        })
        .collect();
    let join = |sim: &mut Sim, key: PublicKey| {
        let seed = u64::from_le_bytes(key.as_bytes()[..8].try_into().unwrap());
        sim.join(Swarm::new(key, topic(), Box::new(Mmst::new(seed)), SwarmConfig::default(), seed));
    };
    for key in &keys {
        join(&mut sim, *key);
    }
    sim.run_for(Duration::from_secs(240));
    let check = |sim: &Sim, round: &str| {
        let connections = sim.connections();
        let max = connections.values().map(Vec::len).max().unwrap_or(0);
        assert!(max <= 4, "{round}: a peer has {max} connections");
        assert!(is_connected(&connections), "{round}: the swarm split");
    };
    check(&sim, "cold start");
    for round in 0..2 {
        let leaving: Vec<PublicKey> = keys.iter().copied().skip(round * 7).step_by(10).take(20).collect();
        for key in &leaving {
            sim.crash(*key);
        }
        sim.run_for(Duration::from_secs(240));
        check(&sim, &format!("round {round}, 20 gone"));
        for key in &leaving {
            join(&mut sim, *key);
        }
        sim.run_for(Duration::from_secs(240));
        check(&sim, &format!("round {round}, 20 back"));
    }
}

#[test]
fn signals_for_an_unknown_session_are_dropped() {
    use mesh_proto::{
        Struct,
        dxos::mesh::swarm::{Answer, MessageData, Signal, SignalBatch, SwarmMessage, message_data},
    };
    use mesh_swarm::Output;
    let now = Instant::now();
    let (own, remote) = (key(1), key(2));
    let mut swarm = swarm(own, Box::new(FullyConnected));
    // The lower key offers at once; the remote accepts, so a transport opens for that session.
    swarm.handle_peer_available(now, remote);
    let offer = std::iter::from_fn(|| swarm.poll_output())
        .find_map(|o| match o {
            Output::Send { message, .. } => Some(message),
            _ => None,
        })
        .expect("an offer");
    let message = |session: PublicKey, payload: message_data::Payload| SwarmMessage {
        topic: Some(PublicKey::from_bytes(topic().to_bytes()).into()),
        session_id: Some(session.into()),
        data: Some(MessageData { payload: Some(payload) }),
        message_id: Some(key(8).into()),
    };
    let session = offer.session_id.as_ref().unwrap().to_key().unwrap();
    let accept = Answer { accept: true, offer_message_id: offer.message_id.clone(), ..Answer::default() };
    swarm.handle_message(now, remote, message(session, message_data::Payload::Answer(accept)));
    assert!(std::iter::from_fn(|| swarm.poll_output()).any(|o| matches!(o, Output::OpenTransport { .. })));

    let batch = || {
        message_data::Payload::SignalBatch(SignalBatch {
            signals: vec![Signal { payload: Some(Struct::new().with("port", 1234u16)) }],
        })
    };
    swarm.handle_message(now, remote, message(key(9), batch()));
    assert!(
        std::iter::from_fn(|| swarm.poll_output()).all(|o| !matches!(o, Output::SignalTransport { .. })),
        "a signal for another session reaches no transport"
    );
    swarm.handle_message(now, remote, message(session, batch()));
    assert!(
        std::iter::from_fn(|| swarm.poll_output()).any(|o| matches!(o, Output::SignalTransport { .. })),
        "the same signal for the right session does"
    );
}
