//! The network model of the virtual-time [`Sim`] that `cargo xtask simulate` runs on: seeded
//! latency and loss, partitions and heals, and the bounded signaling view.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_swarm::{
    Swarm, SwarmConfig,
    sim::{Latency, Partition, Sim, SimConfig, model},
    topology::Mmst,
};

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&PublicKey::from_bytes([0xee; 32]))
}

/// `n` distinct keys spread over the key space.
fn keys(n: u32, salt: u32) -> Vec<PublicKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[4..8].copy_from_slice(&salt.to_le_bytes());
            PublicKey::from_bytes(DiscoveryKey::from_party(&PublicKey::from_bytes(seed)).to_bytes())
        })
        .collect()
}

fn join(sim: &mut Sim, key: PublicKey) {
    let seed = model::key_hash(3, &key);
    sim.join(Swarm::new(key, topic(), Box::new(Mmst::new(seed)), SwarmConfig::default(), seed));
}

fn model_config(view: Option<usize>) -> SimConfig {
    SimConfig {
        latency: Latency::Uniform { min: Duration::from_millis(30), max: Duration::from_millis(70) },
        loss: 0.05,
        view,
        seed: 11,
        ..SimConfig::default()
    }
}

/// The number of components of the graph of connections both ends see as up.
fn components(connections: &BTreeMap<PublicKey, Vec<PublicKey>>) -> usize {
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for start in connections.keys() {
        if !seen.insert(*start) {
            continue;
        }
        count += 1;
        let mut stack = vec![*start];
        while let Some(node) = stack.pop() {
            for next in connections.get(&node).into_iter().flatten() {
                let mutual = connections.get(next).is_some_and(|back| back.contains(&node));
                if mutual && seen.insert(*next) {
                    stack.push(*next);
                }
            }
        }
    }
    count
}

#[test]
fn the_same_seed_gives_the_same_run_with_jitter_and_loss() {
    let run = || {
        let mut sim = Sim::new(model_config(Some(12)), topic(), Instant::now());
        for key in keys(30, 0) {
            join(&mut sim, key);
        }
        sim.run_for(Duration::from_secs(60));
        let events: Vec<String> =
            sim.events().iter().map(|(_, peer, event)| format!("{peer:?} {event:?}")).collect();
        (events, sim.connections(), sim.stats())
    };
    let first = run();
    assert_eq!(first, run());
    assert!(first.2.retried > 0, "some messages were lost and retried: {:?}", first.2);
}

#[test]
fn partition_then_heal_reconverges() {
    let mut sim = Sim::new(model_config(None), topic(), Instant::now());
    let keys = keys(40, 1);
    for key in &keys {
        join(&mut sim, *key);
    }
    sim.run_for(Duration::from_secs(90));
    assert_eq!(components(&sim.connections()), 1, "one swarm before the split");

    let partition = Partition { groups: 2, salt: 5 };
    sim.set_partition(Some(partition));
    sim.run_for(Duration::from_secs(30));
    let connections = sim.connections();
    for (peer, peers) in &connections {
        assert!(peers.iter().all(|p| sim.reachable(peer, p)), "no connection crosses the partition");
    }
    assert!(components(&connections) >= 2, "split in two or more");

    sim.set_partition(None);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(components(&sim.connections()), 1, "one swarm again after the heal");
}

#[test]
fn a_bounded_view_under_churn_stays_connected_and_bounded() {
    let mut sim = Sim::new(model_config(Some(8)), topic(), Instant::now());
    let keys = keys(80, 2);
    for key in &keys {
        join(&mut sim, *key);
    }
    sim.run_for(Duration::from_secs(120));
    for round in 0..3 {
        let leaving: Vec<PublicKey> = keys.iter().copied().skip(round * 3).step_by(9).collect();
        for (i, key) in leaving.iter().enumerate() {
            if i % 2 == 0 { sim.crash(*key) } else { sim.leave(*key) }
        }
        sim.run_for(Duration::from_secs(60));
        for key in &leaving {
            join(&mut sim, *key);
        }
        sim.run_for(Duration::from_secs(120));
        let connections = sim.connections();
        assert_eq!(components(&connections), 1, "round {round}: the swarm split");
        let max = connections.values().map(Vec::len).max().unwrap_or(0);
        assert!(max <= 5, "round {round}: a peer has {max} connections");
        let view = sim.swarm(&keys[0]).map(|s| s.connected().len()).unwrap_or(0);
        assert!(view <= 5);
    }
    let stats = sim.stats();
    assert!(stats.available < 80 * 80, "the view bounds the introductions: {stats:?}");
}
