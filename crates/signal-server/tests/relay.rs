//! Membership and relay as the server implements the DXOS 0.8.3 signal protocol.

mod common;

use common::*;
use mesh_signal_server::Config;

#[tokio::test]
async fn join_announces_members_both_ways_and_leave_announces_peer_left() {
    let server = server_with(Config::default()).await;
    let (topic, alice, bob) = (key(), key(), key());
    let mut a = RawClient::connect(&server.url()).await;
    let mut b = RawClient::connect(&server.url()).await;

    a.join(0, topic, alice).await;
    a.expect_ready(0).await;
    b.join(7, topic, bob).await;
    b.expect_ready(7).await;
    // The joiner hears of every member, and every member hears of the joiner.
    assert_eq!(available_peer(&b.expect_event(7).await), Some(alice.as_bytes().to_vec()));
    assert_eq!(available_peer(&a.expect_event(0).await), Some(bob.as_bytes().to_vec()));

    b.close_stream(7).await;
    assert_eq!(left_peer(&a.expect_event(0).await), Some(bob.as_bytes().to_vec()));
}

#[tokio::test]
async fn messages_reach_every_inbox_of_the_recipient_unchanged() {
    let server = server_with(Config::default()).await;
    let (alice, bob) = (key(), key());
    let mut a = RawClient::connect(&server.url()).await;
    let mut b1 = RawClient::connect(&server.url()).await;
    let mut b2 = RawClient::connect(&server.url()).await;
    b1.receive(1, bob).await;
    b1.expect_ready(1).await;
    b2.receive(2, bob).await;
    b2.expect_ready(2).await;

    a.send_message(3, alice, bob, b"opaque \x00\xff bytes").await;
    let reply = a.expect_reply(3).await;
    assert_eq!(reply.type_url, ".google.protobuf.Empty");
    for (client, stream) in [(&mut b1, 1), (&mut b2, 2)] {
        let message = client.expect_message(stream).await;
        assert_eq!(message.author, alice.as_bytes());
        assert_eq!(message.payload.map(|p| p.value), Some(b"opaque \x00\xff bytes".to_vec()));
    }
    assert_eq!(server.stats().messages_relayed, 2);
}

#[tokio::test]
async fn abrupt_disconnect_sends_peer_left() {
    let server = server_with(Config::default()).await;
    let (topic, alice, bob) = (key(), key(), key());
    let mut a = RawClient::connect(&server.url()).await;
    a.join(0, topic, alice).await;
    a.expect_ready(0).await;
    let mut b = RawClient::connect(&server.url()).await;
    b.join(0, topic, bob).await;
    b.expect_ready(0).await;
    a.expect_event(0).await;

    b.abort();
    assert_eq!(left_peer(&a.expect_event(0).await), Some(bob.as_bytes().to_vec()));
    assert_eq!(server.stats().members, 1);
}

#[tokio::test]
async fn a_peer_joined_twice_leaves_only_with_its_last_stream() {
    let server = server_with(Config::default()).await;
    let (topic, alice, bob) = (key(), key(), key());
    let mut a = RawClient::connect(&server.url()).await;
    a.join(0, topic, alice).await;
    a.expect_ready(0).await;
    // Bob reconnects before his old socket is gone: two registrations for one member.
    let mut old = RawClient::connect(&server.url()).await;
    old.join(0, topic, bob).await;
    old.expect_ready(0).await;
    a.expect_event(0).await;
    let mut new = RawClient::connect(&server.url()).await;
    new.join(0, topic, bob).await;
    new.expect_ready(0).await;
    a.expect_event(0).await;

    old.abort();
    // No PeerLeft: bob is still there. The next event alice sees is carol's arrival.
    let carol = key();
    let mut c = RawClient::connect(&server.url()).await;
    c.join(0, topic, carol).await;
    c.expect_ready(0).await;
    assert_eq!(available_peer(&a.expect_event(0).await), Some(carol.as_bytes().to_vec()));

    new.abort();
    assert_eq!(left_peer(&a.expect_event(0).await), Some(bob.as_bytes().to_vec()));
}

#[tokio::test]
async fn two_hundred_clients_in_one_topic_all_see_each_other() {
    let server = server_with(Config::default()).await;
    let topic = key();
    let mut clients = Vec::new();
    for _ in 0..200 {
        let peer = key();
        let mut client = RawClient::connect(&server.url()).await;
        client.join(1, topic, peer).await;
        client.expect_ready(1).await;
        clients.push((peer, client));
    }
    // Each client has heard of the 199 others: the earlier ones at its join, the later as they came.
    for (me, client) in &mut clients {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 199 {
            let peer = available_peer(&client.expect_event(1).await).expect("only arrivals");
            assert_ne!(peer, me.as_bytes().to_vec(), "a peer is not told about itself");
            seen.insert(peer);
        }
    }
    assert_eq!(server.stats().members, 200);
}

#[tokio::test]
async fn inboxes_beyond_the_limit_per_key_are_refused() {
    let limits = mesh_signal_server::Limits { max_inboxes_per_peer: 2, ..Default::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let bob = key();
    let mut inboxes = Vec::new();
    for _ in 0..2 {
        let mut inbox = RawClient::connect(&server.url()).await;
        inbox.receive(1, bob).await;
        inbox.expect_ready(1).await;
        inboxes.push(inbox);
    }
    let mut third = RawClient::connect(&server.url()).await;
    third.receive(1, bob).await;
    third.expect_error(1, "LIMIT_EXCEEDED").await;
    let mut sender = RawClient::connect(&server.url()).await;
    sender.send_message(1, key(), bob, b"two copies").await;
    sender.expect_reply(1).await;
    for inbox in &mut inboxes {
        inbox.expect_message(1).await;
    }
    assert_eq!(server.stats().messages_relayed, 2);
    // Closing one frees its place (the reply to a later request shows the close was handled).
    inboxes[0].close_stream(1).await;
    inboxes[0].send_message(2, key(), key(), b"").await;
    inboxes[0].expect_reply(2).await;
    third.receive(2, bob).await;
    third.expect_ready(2).await;
}
