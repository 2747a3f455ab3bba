//! Two mesh peers in one swarm over the `tcp+noise` transport exchange gossip each way; a peer on
//! plain TCP in the same swarm never gets a connection to them.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mesh::{Any, DiscoveryKey, Keypair, Node, topology::FullyConnected};
use mesh_transport::{TransportFactory, noise::NoiseTcpTransportFactory, tcp::TcpTransportFactory};

const PATIENCE: Duration = Duration::from_secs(30);

fn text(value: &str) -> Any {
    Any { type_url: "test.Text".into(), value: value.as_bytes().to_vec() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_crosses_a_tcp_noise_swarm_each_way() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let node = |transport: fn(&Keypair) -> Arc<dyn TransportFactory>| {
        let key = Keypair::generate();
        let builder = Node::builder().signal([server.url()]).key(key.clone()).transport(transport(&key));
        async move { builder.spawn().await.unwrap() }
    };
    let noise =
        |key: &Keypair| -> Arc<dyn TransportFactory> { Arc::new(NoiseTcpTransportFactory::new(key.clone())) };
    let (alice, bob) = (node(noise).await, node(noise).await);
    let (a, b) =
        (alice.join(topic, FullyConnected).await.unwrap(), bob.join(topic, FullyConnected).await.unwrap());
    let (mut at_alice, mut at_bob) = (a.gossip().subscribe("chat"), b.gossip().subscribe("chat"));
    tokio::time::timeout(PATIENCE, async {
        a.gossip().watch_peers().wait_for(|peers| peers.len() == 1).await.unwrap();
        b.gossip().watch_peers().wait_for(|peers| peers.len() == 1).await.unwrap();
    })
    .await
    .expect("alice and bob connected over tcp+noise");

    a.gossip().post("chat", text("hello from alice"));
    b.gossip().post("chat", text("hello from bob"));
    let (to_bob, to_alice) =
        tokio::time::timeout(PATIENCE, async { tokio::join!(at_bob.recv(), at_alice.recv()) })
            .await
            .expect("both messages arrived");
    let (to_bob, to_alice) = (to_bob.unwrap(), to_alice.unwrap());
    assert_eq!((to_bob.origin, to_bob.payload.value), (alice.peer(), b"hello from alice".to_vec()));
    assert_eq!((to_alice.origin, to_alice.payload.value), (bob.peer(), b"hello from bob".to_vec()));

    // A peer on plain TCP speaks no Noise: it joins the swarm but connects to neither.
    let plain = |_: &Keypair| -> Arc<dyn TransportFactory> { Arc::new(TcpTransportFactory::default()) };
    let carol = node(plain).await;
    let c = carol.join(topic, FullyConnected).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.gossip().watch_peers().borrow().is_empty(), "carol connected to nobody");
    assert_eq!(a.gossip().watch_peers().borrow().len(), 1, "alice is connected to bob only");
}
