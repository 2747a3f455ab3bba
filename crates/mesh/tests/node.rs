//! The facade end to end: nodes started with the builder join one swarm through a real signal
//! server over TCP; gossip reaches every node, presence lists every node, a blob crosses, and an
//! extension of the user's own opens on every connection.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use mesh::{
    Any, DiscoveryKey, Extension, ExtensionContext, ExtensionError, JoinOptions, Keypair, Node, PublicKey,
    Swarm, presence::PresenceConfig, topology::FullyConnected,
};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

/// Reports each connection it opens on: (this peer, the remote).
struct Opened(mpsc::UnboundedSender<(PublicKey, PublicKey)>);

#[async_trait]
impl Extension for Opened {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let _ = self.0.send((ctx.local_peer(), ctx.remote_peer()));
        Ok(())
    }
}

#[tokio::test]
async fn nodes_share_gossip_presence_and_their_own_extension() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    let mut swarms: Vec<Swarm> = Vec::new();
    for _ in 0..3 {
        let node = Node::builder().signal([server.url()]).spawn().await.unwrap();
        let opened_tx = opened_tx.clone();
        let options = JoinOptions::default()
            .presence(
                PresenceConfig::default().with_timing(Duration::from_millis(200), Duration::from_secs(3)),
            )
            .extension("example.opened", move || Opened(opened_tx.clone()));
        swarms.push(node.join_with(topic, FullyConnected, options).await.unwrap());
        nodes.push(node);
    }
    let keys: Vec<PublicKey> = nodes.iter().map(Node::peer).collect();

    // The extension opened on both ends of all three connections.
    let mut pairs = BTreeSet::new();
    tokio::time::timeout(PATIENCE, async {
        while pairs.len() < 6 {
            pairs.insert(opened.recv().await.unwrap());
        }
    })
    .await
    .expect("the extension opens on every connection");

    // Presence lists the other two everywhere.
    for (index, swarm) in swarms.iter().enumerate() {
        let mut events = swarm.presence().events();
        let others: BTreeSet<PublicKey> = keys.iter().copied().filter(|k| *k != keys[index]).collect();
        tokio::time::timeout(PATIENCE, async {
            while swarm.presence().online().iter().map(|info| info.peer).collect::<BTreeSet<_>>() != others {
                let _ = events.recv().await;
            }
        })
        .await
        .expect("presence lists the other nodes");
    }

    // A gossip message reaches the other two.
    let mut subscriptions: Vec<_> = swarms.iter().map(|s| s.gossip().subscribe("chat")).collect();
    let id = swarms[0].gossip().post("chat", Any { type_url: "example.Text".into(), value: b"hi".to_vec() });
    for subscription in &mut subscriptions[1..] {
        let message = tokio::time::timeout(PATIENCE, subscription.recv()).await.unwrap().unwrap();
        assert_eq!((message.id, message.origin), (id, keys[0]));
    }

    // A blob added on one node is fetched, verified, by another.
    let hash = swarms[1].blobs().add(b"a blob for the swarm".repeat(1000));
    let blob = tokio::time::timeout(PATIENCE, swarms[2].blobs().fetch(hash)).await.unwrap().unwrap();
    assert_eq!(blob.hash(), hash);

    for swarm in swarms {
        swarm.leave().await.unwrap();
    }
}

#[tokio::test]
async fn a_node_without_signaling_is_refused() {
    let error = Node::builder().spawn().await.unwrap_err();
    assert!(matches!(error, mesh::Error::NoSignal), "{error}");
}
