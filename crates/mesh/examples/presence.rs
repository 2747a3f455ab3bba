//! Three nodes join one swarm; the first prints who comes online, then who goes offline when one
//! of the others leaves.
//!
//! `cargo run -p mesh --example presence`

use std::time::Duration;

use mesh::{
    DiscoveryKey, JoinOptions, Keypair, Node,
    presence::{PresenceConfig, PresenceEvent},
    topology::FullyConnected,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let options = JoinOptions::default()
        .presence(PresenceConfig::default().with_timing(Duration::from_millis(500), Duration::from_secs(2)));
    let mut swarms = Vec::new();
    for _ in 0..3 {
        let node = Node::builder().signal([server.url()]).spawn().await?;
        swarms.push((node.join_with(topic, FullyConnected, options.clone()).await?, node));
    }
    let (watcher, _) = &swarms[0];
    let mut events = watcher.presence().events();
    let mut online = 0;
    while online < 2 {
        if let PresenceEvent::Online(info) = events.recv().await? {
            println!("{} is online, connected to {} peers", info.peer.short(), info.connections.len());
            online += 1;
        }
    }
    let (leaving, node) = swarms.pop().expect("three swarms");
    let gone = node.peer();
    leaving.leave().await?;
    loop {
        if let PresenceEvent::Offline(peer) = events.recv().await?
            && peer == gone
        {
            println!("{} went offline", peer.short());
            return Ok(());
        }
    }
}
