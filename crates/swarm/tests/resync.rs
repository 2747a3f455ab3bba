//! A swarm that misses signaling events (its receiver fell more than the channel's capacity
//! behind) resynchronises from signaling's membership instead of keeping a stale view.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{Hello, manager};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_signal::{MemoryNetwork, Signal};
use mesh_swarm::{ConnectionState, Event, SwarmConfig, topology::Star};
use mesh_transport::memory::MemoryTransportFactory;
use tokio::sync::{broadcast, mpsc};

/// Whether the swarm starts a connection to `peer` within `window` of virtual time.
async fn tries_to_connect(
    events: &mut broadcast::Receiver<Event>,
    peer: PublicKey,
    window: Duration,
) -> bool {
    let attempt = async {
        loop {
            match events.recv().await {
                Ok(Event::State { peer: p, state: ConnectionState::Created, .. }) if p == peer => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    };
    tokio::time::timeout(window, attempt).await.is_ok()
}

/// The swarm is a leaf of a star whose centre is a peer nobody answers for, so it keeps trying to
/// reach the centre while signaling says it is there. The centre then leaves, and its PeerLeft is
/// lost in a burst of joins larger than the event channel: only a resync tells the swarm.
#[tokio::test(start_paused = true)]
async fn a_swarm_that_missed_a_peer_left_resynchronises_and_stops_trying_it() {
    let network = MemoryNetwork::new();
    let own = Keypair::generate().public();
    let transports = Arc::new(MemoryTransportFactory::default());
    let leaf = manager(own, Arc::new(network.client()), transports, SwarmConfig::default()).await;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let centre = Keypair::generate().public();
    let (hellos, _) = mpsc::unbounded_channel();
    let swarm = leaf.join(topic, Box::new(Star::new(centre)), Arc::new(Hello(hellos))).await.unwrap();
    let mut events = swarm.events();

    let others = network.client();
    others.join(topic, centre).await.unwrap();
    assert!(
        tries_to_connect(&mut events, centre, Duration::from_secs(30)).await,
        "the leaf tries its centre"
    );

    // No await yields in between: the swarm's task does not run until the burst is over.
    others.leave(topic, centre).await.unwrap();
    for _ in 0..5_000 {
        others.join(topic, Keypair::generate().public()).await.unwrap();
    }
    // Attempts under way when the burst came end within their timeouts; after that, none.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut events = swarm.events();
    assert!(
        !tries_to_connect(&mut events, centre, Duration::from_secs(120)).await,
        "a peer that left is not tried again"
    );
    drop(swarm);
}
