//! Helpers shared by the signal integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod dxos;
pub mod nats;
pub mod proxy;

use std::time::Duration;

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Any;
use mesh_signal::{Event, Signal, SignalMessage};
use mesh_signal_server::{Config, Server};
use tokio::sync::broadcast;

/// Long enough for anything on loopback; a test that waits this long has failed.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub async fn server() -> Server {
    server_with(Config::default()).await
}

pub async fn server_with(config: Config) -> Server {
    Server::start(config).await.expect("server starts")
}

pub fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&Keypair::generate().public())
}

pub fn peer() -> PublicKey {
    Keypair::generate().public()
}

pub fn message(author: PublicKey, recipient: PublicKey, text: &str) -> SignalMessage {
    SignalMessage {
        author,
        recipient,
        payload: Any { type_url: "test.Text".into(), value: text.as_bytes().to_vec() },
    }
}

/// Waits for the first event that `pick` accepts, skipping others.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("event receiver lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
    .expect("expected event did not arrive")
}

pub async fn wait_available(events: &mut broadcast::Receiver<Event>, topic: DiscoveryKey, peer: PublicKey) {
    wait_for(events, |event| match event {
        Event::PeerAvailable { topic: t, peer: p, .. } if *t == topic && *p == peer => Some(()),
        _ => None,
    })
    .await
}

pub async fn wait_left(events: &mut broadcast::Receiver<Event>, topic: DiscoveryKey, peer: PublicKey) {
    wait_for(events, |event| match event {
        Event::PeerLeft { topic: t, peer: p } if *t == topic && *p == peer => Some(()),
        _ => None,
    })
    .await
}

pub async fn wait_message(events: &mut broadcast::Receiver<Event>, recipient: PublicKey) -> SignalMessage {
    wait_for(events, |event| match event {
        Event::Message(message) if message.recipient == recipient => Some(message.clone()),
        _ => None,
    })
    .await
}

/// `alice` (on `a`) and `bob` (on `b`) open their inboxes, join `topic` and see each other.
/// Returns their event receivers, taken before anything happened.
pub async fn meet(
    (a, alice): (&impl Signal, PublicKey),
    (b, bob): (&impl Signal, PublicKey),
    topic: DiscoveryKey,
) -> (broadcast::Receiver<Event>, broadcast::Receiver<Event>) {
    let (mut a_events, mut b_events) = (a.events(), b.events());
    a.subscribe(alice).await.expect("alice's inbox opens");
    b.subscribe(bob).await.expect("bob's inbox opens");
    a.join(topic, alice).await.expect("alice joins");
    b.join(topic, bob).await.expect("bob joins");
    wait_available(&mut a_events, topic, bob).await;
    wait_available(&mut b_events, topic, alice).await;
    (a_events, b_events)
}

/// Waits until every peer in `peers` was reported available in `topic`, in any order.
pub async fn wait_all_available(
    events: &mut broadcast::Receiver<Event>,
    topic: DiscoveryKey,
    peers: impl IntoIterator<Item = PublicKey>,
) {
    let mut missing: std::collections::HashSet<PublicKey> = peers.into_iter().collect();
    if missing.is_empty() {
        return;
    }
    wait_for(events, |event| match event {
        Event::PeerAvailable { topic: t, peer, .. } if *t == topic => {
            missing.remove(peer);
            missing.is_empty().then_some(())
        }
        _ => None,
    })
    .await
}

/// A Rust peer as an application runs one: signaling (a client, or several servers' manager), a
/// messenger listening on its inbox, and a join to `topic`.
pub struct RustPeer {
    pub key: PublicKey,
    pub signal: std::sync::Arc<dyn Signal>,
    pub events: broadcast::Receiver<Event>,
    pub messenger: mesh_signal::Messenger,
    pub inbox: tokio::sync::mpsc::Receiver<SignalMessage>,
}

impl RustPeer {
    /// A peer on one client made from `config`.
    pub async fn join(config: mesh_signal::ClientConfig, key: PublicKey, topic: DiscoveryKey) -> Self {
        let client = mesh_signal::Client::with_config(config).expect("valid client config");
        Self::join_through(std::sync::Arc::new(client), key, topic).await
    }

    /// A peer signaling through `signal`.
    pub async fn join_through(
        signal: std::sync::Arc<dyn Signal>,
        key: PublicKey,
        topic: DiscoveryKey,
    ) -> Self {
        let events = signal.events();
        let messenger = mesh_signal::Messenger::new(signal.clone());
        let inbox = messenger.listen(key, None).await.expect("inbox opens");
        signal.join(topic, key).await.expect("join recorded");
        Self { key, signal, events, messenger, inbox }
    }

    /// Sends `text` reliably; fails the test unless `to` acknowledges it.
    pub async fn send(&self, to: PublicKey, text: &str) {
        let payload = Any { type_url: "mesh.test.Text".into(), value: text.as_bytes().to_vec() };
        self.messenger.send(self.key, to, payload).await.expect("the recipient acknowledged");
    }

    /// The next message in the inbox.
    pub async fn receive(&mut self) -> SignalMessage {
        tokio::time::timeout(PATIENCE, self.inbox.recv())
            .await
            .expect("a message in time")
            .expect("inbox open")
    }
}
