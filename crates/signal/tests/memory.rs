//! The in-memory network behind the Signal trait, and the messenger running on it.

mod common;

use std::sync::Arc;

use common::*;
use mesh_keys::PublicKey;
use mesh_proto::Any;
use mesh_signal::{MemoryNetwork, Messenger, Signal, SignalError, SignalMessage};

fn text(body: &str) -> Any {
    Any { type_url: "mesh.test.Text".into(), value: body.as_bytes().to_vec() }
}

#[tokio::test]
async fn memory_clients_see_each_other_and_the_leave_on_drop() {
    let network = MemoryNetwork::new();
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = network.client();
    let mut a_events = a.events();
    a.join(topic, alice).await.unwrap();
    {
        let b = network.client();
        let mut b_events = b.events();
        b.join(topic, bob).await.unwrap();
        wait_available(&mut a_events, topic, bob).await;
        wait_available(&mut b_events, topic, alice).await;
    }
    wait_left(&mut a_events, topic, bob).await;
}

#[tokio::test(start_paused = true)]
async fn reliable_delivery_when_one_in_three_sends_is_lost() {
    let network = MemoryNetwork::new();
    network.set_send_filter(|n| n % 3 == 1);
    let (alice, bob) = (peer(), peer());
    let a = Messenger::new(Arc::new(network.client()));
    let b = Messenger::new(Arc::new(network.client()));
    let mut inbox = b.listen(bob, None).await.unwrap();
    let _ = a.listen(alice, None).await.unwrap();

    for index in 0..5 {
        a.send(alice, bob, text(&format!("{index}"))).await.expect("delivered despite loss");
    }
    let mut received = Vec::new();
    while let Ok(message) = inbox.try_recv() {
        received.push(String::from_utf8(message.payload.value).unwrap());
    }
    received.sort();
    assert_eq!(received, ["0", "1", "2", "3", "4"], "each message exactly once");
}

/// Alice's and bob's messengers on one in-memory network, alice's inbox open (for the
/// acknowledgements), with their keys.
async fn alice_and_bob() -> (Messenger, Messenger, PublicKey, PublicKey) {
    let network = MemoryNetwork::new();
    let (alice, bob) = (peer(), peer());
    let a = Messenger::new(Arc::new(network.client()));
    let b = Messenger::new(Arc::new(network.client()));
    let _ = a.listen(alice, None).await.expect("alice's inbox opens");
    (a, b, alice, bob)
}

#[tokio::test(start_paused = true)]
async fn listeners_are_routed_by_recipient_and_payload_type() {
    let (a, b, alice, bob) = alice_and_bob().await;
    let mut texts = b.listen(bob, Some("mesh.test.Text")).await.unwrap();
    let mut numbers = b.listen(bob, Some("mesh.test.Number")).await.unwrap();
    let mut everything = b.listen(bob, None).await.unwrap();

    a.send(alice, bob, text("words")).await.unwrap();
    a.send(alice, bob, Any { type_url: "mesh.test.Number".into(), value: vec![42] }).await.unwrap();

    assert_eq!(texts.try_recv().unwrap().payload.value, b"words");
    assert!(texts.try_recv().is_err());
    assert_eq!(numbers.try_recv().unwrap().payload.value, [42]);
    assert!(numbers.try_recv().is_err());
    assert_eq!(everything.try_recv().unwrap().payload.type_url, "mesh.test.Text");
    assert_eq!(everything.try_recv().unwrap().payload.type_url, "mesh.test.Number");
}

#[tokio::test(start_paused = true)]
async fn a_message_nobody_receives_times_out_after_ten_seconds() {
    let network = MemoryNetwork::new();
    let (alice, nobody) = (peer(), peer());
    let a = Messenger::new(Arc::new(network.client()));
    let started = tokio::time::Instant::now();
    let result = a.send(alice, nobody, text("into the void")).await;
    assert_eq!(result, Err(SignalError::Timeout("not acknowledged")));
    assert_eq!(started.elapsed().as_secs(), 10);
}

