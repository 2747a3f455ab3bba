//! Several signal servers used as one, with a dead URL among them.

mod common;

use common::*;
use mesh_signal::{Manager, Signal};

const DEAD_URL: &str = "ws://127.0.0.1:9/.well-known/dx/signal";

#[tokio::test]
async fn a_broken_url_among_several_does_no_harm() {
    let (one, two) = (server().await, server().await);
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = Manager::connect([DEAD_URL.to_owned(), one.url(), two.url()]).unwrap();
    let b = Manager::connect([two.url(), DEAD_URL.to_owned()]).unwrap();
    let (_a_events, mut b_events) = meet((&a, alice), (&b, bob), topic).await;

    // The send returns as soon as one server took it, although the dead one never will.
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        a.send(message(alice, bob, "through the live one")),
    )
    .await
    .expect("a dead server does not delay sends")
    .unwrap();
    assert_eq!(wait_message(&mut b_events, bob).await.payload.value, b"through the live one");
}

#[tokio::test]
async fn messages_and_arrivals_through_two_servers_are_delivered_once() {
    let (one, two) = (server().await, server().await);
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = Manager::connect([one.url(), two.url()]).unwrap();
    let b = Manager::connect([one.url(), two.url()]).unwrap();
    let mut b_events = b.events();
    b.subscribe(bob).await.unwrap();
    a.join(topic, alice).await.unwrap();
    b.join(topic, bob).await.unwrap();
    wait_available(&mut b_events, topic, alice).await;
    // A client opens its inbox before it joins, so once both servers count both members, both
    // hold bob's inbox.
    tokio::time::timeout(PATIENCE, async {
        while one.stats().members + two.stats().members < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("both servers see both members");

    for index in 0..3 {
        a.send(message(alice, bob, &format!("message {index}"))).await.unwrap();
    }
    a.send(message(alice, bob, "end")).await.unwrap();
    let mut received = Vec::new();
    loop {
        let message = wait_message(&mut b_events, bob).await;
        let text = String::from_utf8(message.payload.value).unwrap();
        if text == "end" {
            break;
        }
        received.push(text);
    }
    assert_eq!(received, ["message 0", "message 1", "message 2"]);
    // Both servers relayed each message; the manager passed each on once.
    assert!(one.stats().messages_relayed >= 4 && two.stats().messages_relayed >= 4);
}
