//! The client core against a scripted server: what it sends when, and what it reports.

use mesh_proto::{
    dxos::{error::Error as ErrorMessage, mesh::signal::swarm_event},
    mesh::v1::AuthenticateResponse,
};

use super::*;

fn key() -> PublicKey {
    Keypair::generate().public()
}

fn core_with(identities: Vec<Keypair>) -> Core {
    Core::new(Timeouts::default(), "127.0.0.1:4000".into(), identities, 3)
}

/// The requests the core wants to write, as (id, method).
fn requests(core: &mut Core) -> Vec<(i32, String)> {
    std::iter::from_fn(|| core.poll_transmit())
        .filter_map(|frame| match RpcMessage::decode(frame.as_slice()).ok()?.content? {
            rpc_message::Content::Request(request) => Some((request.id?, request.method)),
            _ => None,
        })
        .collect()
}

fn methods(requests: &[(i32, String)]) -> Vec<&str> {
    requests.iter().map(|(_, method)| method.as_str()).collect()
}

fn reply(core: &mut Core, now: Instant, id: i32, content: response::Content) {
    let frame = RpcMessage {
        content: Some(rpc_message::Content::Response(Response { id: Some(id), content: Some(content) })),
    };
    core.handle_frame(now, &frame.encode_to_vec()).expect("a well-formed frame");
}

fn payload<M: Message + Name>(message: &M) -> response::Content {
    response::Content::Payload(any::pack_request(message))
}

fn error(name: &str) -> response::Content {
    response::Content::Error(ErrorMessage {
        name: Some(name.into()),
        message: Some("no".into()),
        stack: None,
        context: None,
    })
}

fn available(peer: PublicKey) -> response::Content {
    let event = swarm_event::Event::PeerAvailable(swarm_event::PeerAvailable {
        peer: peer.as_bytes().to_vec(),
        since: None,
        until: None,
        announce_back_to_host: None,
    });
    payload(&SwarmEvent { event: Some(event) })
}

fn events(core: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_output())
        .filter_map(|output| match output {
            Output::Event(event) => Some(event),
            Output::SendResult(..) => None,
        })
        .collect()
}

fn message(author: PublicKey) -> SignalMessage {
    SignalMessage { author, recipient: key(), payload: Any::default() }
}

#[test]
fn sends_and_streams_wait_until_the_keys_are_proven() {
    let now = Instant::now();
    let identity = Keypair::generate();
    let mut core = core_with(vec![identity.clone()]);
    core.subscribe(now, identity.public());
    core.send(now, 1, &message(identity.public()));
    core.on_connected(now);
    let sent = requests(&mut core);
    assert_eq!(methods(&sent), [CHALLENGE], "only the proof goes first");

    // A send made while the proof is under way waits too.
    core.send(now, 2, &message(identity.public()));
    reply(&mut core, now, sent[0].0, payload(&ChallengeResponse { nonce: vec![7; 32] }));
    let sent = requests(&mut core);
    assert_eq!(methods(&sent), [AUTHENTICATE]);

    reply(&mut core, now, sent[0].0, payload(&AuthenticateResponse {}));
    assert_eq!(methods(&requests(&mut core)), [RECEIVE_MESSAGES, SEND_MESSAGE, SEND_MESSAGE]);
}

#[test]
fn a_server_without_mesh_authentication_lets_the_client_carry_on_unproven() {
    for refusal in ["UNKNOWN_METHOD", "AUTH_DISABLED"] {
        let now = Instant::now();
        let identity = Keypair::generate();
        let mut core = core_with(vec![identity.clone()]);
        core.join(now, DiscoveryKey::from_party(&key()), identity.public());
        core.send(now, 1, &message(identity.public()));
        core.on_connected(now);
        let sent = requests(&mut core);
        reply(&mut core, now, sent[0].0, error(refusal));
        assert_eq!(methods(&requests(&mut core)), [JOIN, SEND_MESSAGE], "after {refusal}");
    }
}

