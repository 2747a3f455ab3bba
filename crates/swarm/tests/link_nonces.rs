//! Link nonces between two swarm cores: exchanged in the offer and the answer when both sides'
//! transports authenticate links, absent otherwise (as with a DXOS peer), reproducible from the
//! seed, and a malformed one makes the message count for nothing.

use std::time::Instant;

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::dxos::mesh::swarm::{SwarmMessage, message_data::Payload};
use mesh_swarm::{Output, Swarm, SwarmConfig, topology::FullyConnected};
use mesh_transport::LinkAuth;

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn swarm(own: PublicKey, link_nonces: bool, seed: u64) -> Swarm {
    let topic = DiscoveryKey::from_party(&key(0xee));
    Swarm::new(own, topic, Box::new(FullyConnected), SwarmConfig::default(), seed)
        .with_link_nonces(link_nonces)
}

/// What a core asked for: the swarm messages it sent and the transports it opened.
#[derive(Default)]
struct Drained {
    sent: Vec<SwarmMessage>,
    opened: Vec<Option<LinkAuth>>,
}

fn drain(swarm: &mut Swarm) -> Drained {
    let mut drained = Drained::default();
    while let Some(output) = swarm.poll_output() {
        match output {
            Output::Send { message, .. } => drained.sent.push(message),
            Output::OpenTransport { link, .. } => drained.opened.push(link),
            _ => {}
        }
    }
    drained
}

fn payload(message: &SwarmMessage) -> &Payload {
    message.data.as_ref().and_then(|data| data.payload.as_ref()).expect("a payload")
}

fn nonce_of(message: &SwarmMessage) -> &[u8] {
    match payload(message) {
        Payload::Offer(offer) => &offer.link_nonce,
        Payload::Answer(answer) => &answer.link_nonce,
        other => panic!("not an offer or answer: {other:?}"),
    }
}

/// The lower key `a` offers to `b`, `b` answers; returns the offer, the answer and the link each
/// side's transport was opened with.
fn negotiate(
    a: &mut Swarm,
    b: &mut Swarm,
) -> (SwarmMessage, SwarmMessage, Option<LinkAuth>, Option<LinkAuth>) {
    let now = Instant::now();
    a.handle_peer_available(now, b.own());
    let offer = drain(a).sent.pop().expect("an offer");
    b.handle_message(now, a.own(), offer.clone());
    let mut at_b = drain(b);
    let answer = at_b.sent.pop().expect("an answer");
    a.handle_message(now, b.own(), answer.clone());
    let mut at_a = drain(a);
    let (a_link, b_link) = (at_a.opened.pop().expect("a opens"), at_b.opened.pop().expect("b opens"));
    (offer, answer, a_link, b_link)
}

#[test]
fn swarms_that_authenticate_links_swap_nonces_for_their_transports() {
    let (mut a, mut b) = (swarm(key(1), true, 1), swarm(key(2), true, 2));
    let (offer, answer, a_link, b_link) = negotiate(&mut a, &mut b);
    assert_eq!(nonce_of(&offer).len(), 32);
    assert_eq!(nonce_of(&answer).len(), 32);
    let (a_link, b_link) = (a_link.expect("a authenticates"), b_link.expect("b authenticates"));
    assert_eq!(a_link.own_nonce, b_link.remote_nonce);
    assert_eq!(b_link.own_nonce, a_link.remote_nonce);
    assert_ne!(a_link.own_nonce, b_link.own_nonce);
    assert_eq!(&a_link.own_nonce[..], nonce_of(&offer));
}

#[test]
fn a_side_without_link_nonces_keeps_the_plain_dxos_exchange() {
    // The responder does not authenticate (a DXOS peer): it skips the offer's nonce.
    let (mut a, mut b) = (swarm(key(1), true, 1), swarm(key(2), false, 2));
    let (offer, answer, a_link, b_link) = negotiate(&mut a, &mut b);
    assert_eq!(nonce_of(&offer).len(), 32);
    assert!(nonce_of(&answer).is_empty());
    assert_eq!((a_link, b_link), (None, None));

    // The initiator does not: the responder answers as DXOS would, without a nonce.
    let (mut a, mut b) = (swarm(key(1), false, 1), swarm(key(2), true, 2));
    let (offer, answer, a_link, b_link) = negotiate(&mut a, &mut b);
    assert!(nonce_of(&offer).is_empty() && nonce_of(&answer).is_empty());
    assert_eq!((a_link, b_link), (None, None));
}

#[test]
fn nonces_come_from_the_seed() {
    let run = |seed| {
        let (mut a, mut b) = (swarm(key(1), true, seed), swarm(key(2), true, seed + 1));
        negotiate(&mut a, &mut b).2.expect("authenticated")
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn an_offer_or_answer_with_a_malformed_nonce_counts_for_nothing() {
    let now = Instant::now();
    let (mut a, mut b) = (swarm(key(1), true, 1), swarm(key(2), true, 2));
    a.handle_peer_available(now, b.own());
    let mut offer = drain(&mut a).sent.pop().expect("an offer");
    let good_offer = offer.clone();
    if let Some(Payload::Offer(inner)) = offer.data.as_mut().and_then(|data| data.payload.as_mut()) {
        inner.link_nonce.truncate(5);
    }
    b.handle_message(now, a.own(), offer);
    let at_b = drain(&mut b);
    assert!(at_b.sent.is_empty() && at_b.opened.is_empty(), "no answer, no transport");
    assert_eq!(b.connection_state(&a.own()), None);

    b.handle_message(now, a.own(), good_offer);
    let mut answer = drain(&mut b).sent.pop().expect("an answer");
    if let Some(Payload::Answer(inner)) = answer.data.as_mut().and_then(|data| data.payload.as_mut()) {
        inner.link_nonce.push(0);
    }
    a.handle_message(now, b.own(), answer);
    assert!(drain(&mut a).opened.is_empty(), "the answer is ignored: no transport");
}
