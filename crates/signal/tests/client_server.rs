//! Rust clients against the real signal server over loopback WebSocket.

mod common;

use common::*;
use mesh_signal::{Client, Signal};

#[tokio::test]
async fn two_peers_see_each_other_and_exchange_messages() {
    let server = server().await;
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = Client::connect(server.url()).unwrap();
    let b = Client::connect(server.url()).unwrap();
    let (mut a_events, mut b_events) = meet((&a, alice), (&b, bob), topic).await;

    a.send(message(alice, bob, "hello bob")).await.unwrap();
    let received = wait_message(&mut b_events, bob).await;
    assert_eq!(received.author, alice);
    assert_eq!(received.payload.value, b"hello bob");

    b.send(message(bob, alice, "hello alice")).await.unwrap();
    assert_eq!(wait_message(&mut a_events, alice).await.payload.value, b"hello alice");

    b.leave(topic, bob).await.unwrap();
    wait_left(&mut a_events, topic, bob).await;
}

#[tokio::test]
async fn three_peers_all_see_each_other() {
    let server = server().await;
    let topic = topic();
    let peers: Vec<_> = (0..3).map(|_| peer()).collect();
    let clients: Vec<Client> = (0..3).map(|_| Client::connect(server.url()).unwrap()).collect();
    let mut events: Vec<_> = clients.iter().map(|c| c.events()).collect();
    for (client, key) in clients.iter().zip(&peers) {
        client.join(topic, *key).await.unwrap();
    }
    for (index, events) in events.iter_mut().enumerate() {
        let others = peers.iter().enumerate().filter(|(other, _)| *other != index).map(|(_, key)| *key);
        wait_all_available(events, topic, others).await;
    }
}

#[tokio::test]
async fn peer_left_when_a_client_goes_away() {
    let server = server().await;
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = Client::connect(server.url()).unwrap();
    let mut a_events = a.events();
    a.join(topic, alice).await.unwrap();
    {
        let b = Client::connect(server.url()).unwrap();
        b.join(topic, bob).await.unwrap();
        wait_available(&mut a_events, topic, bob).await;
    }
    // Dropping the last handle closes the socket; the server tells the others.
    wait_left(&mut a_events, topic, bob).await;
}

#[tokio::test]
async fn an_authenticated_client_joins_a_server_that_requires_it() {
    use mesh_keys::Keypair;
    use mesh_signal::ClientConfig;
    use mesh_signal_server::{AuthPolicy, Config};

    let server = server_with(Config::default().with_auth(AuthPolicy::Required)).await;
    let (alice, bob, topic) = (Keypair::generate(), Keypair::generate(), topic());
    let connect = |identity: &Keypair| {
        Client::with_config(ClientConfig::new(server.url()).with_identity(identity.clone())).unwrap()
    };
    let (a, b) = (connect(&alice), connect(&bob));
    let mut a_events = a.events();
    a.join(topic, alice.public()).await.unwrap();
    b.subscribe(bob.public()).await.unwrap();
    b.join(topic, bob.public()).await.unwrap();
    wait_available(&mut a_events, topic, bob.public()).await;
    let mut b_events = b.events();
    a.send(message(alice.public(), bob.public(), "proven")).await.unwrap();
    assert_eq!(wait_message(&mut b_events, bob.public()).await.payload.value, b"proven");
    // Sending as someone else is refused with the server's reason.
    let forged = a.send(message(bob.public(), alice.public(), "forged")).await;
    assert!(
        matches!(forged, Err(mesh_signal::SignalError::Refused { ref name, .. }) if name == "UNAUTHORIZED")
    );
}

#[tokio::test]
async fn a_client_with_a_key_to_prove_carries_on_unproven_where_authentication_is_off() {
    use mesh_keys::Keypair;
    use mesh_signal::ClientConfig;

    let server = server().await;
    let (alice, bob, topic) = (Keypair::generate(), peer(), topic());
    let a = Client::with_config(ClientConfig::new(server.url()).with_identity(alice.clone())).unwrap();
    let b = Client::connect(server.url()).unwrap();
    let (_a_events, mut b_events) = meet((&a, alice.public()), (&b, bob), topic).await;
    a.send(message(alice.public(), bob, "unproven but welcome")).await.unwrap();
    assert_eq!(wait_message(&mut b_events, bob).await.payload.value, b"unproven but welcome");
}

#[tokio::test]
async fn a_send_made_before_the_proof_waits_for_it_where_authentication_is_required() {
    use mesh_keys::Keypair;
    use mesh_signal::ClientConfig;
    use mesh_signal_server::{AuthPolicy, Config};

    let server = server_with(Config::default().with_auth(AuthPolicy::Required)).await;
    let alice = Keypair::generate();
    let a = Client::with_config(ClientConfig::new(server.url()).with_identity(alice.clone())).unwrap();
    // Queued before the connection exists: it must not reach the server ahead of the proof.
    a.send(message(alice.public(), peer(), "after the proof")).await.expect("accepted once proven");
}
