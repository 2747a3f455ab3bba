//! Two peers meet through an embedded signal server and exchange reliable messages: the signal
//! tier end to end on loopback, with the server's metrics at the end.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result, bail};
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::Any;
use mesh_signal::{Client, Event, Messenger, Signal};
use mesh_signal_server::{Config, Server};

#[tokio::main]
async fn main() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    println!("signal server  {}", server.url());

    let party = Keypair::generate().public();
    let topic = DiscoveryKey::from_party(&party);
    let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
    println!("swarm topic    {}", topic.short());

    let started = Instant::now();
    let (a, b) = (Client::connect(server.url())?, Client::connect(server.url())?);
    let mut a_events = a.events();
    let (a_messenger, b_messenger) =
        (Messenger::new(Arc::new(a.clone())), Messenger::new(Arc::new(b.clone())));
    let mut a_inbox = a_messenger.listen(alice, None).await?;
    let mut b_inbox = b_messenger.listen(bob, None).await?;
    a.join(topic, alice).await?;
    b.join(topic, bob).await?;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), a_events.recv()).await {
            Ok(Ok(Event::PeerAvailable { peer, .. })) if peer == bob => break,
            Ok(Ok(_)) => {}
            _ => bail!("bob never appeared in alice's swarm"),
        }
    }
    println!("peers met      alice {} and bob {} after {:?}", alice.short(), bob.short(), started.elapsed());

    for round in 1..=3 {
        let sent = Instant::now();
        let text = Any { type_url: "demo.Text".into(), value: format!("ping {round}").into_bytes() };
        a_messenger.send(alice, bob, text).await.context("alice's message was not acknowledged")?;
        let received = b_inbox.recv().await.context("bob's inbox closed")?;
        let reply = Any { type_url: "demo.Text".into(), value: b"pong".to_vec() };
        b_messenger.send(bob, alice, reply).await.context("bob's reply was not acknowledged")?;
        a_inbox.recv().await.context("alice's inbox closed")?;
        println!(
            "round {round}        {:?} -> acknowledged, answered, acknowledged in {:?}",
            String::from_utf8_lossy(&received.payload.value),
            sent.elapsed()
        );
    }

    let stats = server.stats();
    println!(
        "server         {} connections, {} topics, {} members, {} messages relayed",
        stats.connections, stats.topics, stats.members, stats.messages_relayed
    );
    server.shutdown(std::time::Duration::from_secs(2)).await;
    Ok(())
}
