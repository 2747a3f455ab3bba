//! Three nodes join one swarm through a signal server started here; one posts a line on gossip and
//! the others print it.
//!
//! `cargo run -p mesh --example gossip`

use mesh::{Any, DiscoveryKey, Keypair, Node, topology::FullyConnected};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let mut swarms = Vec::new();
    for _ in 0..3 {
        let node = Node::builder().signal([server.url()]).spawn().await?;
        swarms.push((node.join(topic, FullyConnected).await?, node));
    }
    let mut listeners = Vec::new();
    for (swarm, node) in &swarms[1..] {
        let mut chat = swarm.gossip().subscribe("chat");
        let me = node.peer().short();
        listeners.push(tokio::spawn(async move {
            if let Some(message) = chat.recv().await {
                println!(
                    "{me} got {:?} from {}",
                    String::from_utf8_lossy(&message.payload.value),
                    message.origin.short()
                );
            }
        }));
    }
    // Gossip reaches the peers connected when it is posted: wait until the first node is connected
    // to both others.
    let (first, _) = &swarms[0];
    first.gossip().watch_peers().wait_for(|peers| peers.len() == 2).await?;
    first.gossip().post("chat", Any { type_url: "example.Text".into(), value: b"hello, swarm".to_vec() });
    for listener in listeners {
        listener.await?;
    }
    Ok(())
}
