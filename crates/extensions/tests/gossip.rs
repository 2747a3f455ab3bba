//! Gossip between Teleport connections: direct, along a chain, around a cycle, and across an MMST
//! swarm of 50 peers on the in-memory transport, flooding and in tree mode on the same swarm.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use mesh::TeleportProtocol;
use mesh_extensions::gossip::{
    Announcement, EXTENSION, Gossip, GossipConfig, GossipMode, GossipStats, Subscription,
};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Any;
use mesh_signal::MemoryNetwork;
use mesh_swarm::{NetworkManager, SwarmConfig, topology::Mmst};
use mesh_teleport::{Params, Teleport};
use mesh_transport::memory::MemoryTransportFactory;
use tokio::sync::mpsc;

/// How long anything that should happen may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn gossip() -> Gossip {
    Gossip::new(Keypair::generate().public(), GossipConfig::default())
}

/// Connects `a` and `b` over an in-memory pipe; the connection lives as long as the Teleports.
fn link(a: &Gossip, b: &Gossip) -> [Teleport; 2] {
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let a_end = Teleport::new(a_io, Params::new(true, a.local_peer(), b.local_peer()));
    let b_end = Teleport::new(b_io, Params::new(false, b.local_peer(), a.local_peer()));
    a_end.add_extension(EXTENSION, a.extension()).unwrap();
    b_end.add_extension(EXTENSION, b.extension()).unwrap();
    [a_end, b_end]
}

/// Waits until `gossip` has gossip connections with exactly `peers`.
async fn wait_peers(gossip: &Gossip, peers: &[&Gossip]) {
    let mut expected: Vec<PublicKey> = peers.iter().map(|g| g.local_peer()).collect();
    expected.sort();
    let mut watch = gossip.watch_peers();
    tokio::time::timeout(PATIENCE, watch.wait_for(|current| *current == expected))
        .await
        .expect("the gossip connections open")
        .unwrap();
}

async fn next(subscription: &mut Subscription) -> Announcement {
    tokio::time::timeout(PATIENCE, subscription.recv()).await.expect("a message arrives").unwrap()
}

fn text(payload: &str) -> Any {
    Any { type_url: "example.Text".into(), value: payload.as_bytes().to_vec() }
}

#[tokio::test]
async fn a_message_crosses_a_chain_of_three_once_each_way() {
    let (a, b, c) = (gossip(), gossip(), gossip());
    let _ab = link(&a, &b);
    let _bc = link(&b, &c);
    wait_peers(&b, &[&a, &c]).await;
    wait_peers(&a, &[&b]).await;
    wait_peers(&c, &[&b]).await;
    let (mut at_a, mut at_b, mut at_c) = (a.subscribe("chat"), b.subscribe("chat"), c.subscribe("chat"));
    let mut other_channel = c.subscribe("other");

    let id = a.post("chat", text("from a"));
    let seen_by_b = next(&mut at_b).await;
    let seen_by_c = next(&mut at_c).await;
    assert_eq!((seen_by_b.id, seen_by_b.origin, seen_by_b.via), (id, a.local_peer(), a.local_peer()));
    assert_eq!((seen_by_c.id, seen_by_c.origin, seen_by_c.via), (id, a.local_peer(), b.local_peer()));
    assert_eq!(seen_by_c.payload, text("from a"));

    c.post("chat", text("from c"));
    assert_eq!(next(&mut at_a).await.origin, c.local_peer());
    assert_eq!(next(&mut at_b).await.origin, c.local_peer());

    // Nothing came twice, nothing reached another channel, and the origin never heard itself.
    assert!(at_a.try_recv().is_none() && at_b.try_recv().is_none() && at_c.try_recv().is_none());
    assert!(other_channel.try_recv().is_none());
    assert_eq!((b.stats().received, b.stats().duplicates), (2, 0));
}

#[tokio::test]
async fn around_a_cycle_every_peer_delivers_each_message_once() {
    let peers: Vec<Gossip> = (0..4).map(|_| gossip()).collect();
    let _links: Vec<[Teleport; 2]> = (0..4).map(|i| link(&peers[i], &peers[(i + 1) % 4])).collect();
    for i in 0..4 {
        wait_peers(&peers[i], &[&peers[(i + 3) % 4], &peers[(i + 1) % 4]]).await;
    }
    let mut subscriptions: Vec<Subscription> = peers.iter().map(|p| p.subscribe("chat")).collect();
    let id = peers[0].post("chat", text("round"));
    for subscription in &mut subscriptions[1..] {
        assert_eq!(next(subscription).await.id, id);
    }
    // Peer 2 hears it from both sides: the second copy counts as a duplicate and is not delivered.
    let opposite = &peers[2];
    let mut watch = opposite.watch_stats();
    let stats = *tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|s| s.received + s.duplicates >= 2 && s.delivered >= 1),
    )
    .await
    .expect("the second copy arrives")
    .unwrap();
    assert_eq!((stats.received, stats.duplicates, stats.delivered), (1, 1, 1));
    assert!(subscriptions.iter_mut().all(|s| s.try_recv().is_none()));
}

