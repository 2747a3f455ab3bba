//! What a client reports of a swarm's members across reconnects, and the snapshot a consumer that
//! fell behind resynchronises with.

mod common;

use std::time::Duration;

use common::*;
use mesh_signal::{Client, ClientConfig, ConnectionState, Event, Signal};
use mesh_signal_server::Config;
use tokio::sync::broadcast;

async fn wait_closed(events: &mut broadcast::Receiver<Event>) {
    wait_for(events, |event| {
        matches!(event, Event::Connection { state: ConnectionState::Closed, .. }).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_peer_that_left_while_the_server_restarted_is_reported_left() {
    let first = server().await;
    let listen = first.local_addr();
    let (alice, bob, carol, topic) = (peer(), peer(), peer(), topic());
    let a = Client::connect(first.url()).unwrap();
    let mut a_events = a.events();
    a.join(topic, alice).await.unwrap();
    let c = Client::connect(first.url()).unwrap();
    c.join(topic, carol).await.unwrap();
    let b = Client::connect(first.url()).unwrap();
    let mut b_events = b.events();
    b.join(topic, bob).await.unwrap();
    wait_all_available(&mut a_events, topic, [bob, carol]).await;

    // The server dies without a word; bob goes away while it is down.
    first.abort().await;
    drop(b);
    wait_closed(&mut b_events).await;
    let _second = server_with(Config::default().with_listen(listen)).await;

    // Bob is reported gone rather than kept as a ghost; carol, still there, is announced again.
    wait_left(&mut a_events, topic, bob).await;
    wait_available(&mut a_events, topic, carol).await;
    assert_eq!(a.members(topic).await.unwrap(), [carol]);
}

#[tokio::test]
async fn members_lets_a_consumer_that_lagged_resynchronise() {
    let server = server().await;
    let topic = topic();
    let config = ClientConfig::new(server.url()).with_event_capacity(2);
    let a = Client::with_config(config).unwrap();
    let mut lagging = a.events();
    a.join(topic, peer()).await.unwrap();
    let others = Client::connect(server.url()).unwrap();
    let keys: Vec<_> = (0..10).map(|_| peer()).collect();
    for key in &keys {
        others.join(topic, *key).await.unwrap();
    }

    let mut expected = keys.clone();
    expected.sort();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut members = a.members(topic).await.unwrap();
            members.sort();
            if members == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the snapshot holds every member");
    assert!(matches!(lagging.recv().await, Err(broadcast::error::RecvError::Lagged(_))));

    // The snapshot follows departures too.
    others.leave(topic, keys[0]).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while a.members(topic).await.unwrap().contains(&keys[0]) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the departure reaches the snapshot");
}
