//! Both ends of one connection attempt, their signals forwarded to each other.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::Struct;
use mesh_transport::{SignalSink, Transport, TransportError, TransportFactory, TransportOptions};
use tokio::sync::mpsc;

/// Creates both sides of one connection and forwards each side's signals to the other.
pub fn pair(factory: &dyn TransportFactory) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    pair_rewriting(factory, |signal| signal)
}

/// [`pair`], passing every signal through `rewrite` on its way.
pub fn pair_rewriting(
    factory: &dyn TransportFactory,
    rewrite: fn(Struct) -> Struct,
) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
    let topic = DiscoveryKey::from_party(&alice);
    let session = Keypair::generate().public();
    let (a_sink, a_signals) = SignalSink::channel();
    let (b_sink, b_signals) = SignalSink::channel();
    let side = |own, remote, initiator, signals| {
        factory.create(TransportOptions { own, remote, topic, initiator, session, signals, link: None })
    };
    let a = side(alice, bob, true, a_sink);
    let b = side(bob, alice, false, b_sink);
    tokio::spawn(forward(a_signals, b.clone(), rewrite));
    tokio::spawn(forward(b_signals, a.clone(), rewrite));
    (a, b)
}

async fn forward(mut signals: mpsc::Receiver<Struct>, to: Arc<dyn Transport>, rewrite: fn(Struct) -> Struct) {
    while let Some(signal) = signals.recv().await {
        match to.signal(rewrite(signal)).await {
            // The receiving side may close first; its remaining signals have nowhere to go.
            Ok(()) | Err(TransportError::Closed) => {}
            Err(err) => panic!("a transport refused the other's signal: {err}"),
        }
    }
}
