//! Join storms: a burst of joins into a topic neither disconnects its members nor leaves them with
//! a wrong view of who is there.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use mesh_keys::PublicKey;
use mesh_proto::dxos::{mesh::signal::swarm_event, rpc::response};
use mesh_signal_server::{Config, Limits, RateLimit, Server};
use tokio::{sync::watch, task::JoinSet};

/// How long a member may take to see the topic settle; a test that waits this long has failed.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// One member's view of its topic, as its swarm events built it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct View {
    peers: HashSet<Vec<u8>>,
    /// Set when the server ended the member's connection, with the close code if any.
    closed: Option<Option<u16>>,
}

/// Joins `topic` as `peer` and follows the member's view in a task of `tasks`.
async fn member(
    server: &Server,
    topic: PublicKey,
    peer: PublicKey,
    tasks: &mut JoinSet<()>,
) -> watch::Receiver<View> {
    let mut client = RawClient::connect(&server.url()).await;
    client.join(0, topic, peer).await;
    client.expect_ready(0).await;
    let (view_tx, view) = watch::channel(View::default());
    tasks.spawn(async move {
        loop {
            match client.recv().await {
                Received::Response(response) => {
                    let Some((0, event)) = swarm_event_of(&response) else {
                        panic!("a member got something other than a swarm event: {response:?}")
                    };
                    view_tx.send_modify(|view| match event {
                        swarm_event::Event::PeerAvailable(available) => {
                            view.peers.insert(available.peer);
                        }
                        swarm_event::Event::PeerLeft(left) => {
                            view.peers.remove(&left.peer);
                        }
                    });
                }
                Received::OpenAck => panic!("an open_ack nobody asked for"),
                Received::Closed(code) => {
                    view_tx.send_modify(|view| view.closed = Some(code));
                    return;
                }
            }
        }
    });
    view
}

/// Sends `peers.len()` joins into `topic` at once from one connection, then keeps reading what the
/// server sends. Reports the peers whose join was accepted; refusals must be rate or size limits.
async fn joiner(
    url: String,
    topic: PublicKey,
    peers: Vec<PublicKey>,
    accepted: tokio::sync::oneshot::Sender<Vec<Vec<u8>>>,
) {
    let mut client = RawClient::connect(&url).await;
    for (id, peer) in peers.iter().enumerate() {
        client.join(id as i32, topic, *peer).await;
    }
    let mut answered = HashMap::new();
    while answered.len() < peers.len() {
        let response = client.response().await;
        let id = response.id.expect("an id") as usize;
        match response.content {
            Some(response::Content::StreamReady(_)) => {
                answered.insert(id, true);
            }
            Some(response::Content::Error(error)) => {
                let name = error.name.unwrap_or_default();
                assert!(
                    name == "RATE_LIMIT_EXCEEDED" || name == "LIMIT_EXCEEDED",
                    "join refused with {name}"
                );
                answered.insert(id, false);
            }
            _ => {}
        }
    }
    let joined =
        answered.iter().filter(|(_, ok)| **ok).map(|(id, _)| peers[*id].as_bytes().to_vec()).collect();
    let _ = accepted.send(joined);
    // Keep up with the events, as a real client does.
    while !matches!(client.recv().await, Received::Closed(_)) {}
}

/// Waits until every member's view is `expected` minus itself; fails at once if one is closed.
async fn wait_for_views(members: &mut [(PublicKey, watch::Receiver<View>)], expected: &HashSet<Vec<u8>>) {
    for (me, view) in members.iter_mut() {
        let mut want = expected.clone();
        want.remove(me.as_bytes().as_slice());
        let settled =
            tokio::time::timeout(SETTLE, view.wait_for(|view| view.closed.is_some() || view.peers == want))
                .await
                .expect("the member's view settles in time")
                .expect("the member's task runs")
                .clone();
        assert_eq!(settled.closed, None, "a member was disconnected");
        assert_eq!(settled.peers.len(), want.len());
    }
}

