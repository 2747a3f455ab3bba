//! The in-memory network behind the Signal trait, and the messenger running on it.

mod common;

use std::sync::Arc;

use common::*;
use mesh_proto::Any;
use mesh_signal::{MemoryNetwork, Messenger, Signal, SignalError};

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

#[tokio::test(start_paused = true)]
async fn listeners_are_routed_by_recipient_and_payload_type() {
    let network = MemoryNetwork::new();
    let (alice, bob) = (peer(), peer());
    let a = Messenger::new(Arc::new(network.client()));
    let b = Messenger::new(Arc::new(network.client()));
    let _ = a.listen(alice, None).await.unwrap();
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