#[tokio::test]
async fn memory_members_are_the_peers_a_client_was_told_about_and_leaving_reports_them_left() {
    let network = MemoryNetwork::new();
    let (alice, bob, carol, topic) = (peer(), peer(), peer(), topic());
    let (a, b, c) = (network.client(), network.client(), network.client());
    let mut a_events = a.events();
    a.join(topic, alice).await.unwrap();
    b.join(topic, bob).await.unwrap();
    c.join(topic, carol).await.unwrap();
    let mut members = a.members(topic).await.unwrap();
    members.sort();
    let mut expected = vec![bob, carol];
    expected.sort();
    assert_eq!(members, expected);
    assert!(network.client().members(topic).await.unwrap().is_empty(), "not joined, told nothing");

    wait_all_available(&mut a_events, topic, [bob, carol]).await;
    a.leave(topic, alice).await.unwrap();
    wait_left(&mut a_events, topic, bob).await;
    assert!(a.members(topic).await.unwrap().is_empty());
}

/// Sends `count` messages from `a` (as `alice`) to `bob`, each acknowledged.
async fn fill(a: &Messenger, alice: PublicKey, bob: PublicKey, count: usize) {
    for index in 0..count {
        a.send(alice, bob, text(&format!("filler {index}"))).await.expect("room in the listener");
    }
}

/// The listener queue of the messenger (its bound is not configurable).
const LISTENER_QUEUE: usize = 256;

#[tokio::test(start_paused = true)]
async fn a_full_listener_gets_no_ack_and_the_resend_delivers_after_it_drains() {
    let (a, b, alice, bob) = alice_and_bob().await;
    let mut inbox = b.listen(bob, None).await.unwrap();
    fill(&a, alice, bob, LISTENER_QUEUE).await;

    // The listener is full: the next message is neither delivered nor acknowledged.
    let sending = {
        let a = a.clone();
        tokio::spawn(async move { a.send(alice, bob, text("the one that waits")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!sending.is_finished(), "a message the listener could not take was acknowledged");

    // Once the listener drains, the sender's resend (at 1 s) delivers it.
    for _ in 0..LISTENER_QUEUE {
        assert!(inbox.try_recv().unwrap().payload.value.starts_with(b"filler"));
    }
    assert!(inbox.try_recv().is_err(), "nothing past the queue's bound was kept");
    sending.await.unwrap().expect("acknowledged after the resend");
    assert_eq!(inbox.try_recv().unwrap().payload.value, b"the one that waits");
}

#[tokio::test(start_paused = true)]
async fn filtered_listeners_take_only_their_messages_and_a_full_one_does_not_hold_up_another() {
    let (a, b, alice, bob) = alice_and_bob().await;
    let starts_with = |prefix: &'static [u8]| move |m: &SignalMessage| m.payload.value.starts_with(prefix);
    let mut fillers = b.listen_where(bob, Some("mesh.test.Text"), starts_with(b"filler")).await.unwrap();
    let mut others = b.listen_where(bob, Some("mesh.test.Text"), starts_with(b"other")).await.unwrap();
    fill(&a, alice, bob, LISTENER_QUEUE).await;

    // The filler listener is full; a message for the other listener is delivered at once.
    a.send(alice, bob, text("other: not held up")).await.unwrap();
    assert_eq!(others.try_recv().unwrap().payload.value, b"other: not held up");
    assert!(others.try_recv().is_err(), "the other listener takes none of the fillers");
    assert_eq!(std::iter::from_fn(|| fillers.try_recv().ok()).count(), LISTENER_QUEUE);

    // A message no listener's filter picks is not acknowledged.
    let nobody = a.send(alice, bob, text("for nobody")).await;
    assert_eq!(nobody, Err(SignalError::Timeout("not acknowledged")));
}
