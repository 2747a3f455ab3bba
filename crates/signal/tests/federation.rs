//! Signal servers federated through a real three-node NATS cluster on loopback, with Rust clients
//! and real DXOS 0.8.3 clients spread over them.

mod common;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{dxos::DxosPeer, nats::NatsCluster, *};
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_signal::{Event, Manager, Signal};
use mesh_signal_server::{Config, Federation, Server};

/// How long a dead server's peers may linger on the others.
const GHOST_LIMIT: Duration = Duration::from_secs(5);

/// A NATS cluster and a signal server on each of its nodes (each lists the others' nodes after
/// its own, to move to when its node fails).
struct Federated {
    nats: NatsCluster,
    servers: Vec<Option<Server>>,
}

impl Federated {
    async fn start(n: usize) -> Self {
        Self::start_with(n, |federation| federation).await
    }

    async fn start_with(n: usize, configure: impl Fn(Federation) -> Federation) -> Self {
        let nats = NatsCluster::start(n).await;
        let mut servers = Vec::new();
        for index in 0..n {
            let federation = configure(Federation::new(nats.urls_from(index)));
            let server =
                Server::start(Config::default().with_federation(Some(federation))).await.expect("starts");
            servers.push(Some(server));
        }
        let federated = Self { nats, servers };
        federated.wait_connected(n as u64 - 1).await;
        federated
    }

    fn url(&self, index: usize) -> String {
        self.servers[index].as_ref().expect("server running").url()
    }

    fn server(&self, index: usize) -> &Server {
        self.servers[index].as_ref().expect("server running")
    }

    /// Waits until every running server has NATS and hears from `others` other servers.
    async fn wait_connected(&self, others: u64) {
        for server in self.servers.iter().flatten() {
            eventually(|| {
                let stats = server.stats();
                stats.federation_connected && stats.federation_servers == others
            })
            .await;
        }
    }

    /// Kills server `index` as a crash would: its sockets close, and it says nothing to the others.
    async fn kill(&mut self, index: usize) {
        self.servers[index].take().expect("server running").abort().await;
    }
}

/// Waits until `done` holds. The servers' statistics change without an event to await, so they
/// are polled.
async fn eventually(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the servers settled in time");
}

/// A Rust peer on the servers at `urls` (several through a manager, which joins and sends
/// through each), in `topic`.
async fn rust_peer(urls: &[String], topic: DiscoveryKey) -> RustPeer {
    let manager = Manager::connect(urls.iter().cloned()).expect("valid URLs");
    RustPeer::join_through(Arc::new(manager), peer(), topic).await
}

/// Waits for `peer`'s next message and checks it is `text`.
async fn receives(peer: &mut RustPeer, text: &str) {
    assert_eq!(peer.receive().await.payload.value, text.as_bytes(), "the next message is {text:?}");
}

