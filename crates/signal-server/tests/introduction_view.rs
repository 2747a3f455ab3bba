//! The bounded introduction view: the server introduces exactly as `mesh_signal::view` (which the
//! simulator runs) says, at 80 peers with churn through the session harness and at 2,000 clients
//! over WebSocket.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use mesh_proto::{
    Message,
    dxos::{
        mesh::signal::swarm_event,
        rpc::{RpcMessage, rpc_message},
    },
};
use mesh_signal::view::IntroductionView as Model;
use mesh_signal_server::{
    AuthPolicy, Config, IntroductionView, Limits, RateLimit,
    fuzzing::{ClientFrame, Handled, Harness},
};
use tokio::{sync::watch, task::JoinSet};

const SEED: u64 = 0x5eed;

fn limits(view: IntroductionView, members: usize) -> Limits {
    let unlimited = RateLimit { per_second: 1e6, burst: 1_000_000 };
    Limits {
        introduction_view: Some(view.with_seed(SEED)),
        join_rate_per_topic: unlimited,
        join_rate_per_connection: unlimited,
        rate_limit: unlimited,
        max_topic_members: members,
        ..Limits::default()
    }
}

/// A peer key per index, in an order unrelated to the index so key order and join order differ.
fn peer(index: usize) -> Vec<u8> {
    let mixed = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed.to_be_bytes().iter().cycle().take(32).copied().collect()
}

/// Applies the swarm events in `frames` (on stream `stream`) to what a client was told.
fn apply(told: &mut BTreeSet<Vec<u8>>, frames: &[Vec<u8>], stream: i32) {
    for frame in frames {
        let message = RpcMessage::decode(frame.as_slice()).expect("the server writes valid frames");
        let Some(rpc_message::Content::Response(response)) = message.content else { continue };
        let Some((id, event)) = swarm_event_of(&response) else { continue };
        assert_eq!(id, stream, "events come on the joined stream");
        match event {
            swarm_event::Event::PeerAvailable(available) => {
                told.insert(available.peer);
            }
            swarm_event::Event::PeerLeft(left) => {
                told.remove(&left.peer);
            }
        }
    }
}

fn frames(handled: Handled) -> Vec<Vec<u8>> {
    match handled {
        Handled::Frames(frames) => frames,
        Handled::Closed => panic!("a well-formed frame closed its connection"),
    }
}

/// Runs joins and leaves of `peers` peers (one connection each) through the server and through
/// the model with the same seed, and checks after every step that each member was told exactly
/// the peers the model introduced it to.
fn server_matches_the_model(view: IntroductionView, peers: usize, steps: usize) {
    let mut harness = Harness::new(peers, AuthPolicy::Off, limits(view, peers));
    let mut model = Model::new(view.view, SEED).everyone_up_to(view.everyone_up_to);
    let topic = vec![7u8; 32];
    let mut told: Vec<Option<BTreeSet<Vec<u8>>>> = vec![None; peers];
    let mut stream = vec![0i32; peers];
    let mut draw = 1u64;
    for step in 0..steps {
        draw = draw.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        // Joins outnumber leaves until the topic is well above the view.
        let conn = (draw >> 33) as usize % peers;
        let id = step as i32;
        if told[conn].is_some() && (step > peers || (draw >> 20).is_multiple_of(4)) {
            frames(harness.handle(conn, &ClientFrame::StreamClose { id: stream[conn] }.encode()));
            model.leave(&peer(conn));
            told[conn] = None;
        } else if told[conn].is_none() {
            let join = ClientFrame::Join { id, topic: topic.clone(), peer: peer(conn) };
            let mut joined = BTreeSet::new();
            apply(&mut joined, &frames(harness.handle(conn, &join.encode())), id);
            let introduced = model.join(peer(conn));
            assert!(joined.len() <= view.view.max(view.everyone_up_to), "a newcomer meets at most the view");
            assert_eq!(joined.len(), introduced.len());
            told[conn] = Some(joined);
            stream[conn] = id;
        }
        for (conn, told) in told.iter_mut().enumerate() {
            if let Some(told) = told {
                apply(told, &frames(harness.drain(conn)), stream[conn]);
                let expected: BTreeSet<Vec<u8>> = model.known(&peer(conn)).cloned().collect();
                assert_eq!(*told, expected, "step {step}: peer {conn} was told what the model introduced");
            }
        }
    }
    assert!(model.len() > view.view, "the run went past the view");
}