#[test]
fn unanswered_proofs_are_given_up_after_the_stream_ready_timeout() {
    let now = Instant::now();
    let identity = Keypair::generate();
    let mut core = core_with(vec![identity.clone()]);
    core.subscribe(now, identity.public());
    core.on_connected(now);
    assert_eq!(methods(&requests(&mut core)), [CHALLENGE]);
    let late = core.poll_timeout().expect("a deadline for the proofs");
    assert_eq!(late, now + Timeouts::default().stream_ready);
    core.handle_timeout(late);
    assert_eq!(methods(&requests(&mut core)), [RECEIVE_MESSAGES]);
}

/// A core joined to `topic` and connected, with the Join stream's id.
fn joined(topic: DiscoveryKey, now: Instant) -> (Core, i32) {
    let mut core = core_with(Vec::new());
    core.join(now, topic, key());
    core.on_connected(now);
    let stream = requests(&mut core)[0].0;
    (core, stream)
}

/// The peers the core reported as having left `topic`, sorted; any other event fails the test.
fn departures(core: &mut Core, topic: DiscoveryKey) -> Vec<PublicKey> {
    let mut left: Vec<PublicKey> = events(core)
        .into_iter()
        .map(|event| match event {
            Event::PeerLeft { topic: t, peer } if t == topic => peer,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    left.sort();
    left
}

#[test]
fn a_lost_connection_reports_every_peer_of_the_view_as_left() {
    let (now, topic, bob, carol) = (Instant::now(), DiscoveryKey::from_party(&key()), key(), key());
    let (mut core, stream) = joined(topic, now);
    reply(&mut core, now, stream, available(bob));
    reply(&mut core, now, stream, available(carol));
    assert_eq!(events(&mut core).len(), 2);
    let mut members = core.members(topic);
    members.sort();
    let mut expected = vec![bob, carol];
    expected.sort();
    assert_eq!(members, expected);

    core.on_disconnected();
    assert_eq!(departures(&mut core, topic), expected);
    assert!(core.members(topic).is_empty());
}

#[test]
fn leaving_a_topic_reports_its_view_as_left() {
    let (now, topic, bob) = (Instant::now(), DiscoveryKey::from_party(&key()), key());
    let mut core = core_with(Vec::new());
    let me = key();
    core.join(now, topic, me);
    core.on_connected(now);
    let stream = requests(&mut core)[0].0;
    reply(&mut core, now, stream, available(bob));
    let _ = events(&mut core);
    core.leave(topic, me);
    assert_eq!(events(&mut core), [Event::PeerLeft { topic, peer: bob }]);
    assert!(core.members(topic).is_empty());
}

#[test]
fn a_failed_join_stream_drops_the_view_it_was_keeping() {
    let (now, topic, bob, carol) = (Instant::now(), DiscoveryKey::from_party(&key()), key(), key());
    let (mut core, stream) = joined(topic, now);
    reply(&mut core, now, stream, available(bob));
    reply(&mut core, now, stream, available(carol));
    let _ = events(&mut core);
    // The server withdraws the stream; departures until it is reopened would go unheard. One
    // frame, so several events: each peer of the view, once.
    reply(&mut core, now, stream, error("UNAUTHORIZED"));
    let mut expected = vec![bob, carol];
    expected.sort();
    assert_eq!(departures(&mut core, topic), expected);
    assert!(core.members(topic).is_empty());
}

#[test]
fn the_view_of_a_topic_is_capped() {
    let (now, topic) = (Instant::now(), DiscoveryKey::from_party(&key()));
    let (mut core, stream) = joined(topic, now);
    for _ in 0..10 {
        reply(&mut core, now, stream, available(key()));
    }
    assert_eq!(core.members(topic).len(), 3);
    assert_eq!(events(&mut core).len(), 3, "announcements past the cap are dropped, not passed on");
}
