//! The messenger's and the manager's tasks: bounded, and gone with their owners.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use common::*;
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{Any, any, dxos::mesh::messaging::ReliablePayload};
use mesh_signal::{Event, Manager, MemoryNetwork, Messenger, Signal, SignalError, SignalMessage};
use tokio::sync::broadcast;

/// Signaling whose sends never finish; it counts the sends still waiting, and lets the test
/// inject events.
struct StuckSignal {
    events: broadcast::Sender<Event>,
    waiting: Arc<AtomicUsize>,
}

impl StuckSignal {
    fn new() -> Self {
        Self { events: broadcast::channel(64).0, waiting: Arc::default() }
    }
}

/// Counts itself in while it lives.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Signal for StuckSignal {
    async fn join(&self, _: DiscoveryKey, _: PublicKey) -> Result<(), SignalError> {
        Ok(())
    }
    async fn leave(&self, _: DiscoveryKey, _: PublicKey) -> Result<(), SignalError> {
        Ok(())
    }
    async fn subscribe(&self, _: PublicKey) -> Result<(), SignalError> {
        Ok(())
    }
    async fn unsubscribe(&self, _: PublicKey) -> Result<(), SignalError> {
        Ok(())
    }
    async fn send(&self, _: SignalMessage) -> Result<(), SignalError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self.waiting.clone());
        std::future::pending().await
    }
    async fn members(&self, _: DiscoveryKey) -> Result<Vec<PublicKey>, SignalError> {
        Ok(Vec::new())
    }
    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

fn reliable(author: PublicKey, recipient: PublicKey, body: &str) -> SignalMessage {
    let inner = Any { type_url: "mesh.test.Text".into(), value: body.as_bytes().to_vec() };
    let payload = ReliablePayload { message_id: Some(peer().into()), payload: Some(inner) };
    SignalMessage { author, recipient, payload: any::pack(&payload) }
}

/// Waits until `count` reads `expected`, yielding to the other tasks in between.
async fn wait_count(count: &AtomicUsize, expected: usize) {
    tokio::time::timeout(PATIENCE, async {
        while count.load(Ordering::SeqCst) != expected {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("count stayed at {} instead of {expected}", count.load(Ordering::SeqCst)));
}

/// A messenger over stuck signaling with more sends under way than it hands over at once.
async fn stuck_messenger() -> (Messenger, Arc<AtomicUsize>, broadcast::Sender<Event>) {
    let signal = Arc::new(StuckSignal::new());
    let (waiting, events) = (signal.waiting.clone(), signal.events.clone());
    let messenger = Messenger::new(signal);
    for index in 0..100 {
        let messenger = messenger.clone();
        // Each caller gives up at once; the messenger keeps the message until its timeout.
        let send = messenger.send(peer(), peer(), Any { type_url: "t".into(), value: vec![index] });
        let _ = tokio::time::timeout(std::time::Duration::ZERO, send).await;
    }
    wait_count(&waiting, 64).await;
    (messenger, waiting, events)
}

#[tokio::test]
async fn stuck_sends_do_not_stop_the_messenger_receiving() {
    let (messenger, _waiting, events) = stuck_messenger().await;
    let (alice, bob) = (peer(), peer());
    let mut inbox = messenger.listen(alice, None).await.unwrap();
    events.send(Event::Message(reliable(bob, alice, "despite the stuck sends"))).unwrap();
    let received = tokio::time::timeout(PATIENCE, inbox.recv()).await.expect("in time").expect("open");
    assert_eq!(received.payload.value, b"despite the stuck sends");
}

#[tokio::test]
async fn dropping_the_messenger_ends_the_sends_it_had_under_way() {
    let (messenger, waiting, _events) = stuck_messenger().await;
    drop(messenger);
    wait_count(&waiting, 0).await;
}

#[tokio::test]
async fn dropping_the_manager_stops_its_merging() {
    let network = MemoryNetwork::new();
    // The source outlives the manager, as a client shared with others would.
    let source: Arc<dyn Signal> = Arc::new(network.client());
    let manager = Manager::new(vec![source.clone()]);
    let mut events = manager.events();
    drop(manager);
    let ended = tokio::time::timeout(PATIENCE, events.recv()).await.expect("the merging stopped");
    assert!(matches!(ended, Err(broadcast::error::RecvError::Closed)));
}
