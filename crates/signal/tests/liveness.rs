//! A server that stops answering while its TCP connection stays up (half-open) is found and left,
//! and a manager goes on through its other server.

mod common;

use std::{sync::Arc, time::Duration};

use common::{proxy::Proxy, *};
use futures::{SinkExt, StreamExt};
use mesh_signal::{Client, ConnectionState, Event, Manager, Signal};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// With the default settings a half-open server must be found within this long.
const DETECTION_BOUND: Duration = Duration::from_secs(15);

/// Waits for `url`'s Disconnected; returns how long it took.
async fn wait_disconnected(events: &mut tokio::sync::broadcast::Receiver<Event>, url: &str) -> Duration {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(DETECTION_BOUND, async {
        loop {
            match events.recv().await {
                Ok(Event::Connection { url: u, state: ConnectionState::Disconnected }) if u == url => return,
                Ok(_) => {}
                Err(err) => panic!("event stream: {err}"),
            }
        }
    })
    .await
    .expect("the half-open server was found within 15 s");
    started.elapsed()
}

#[tokio::test]
async fn a_half_open_server_is_detected_and_its_peers_reported_left() {
    let server = server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let (alice, bob, topic) = (peer(), peer(), topic());
    let a = Client::connect(proxy.url(&server.url())).unwrap();
    let b = Client::connect(server.url()).unwrap();
    let (mut a_events, _b_events) = meet((&a, alice), (&b, bob), topic).await;

    proxy.stall();
    let mut watcher = a.events();
    wait_disconnected(&mut a_events, a.url()).await;
    // Its view went with the connection: bob is reported left, not kept as a ghost.
    wait_left(&mut watcher, topic, bob).await;
    assert!(a.members(topic).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_manager_keeps_working_through_its_other_server_when_one_goes_half_open() {
    let server = server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let proxied = proxy.url(&server.url());
    let (alice, bob, carol, topic) = (peer(), peer(), peer(), topic());
    let via_proxy = Client::connect(proxied.clone()).unwrap();
    let mut via_proxy_events = via_proxy.events();
    let direct: Arc<dyn Signal> = Arc::new(Client::connect(server.url()).unwrap());
    let a = Manager::new(vec![Arc::new(via_proxy), direct]);
    let b = Client::connect(server.url()).unwrap();
    let (mut a_events, mut b_events) = meet((&a, alice), (&b, bob), topic).await;
    // Both of alice's sources vouch for bob before the proxy stalls.
    wait_available(&mut via_proxy_events, topic, bob).await;

    proxy.stall();
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    tokio::time::timeout(DETECTION_BOUND, async {
        loop {
            let event = a_events.recv().await.expect("manager events");
            let done = matches!(&event, Event::Connection { url, state: ConnectionState::Disconnected } if *url == proxied);
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .expect("the manager's client found the half-open server within 15 s");
    assert!(started.elapsed() < DETECTION_BOUND);
    assert!(
        !seen.iter().any(|event| matches!(event, Event::PeerLeft { peer, .. } if *peer == bob)),
        "the other server still vouches for bob: {seen:?}"
    );
    assert_eq!(a.members(topic).await.unwrap(), [bob]);

    // Membership and messages still flow through the direct server.
    let c = Client::connect(server.url()).unwrap();
    c.join(topic, carol).await.unwrap();
    wait_available(&mut a_events, topic, carol).await;
    a.send(message(alice, bob, "still here")).await.unwrap();
    assert_eq!(wait_message(&mut b_events, bob).await.payload.value, b"still here");
    b.send(message(bob, alice, "and back")).await.unwrap();
    assert_eq!(wait_message(&mut a_events, alice).await.payload.value, b"and back");
}

#[tokio::test]
async fn the_server_answers_websocket_pings() {
    let server = server().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url()).await.expect("WebSocket handshake");
    ws.send(WsMessage::Ping(b"are you there".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await.expect("an open socket").expect("a frame") {
                WsMessage::Pong(payload) => return payload,
                _ => continue,
            }
        }
    })
    .await
    .expect("a Pong");
    assert_eq!(&pong[..], b"are you there");
}

#[tokio::test]
async fn a_quiet_connection_to_a_live_server_stays_up() {
    // Heartbeats far shorter than the default, so several read deadlines pass in a short test;
    // the deadline is still many round trips long, so a loaded machine does not trip it.
    let server = server().await;
    let config = mesh_signal::ClientConfig::new(server.url())
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_read_timeout(Duration::from_secs(2));
    let client = Client::with_config(config).unwrap();
    let mut events = client.events();
    wait_for(&mut events, |event| {
        matches!(event, Event::Connection { state: ConnectionState::Connected, .. }).then_some(())
    })
    .await;
    // Over two read deadlines with nothing but heartbeats on the wire.
    let quiet = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Connection { state, .. }) = events.recv().await {
                return state;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the connection changed state: {quiet:?}");
}