/// Waits until the DXOS peer was told of every one of `peers`, in any order.
async fn dxos_sees(peer: &mut DxosPeer, topic: DiscoveryKey, peers: impl IntoIterator<Item = PublicKey>) {
    let topic = topic.to_hex();
    let mut missing: HashSet<String> = peers.into_iter().map(|peer| peer.to_hex()).collect();
    peer.wait(|event| {
        if event["event"] == "peer-available" && event["topic"] == topic.as_str() {
            missing.remove(event["peer"].as_str().unwrap_or_default());
        }
        missing.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_dxos_clients_on_three_servers_see_every_member_and_exchange_messages() {
    let federated = Federated::start(3).await;
    let topic = topic();
    let mut rust = Vec::new();
    let mut dxos = Vec::new();
    for index in 0..3 {
        rust.push(rust_peer(&[federated.url(index)], topic).await);
        let mut peer = DxosPeer::spawn(&[federated.url(index)]).await;
        peer.join(topic).await;
        dxos.push(peer);
    }
    let everyone: Vec<PublicKey> =
        rust.iter().map(|peer| peer.key).chain(dxos.iter().map(|peer| peer.key)).collect();
    for peer in &mut rust {
        let me = peer.key;
        wait_all_available(&mut peer.events, topic, everyone.iter().copied().filter(|key| *key != me)).await;
    }
    for peer in &mut dxos {
        let me = peer.key;
        dxos_sees(peer, topic, everyone.iter().copied().filter(|key| *key != me)).await;
    }
    // Each message crosses servers: Rust to Rust, Rust to DXOS, DXOS to Rust, DXOS to DXOS.
    rust[0].send(rust[1].key, "rust 0 to rust 1").await;
    receives(&mut rust[1], "rust 0 to rust 1").await;
    rust[1].send(dxos[2].key, "rust 1 to dxos 2").await;
    dxos[2].wait_message(rust[1].key, "rust 1 to dxos 2").await;
    dxos[0].send(rust[2].key, "dxos 0 to rust 2").await;
    receives(&mut rust[2], "dxos 0 to rust 2").await;
    dxos[0].wait_delivered("dxos 0 to rust 2").await;
    let (dxos_0, dxos_1) = (dxos[0].key, dxos[1].key);
    dxos[1].send(dxos_0, "dxos 1 to dxos 0").await;
    dxos[0].wait_message(dxos_1, "dxos 1 to dxos 0").await;
    dxos[1].wait_delivered("dxos 1 to dxos 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_peers_leave_everywhere_within_5_s_and_its_clients_carry_on_elsewhere() {
    let mut federated = Federated::start(3).await;
    let topic = topic();
    // Only on server 0, on servers 0 and 1, and the watchers on servers 1 and 2.
    let only_there = rust_peer(&[federated.url(0)], topic).await;
    let mut both = rust_peer(&[federated.url(0), federated.url(1)], topic).await;
    let mut dxos_both = DxosPeer::spawn(&[federated.url(0), federated.url(1)]).await;
    dxos_both.join(topic).await;
    let mut watcher = rust_peer(&[federated.url(2)], topic).await;
    let mut dxos_watcher = DxosPeer::spawn(&[federated.url(1)]).await;
    dxos_watcher.join(topic).await;
    wait_all_available(
        &mut watcher.events,
        topic,
        [only_there.key, both.key, dxos_both.key, dxos_watcher.key],
    )
    .await;
    dxos_sees(&mut dxos_watcher, topic, [only_there.key, both.key, dxos_both.key, watcher.key]).await;

    let killed = Instant::now();
    federated.kill(0).await;
    wait_left(&mut watcher.events, topic, only_there.key).await;
    dxos_watcher.wait_left(topic, only_there.key).await;
    let ghost = killed.elapsed();
    eprintln!("a dead server's peer left everywhere {ghost:?} after the crash");
    assert!(ghost < GHOST_LIMIT, "a dead server's peer lingered for {ghost:?}");
    while let Ok(event) = watcher.events.try_recv() {
        let left = matches!(event, Event::PeerLeft { peer, .. } if peer == both.key || peer == dxos_both.key);
        assert!(!left, "a peer that also used server 1 was reported gone: {event:?}");
    }
    // Those that listed server 1 too are still there, and still reachable.
    assert!(federated.server(2).stats().members >= 4, "the peers on server 1 stayed");
    watcher.send(both.key, "after the crash").await;
    receives(&mut both, "after the crash").await;
    dxos_both.send(watcher.key, "dxos after the crash").await;
    dxos_both.wait_delivered("dxos after the crash").await;
    receives(&mut watcher, "dxos after the crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_goes_on_when_a_nats_node_dies() {
    let mut federated = Federated::start(3).await;
    let topic = topic();
    let mut on_0 = rust_peer(&[federated.url(0)], topic).await;
    let mut on_1 = rust_peer(&[federated.url(1)], topic).await;
    wait_all_available(&mut on_0.events, topic, [on_1.key]).await;
    // Server 0's node dies: its client moves to another node of the cluster.
    federated.nats.kill(0).await;
    on_1.send(on_0.key, "through another node").await;
    receives(&mut on_0, "through another node").await;
    on_0.send(on_1.key, "and back").await;
    receives(&mut on_1, "and back").await;
    federated.wait_connected(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_local_relaying_goes_on_and_the_federation_resumes_when_nats_returns() {
    let mut federated = Federated::start(3).await;
    let topic = topic();
    let mut local_a = rust_peer(&[federated.url(0)], topic).await;
    let mut local_b = rust_peer(&[federated.url(0)], topic).await;
    let mut remote = rust_peer(&[federated.url(1)], topic).await;
    wait_all_available(&mut local_a.events, topic, [local_b.key, remote.key]).await;
    wait_all_available(&mut remote.events, topic, [local_a.key, local_b.key]).await;
    for node in 0..3 {
        federated.nats.kill(node).await;
    }
    eventually(|| !federated.server(0).stats().federation_connected).await;
    // The other server's peer goes; the local ones keep talking.
    wait_left(&mut local_a.events, topic, remote.key).await;
    wait_left(&mut remote.events, topic, local_a.key).await;
    local_a.send(local_b.key, "while NATS is down").await;
    receives(&mut local_b, "while NATS is down").await;
    assert!(federated.server(0).metrics_text().contains("mesh_signal_federation_connected 0"));

    for node in 0..3 {
        federated.nats.restart(node).await;
    }
    federated.wait_connected(2).await;
    wait_all_available(&mut local_a.events, topic, [remote.key]).await;
    wait_all_available(&mut remote.events, topic, [local_a.key, local_b.key]).await;
    local_b.send(remote.key, "NATS is back").await;
    receives(&mut remote, "NATS is back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_two_servers_reaches_a_third_servers_client_once() {
    // A window far longer than the copies' gap on any machine, however loaded: this test is about
    // the dropping, not the window's default.
    let federated = Federated::start_with(3, |federation| federation.with_duplicate_window(PATIENCE)).await;
    let topic = topic();
    // The sender uses servers 0 and 1, and sends through both; the recipient is on server 2.
    let mut sender = rust_peer(&[federated.url(0), federated.url(1)], topic).await;
    let recipient = peer();
    let client = mesh_signal::Client::connect(federated.url(2)).expect("valid URL");
    let mut events = client.events();
    client.subscribe(recipient).await.expect("inbox opens");
    client.join(topic, recipient).await.expect("joins");
    wait_available(&mut sender.events, topic, recipient).await;

    sender.signal.send(message(sender.key, recipient, "once")).await.expect("sent");
    wait_message(&mut events, recipient).await;
    eventually(|| federated.server(2).stats().federation_duplicates == 1).await;
    // The copy was dropped at the server; a later message proves nothing else was on its way.
    sender.signal.send(message(sender.key, recipient, "after")).await.expect("sent");
    let after = wait_message(&mut events, recipient).await;
    assert_eq!(after.payload.value, b"after", "the copy of the first message never reached the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_says_goodbye_and_its_peers_leave_at_once() {
    let timeout = Duration::from_secs(10);
    let mut federated =
        Federated::start_with(2, |federation| federation.with_timing(Duration::from_secs(1), timeout)).await;
    let topic = topic();
    let leaving = rust_peer(&[federated.url(0)], topic).await;
    let mut watcher = rust_peer(&[federated.url(1)], topic).await;
    wait_all_available(&mut watcher.events, topic, [leaving.key]).await;
    let stopped = Instant::now();
    let server = federated.servers[0].take().expect("server running");
    server.shutdown(Duration::from_secs(5)).await;
    wait_left(&mut watcher.events, topic, leaving.key).await;
    // Long before the other server would have given it up for silent.
    assert!(stopped.elapsed() < timeout, "the peer left only after {:?}", stopped.elapsed());
    eventually(|| federated.server(1).stats().federation_servers == 0).await;
    assert!(stopped.elapsed() < timeout, "the server was given up for silent, not for its goodbye");
}