/// Ring edges of `keys` in key order: each peer and its successor.
fn ring(keys: &[PublicKey]) -> BTreeSet<(PublicKey, PublicKey)> {
    let mut sorted = keys.to_vec();
    sorted.sort();
    (0..sorted.len()).map(|i| edge(sorted[i], sorted[(i + 1) % sorted.len()])).collect()
}

fn edge(a: PublicKey, b: PublicKey) -> (PublicKey, PublicKey) {
    (a.min(b), a.max(b))
}

/// Posts one message on `channel` from each of `origins` in turn, each only once every other
/// peer delivered the one before; checks that every peer delivered each exactly once.
async fn post_in_turn(gossips: &[&Gossip], subscriptions: &mut [Subscription], origins: usize) {
    for (origin, gossip) in gossips.iter().enumerate().take(origins) {
        let id = gossip.post("chat", text("hello swarm"));
        for (index, subscription) in subscriptions.iter_mut().enumerate().filter(|(i, _)| *i != origin) {
            let message = next(subscription).await;
            assert_eq!(message.id, id, "peer {index} delivered another message or one twice");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_an_mmst_swarm_of_fifty_every_peer_receives_every_message_once_and_tree_mode_sends_fewer_copies()
 {
    const PEERS: usize = 50;
    const ORIGINS: usize = 20;
    let network = MemoryNetwork::new();
    let transports = Arc::new(MemoryTransportFactory::default());
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut peers = Vec::new();
    for index in 0..PEERS {
        let own = Keypair::generate().public();
        // Two gossips over the same connections: DXOS's flooding, and tree mode under another name.
        let flood = Gossip::new(own, GossipConfig::default());
        let tree = Gossip::new(
            own,
            GossipConfig::default().with_name("mesh.test.tree-gossip").with_mode(GossipMode::Tree),
        );
        let mut watch = flood.watch_peers();
        let changed = changed.clone();
        tokio::spawn(async move { while watch.changed().await.is_ok() && changed.send(()).is_ok() {} });
        let (for_flood, for_tree) = (flood.clone(), tree.clone());
        let protocol = TeleportProtocol::new(move |teleport| {
            for_flood.attach(teleport).unwrap();
            for_tree.attach(teleport).unwrap();
        });
        let manager =
            NetworkManager::new(own, Arc::new(network.client()), transports.clone(), SwarmConfig::default())
                .await
                .unwrap();
        let swarm = manager.join(topic, Box::new(Mmst::new(index as u64)), Arc::new(protocol)).await.unwrap();
        peers.push((flood, tree, manager, swarm));
    }
    // Once every ring link is up the swarm is connected, and MMST never drops a ring link.
    let keys: Vec<PublicKey> = peers.iter().map(|(g, ..)| g.local_peer()).collect();
    let wanted = ring(&keys);
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let links: BTreeSet<_> = peers
                .iter()
                .flat_map(|(g, ..)| g.peers().into_iter().map(|p| edge(g.local_peer(), p)))
                .collect();
            if wanted.is_subset(&links) {
                return;
            }
            changes.recv().await;
        }
    })
    .await
    .expect("the ring of the MMST swarm forms");

    let floods: Vec<&Gossip> = peers.iter().map(|(flood, ..)| flood).collect();
    let mut subscriptions: Vec<Subscription> = floods.iter().map(|g| g.subscribe("chat")).collect();
    post_in_turn(&floods, &mut subscriptions, ORIGINS).await;
    let trees: Vec<&Gossip> = peers.iter().map(|(_, tree, ..)| tree).collect();
    let mut subscriptions: Vec<Subscription> = trees.iter().map(|g| g.subscribe("chat")).collect();
    post_in_turn(&trees, &mut subscriptions, ORIGINS).await;

    let total = |gossips: &[&Gossip]| {
        gossips.iter().map(|g| g.stats()).fold(GossipStats::default(), |mut sum, stats| {
            sum.received += stats.received;
            sum.duplicates += stats.duplicates;
            sum.dropped += stats.dropped;
            sum
        })
    };
    let (flood, tree) = (total(&floods), total(&trees));
    println!(
        "duplicate copies for {ORIGINS} messages: flooding {}, tree mode {}",
        flood.duplicates, tree.duplicates
    );
    let messages = (ORIGINS * (PEERS - 1)) as u64;
    assert_eq!((flood.received, flood.dropped), (messages, 0), "{flood:?}");
    assert_eq!((tree.received, tree.dropped), (messages, 0), "{tree:?}");
    // Copies still on their way when the last delivery happened may add to the counts, never
    // take from them: flooding's duplicates are at least what they were.
    assert!(
        tree.duplicates * 2 < flood.duplicates,
        "tree mode sent {} duplicate copies against flooding's {}",
        tree.duplicates,
        flood.duplicates
    );
}