#[test]
fn the_server_introduces_as_the_model_does_through_joins_and_leaves() {
    server_matches_the_model(IntroductionView::new(8, 0), 80, 600);
}

#[test]
fn below_the_threshold_everyone_meets_everyone_and_above_it_the_view_applies() {
    server_matches_the_model(IntroductionView::new(4, 24), 60, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_each_meet_at_most_the_view_and_the_introductions_connect_them() {
    const CLIENTS: usize = 2_000;
    const VIEW: usize = 32;
    rlimit::increase_nofile_limit(3 * CLIENTS as u64).expect("the fd limit can be raised");
    let view = IntroductionView::new(VIEW, 0);
    let server = server_with(Config::default().with_limits(limits(view, CLIENTS))).await;
    let topic = key();
    let mut model = Model::new(VIEW, SEED);
    let mut tasks = JoinSet::new();
    let mut views = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..CLIENTS {
        let me = key();
        let mut client = RawClient::connect(&server.url()).await;
        client.join(0, topic, me).await;
        client.expect_ready(0).await;
        model.join(me.as_bytes().to_vec());
        keys.push(me.as_bytes().to_vec());
        let (told_tx, told) = watch::channel(BTreeSet::new());
        tasks.spawn(async move {
            while let Received::Response(response) = client.recv().await {
                let Some((0, event)) = swarm_event_of(&response) else { panic!("unexpected {response:?}") };
                let swarm_event::Event::PeerAvailable(available) = event else {
                    panic!("nobody left, yet a client was told a peer left")
                };
                told_tx.send_modify(|told| {
                    told.insert(available.peer);
                });
            }
        });
        views.push(told);
    }
    // Every client ends up told exactly the peers the model introduced it to.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    for (index, told) in views.iter_mut().enumerate() {
        let expected: BTreeSet<Vec<u8>> = model.known(&keys[index]).cloned().collect();
        tokio::time::timeout_at(deadline, told.wait_for(|told| *told == expected))
            .await
            .unwrap_or_else(|_| panic!("client {index} was never told what the model introduced"))
            .expect("the client's task keeps its view");
    }
    tasks.abort_all();
    let order: HashMap<&Vec<u8>, usize> = keys.iter().enumerate().map(|(i, key)| (key, i)).collect();
    let graph: Vec<Vec<usize>> =
        views.iter().map(|told| told.borrow().iter().map(|peer| order[peer]).collect()).collect();
    // Nobody leaves, so the earlier peers a client knows are exactly those it met on joining.
    for (index, known) in graph.iter().enumerate() {
        let met = known.iter().filter(|other| **other < index).count();
        assert!(met <= VIEW, "client {index} met {met} peers on joining, more than the view");
    }
    let introductions: usize = graph.iter().map(Vec::len).sum();
    assert!(
        introductions < CLIENTS * 4 * VIEW,
        "{introductions} introductions: far fewer than everyone-to-everyone's {}",
        CLIENTS * (CLIENTS - 1)
    );
    assert!(connected(&graph), "the introductions form one connected graph");
}

/// Whether every client can be reached from the first through introductions.
fn connected(graph: &[Vec<usize>]) -> bool {
    let mut seen = vec![false; graph.len()];
    let mut stack = vec![0];
    seen[0] = true;
    while let Some(at) = stack.pop() {
        for &next in &graph[at] {
            if !seen[next] {
                seen[next] = true;
                stack.push(next);
            }
        }
    }
    seen.iter().all(|seen| *seen)
}
