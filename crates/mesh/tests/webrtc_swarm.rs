//! Two mesh peers in one swarm over the WebRTC transport: each shares a 10 MiB blob and fetches
//! the other's, so data crosses both ways at once and arrives intact (verified piece by piece
//! against its hash), and when one leaves, the other sees the connection close.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mesh::{DiscoveryKey, Keypair, Node, topology::FullyConnected};
use mesh_swarm::Event;
use mesh_transport::webrtc::WebRtcTransportFactory;

const PATIENCE: Duration = Duration::from_secs(60);
const SIZE: u32 = 10 << 20;

fn data(seed: u32) -> Vec<u8> {
    (0..SIZE).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_cross_a_webrtc_swarm_each_way_and_a_leave_closes_it() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let node = || async {
        Node::builder()
            .signal([server.url()])
            .transport(Arc::new(WebRtcTransportFactory::default()))
            .spawn()
            .await
            .unwrap()
    };
    let (alice, bob) = (node().await, node().await);
    let (a, b) =
        (alice.join(topic, FullyConnected).await.unwrap(), bob.join(topic, FullyConnected).await.unwrap());
    let mut b_events = b.events();

    let (for_bob, for_alice) = (data(1), data(2));
    let (to_bob, to_alice) = (a.blobs().add(for_bob.clone()), b.blobs().add(for_alice.clone()));
    let (at_bob, at_alice) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(b.blobs().start_fetch(to_bob).finished(), a.blobs().start_fetch(to_alice).finished())
    })
    .await
    .expect("both blobs crossed in time");
    assert!(at_bob.unwrap().data() == for_bob.as_slice(), "alice's 10 MiB arrived intact at bob");
    assert!(at_alice.unwrap().data() == for_alice.as_slice(), "bob's 10 MiB arrived intact at alice");

    a.leave().await.unwrap();
    let alice_key = alice.peer();
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Disconnected { peer, .. } = b_events.recv().await.unwrap()
                && peer == alice_key
            {
                return;
            }
        }
    })
    .await
    .expect("bob saw the connection to alice close");
}
