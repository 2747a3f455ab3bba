//! An extension of your own on every connection of a swarm: each side sends its name on a port
//! "greeting" and prints the other's.
//!
//! `cargo run -p mesh --example custom_extension`

use async_trait::async_trait;
use mesh::{
    DiscoveryKey, Extension, ExtensionContext, ExtensionError, JoinOptions, Keypair, Node,
    topology::FullyConnected,
};
use tokio::sync::mpsc;

/// Sends `name` and reports what the other side sent.
struct Greeting {
    name: String,
    heard: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Extension for Greeting {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("greeting", Some("text/plain"))?;
        port.send(self.name.clone().into()).await?;
        let heard = self.heard.clone();
        let local = self.name.clone();
        tokio::spawn(async move {
            if let Some(greeting) = port.recv().await {
                let _ = heard.send(format!("{local} heard {:?}", String::from_utf8_lossy(&greeting)));
            }
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (heard, mut greetings) = mpsc::unbounded_channel();
    let mut swarms = Vec::new();
    for name in ["alice", "bob"] {
        let heard = heard.clone();
        let options = JoinOptions::default()
            .extension("example.greeting", move || Greeting { name: name.to_owned(), heard: heard.clone() });
        let node = Node::builder().signal([server.url()]).spawn().await?;
        swarms.push((node.join_with(topic, FullyConnected, options).await?, node));
    }
    for _ in 0..2 {
        if let Some(line) = greetings.recv().await {
            println!("{line}");
        }
    }
    Ok(())
}