#[tokio::test]
async fn a_thousand_join_burst_disconnects_no_member_and_members_see_the_right_view() {
    let server = server_with(Config::default()).await;
    let topic = key();
    let mut tasks = JoinSet::new();
    let mut members = Vec::new();
    for _ in 0..3 {
        let peer = key();
        members.push((peer, member(&server, topic, peer, &mut tasks).await));
    }

    // 1,000 fresh keys join from 20 connections at once.
    let mut joiners = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..20 {
        let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
        let peers = (0..50).map(|_| key()).collect();
        joiners.push(tokio::spawn(joiner(server.url(), topic, peers, accepted_tx)));
        reports.push(accepted);
    }
    let mut accepted = Vec::new();
    for report in reports {
        accepted.push(
            tokio::time::timeout(SETTLE, report).await.expect("joins answered in time").expect("joiner runs"),
        );
    }
    let mut expected: HashSet<Vec<u8>> = accepted.iter().flatten().cloned().collect();
    expected.extend(members.iter().map(|(peer, _)| peer.as_bytes().to_vec()));
    assert!(expected.len() > members.len(), "some joins got in");
    wait_for_views(&mut members, &expected).await;

    // Half the joining connections drop: the members see exactly those peers leave.
    for (joiner, peers) in joiners.iter().zip(&accepted).take(10) {
        joiner.abort();
        for peer in peers {
            expected.remove(peer);
        }
    }
    wait_for_views(&mut members, &expected).await;
    for joiner in joiners {
        joiner.abort();
    }
}

#[tokio::test]
async fn a_member_with_a_tiny_queue_survives_a_burst_of_joins() {
    // Joins are not rate-limited here: only coalescing keeps the member's queue from overflowing.
    let unlimited = RateLimit { per_second: 1e6, burst: 1_000_000 };
    let limits = Limits {
        send_queue: 2,
        join_rate_per_topic: unlimited,
        join_rate_per_connection: unlimited,
        ..Limits::default()
    };
    let server = server_with(Config::default().with_limits(limits)).await;
    let topic = key();
    let mut tasks = JoinSet::new();
    let me = key();
    let mut members = vec![(me, member(&server, topic, me, &mut tasks).await)];
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    let peers: Vec<PublicKey> = (0..60).map(|_| key()).collect();
    let joiner = tokio::spawn(joiner(server.url(), topic, peers.clone(), accepted_tx));
    assert_eq!(accepted.await.expect("joiner runs").len(), peers.len());
    let mut expected: HashSet<Vec<u8>> = peers.iter().map(|peer| peer.as_bytes().to_vec()).collect();
    expected.insert(me.as_bytes().to_vec());
    wait_for_views(&mut members, &expected).await;
    joiner.abort();
}

#[tokio::test]
async fn joins_beyond_a_topics_join_rate_are_refused_from_any_connection() {
    let limits =
        Limits { join_rate_per_topic: RateLimit { per_second: 0.001, burst: 2 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let (busy, quiet) = (key(), key());
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut client = RawClient::connect(&server.url()).await;
        client.join(0, busy, key()).await;
        client.expect_ready(0).await;
        members.push(client);
    }
    let mut late = RawClient::connect(&server.url()).await;
    late.join(0, busy, key()).await;
    late.expect_error(0, "RATE_LIMIT_EXCEEDED").await;
    // Other topics have their own budget.
    late.join(1, quiet, key()).await;
    late.expect_ready(1).await;
    assert_eq!((server.stats().joins_rate_limited, server.stats().rate_limited), (1, 1));
}

#[tokio::test]
async fn joins_beyond_a_connections_join_rate_are_refused() {
    let limits =
        Limits { join_rate_per_connection: RateLimit { per_second: 0.001, burst: 2 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut client = RawClient::connect(&server.url()).await;
    for id in 0..2 {
        client.join(id, key(), key()).await;
        client.expect_ready(id).await;
    }
    // Leaving does not give the budget back: churning joins is what the limit is for.
    client.close_stream(0).await;
    client.join(2, key(), key()).await;
    client.expect_error(2, "RATE_LIMIT_EXCEEDED").await;
    // Another connection has its own budget.
    let mut other = RawClient::connect(&server.url()).await;
    other.join(0, key(), key()).await;
    other.expect_ready(0).await;
    assert_eq!(server.stats().joins_rate_limited, 1);
}

#[tokio::test]
async fn joins_beyond_the_topic_member_limit_are_refused_until_one_leaves() {
    let limits = Limits { max_topic_members: 2, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let topic = key();
    let mut client = RawClient::connect(&server.url()).await;
    let alice = key();
    client.join(0, topic, alice).await;
    client.expect_ready(0).await;
    // The same peer joined from a second stream counts too.
    client.join(1, topic, alice).await;
    client.expect_ready(1).await;
    client.join(2, topic, key()).await;
    client.expect_error(2, "LIMIT_EXCEEDED").await;
    client.close_stream(1).await;
    let bob = key();
    client.join(3, topic, bob).await;
    client.expect_ready(3).await;
    assert_eq!(server.stats().members, 2);
}
