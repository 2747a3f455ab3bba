//! Both ends of one connection attempt, their signals forwarded to each other; and running a
//! test in a network namespace of its own.
#![allow(dead_code, unreachable_pub)]

pub mod netns;

use std::sync::{Arc, Mutex, Weak};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Struct;
use mesh_transport::{SignalSink, Transport, TransportError, TransportFactory, TransportOptions};
use tokio::sync::mpsc;

/// Creates both sides of one connection and forwards each side's signals to the other.
pub fn pair(factory: &dyn TransportFactory) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    pair_rewriting(factory, |signal| vec![signal])
}

/// What becomes of each signal on its way to the other side: it may be changed, dropped or
/// repeated.
pub trait Rewrite: Fn(Struct) -> Vec<Struct> + Send + Sync + 'static {}
impl<F: Fn(Struct) -> Vec<Struct> + Send + Sync + 'static> Rewrite for F {}

/// [`pair`], passing every signal through `rewrite` on its way.
pub fn pair_rewriting(
    factory: &dyn TransportFactory,
    rewrite: impl Rewrite,
) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    pair_of(factory, (Keypair::generate().public(), Keypair::generate().public()), rewrite)
}

/// Two keys, the one whose hex sorts first (DXOS's WebRTC offerer) first.
pub fn ordered_keys() -> (PublicKey, PublicKey) {
    let (x, y) = (Keypair::generate().public(), Keypair::generate().public());
    if x.to_hex() < y.to_hex() { (x, y) } else { (y, x) }
}

/// Every signal forwarded so far, with its sender.
pub type SignalLog = Arc<Mutex<Vec<(PublicKey, Struct)>>>;

/// [`pair_rewriting`] between `keys.0`, which initiates, and `keys.1`.
pub fn pair_of(
    factory: &dyn TransportFactory,
    keys: (PublicKey, PublicKey),
    rewrite: impl Rewrite,
) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    let (a, b, _) = pair_logged(factory, keys, rewrite);
    (a, b)
}

/// [`pair_of`], also returning the log of the signals forwarded.
pub fn pair_logged(
    factory: &dyn TransportFactory,
    (alice, bob): (PublicKey, PublicKey),
    rewrite: impl Rewrite,
) -> (Arc<dyn Transport>, Arc<dyn Transport>, SignalLog) {
    let initiator = End { factory, own: alice, remote: bob };
    pair_ends(initiator, End { factory, own: bob, remote: alice }, rewrite)
}

/// One end of a connection: the factory that makes its transport, its own key and the key it
/// expects the remote to have.
pub struct End<'a> {
    pub factory: &'a dyn TransportFactory,
    pub own: PublicKey,
    pub remote: PublicKey,
}

/// Both ends of one connection attempt, `initiator`'s topic and a fresh session, their signals
/// forwarded through `rewrite`; and the log of the signals.
pub fn pair_ends(
    initiator: End<'_>,
    answerer: End<'_>,
    rewrite: impl Rewrite,
) -> (Arc<dyn Transport>, Arc<dyn Transport>, SignalLog) {
    let topic = DiscoveryKey::from_party(&initiator.own);
    let session = Keypair::generate().public();
    let (a_sink, a_signals) = SignalSink::channel();
    let (b_sink, b_signals) = SignalSink::channel();
    let side = |end: &End<'_>, initiator, signals| {
        let (own, remote) = (end.own, end.remote);
        end.factory.create(TransportOptions { own, remote, topic, initiator, session, signals, link: None })
    };
    let a = side(&initiator, true, a_sink);
    let b = side(&answerer, false, b_sink);
    let log = SignalLog::default();
    let rewrite: Arc<dyn Fn(Struct) -> Vec<Struct> + Send + Sync> = Arc::new(rewrite);
    tokio::spawn(forward(a_signals, Arc::downgrade(&b), rewrite.clone(), (initiator.own, log.clone())));
    tokio::spawn(forward(b_signals, Arc::downgrade(&a), rewrite, (answerer.own, log.clone())));
    (a, b, log)
}

/// Holds the receiving transport weakly: each transport holds the sink of the other's forwarder,
/// and strong references both ways would keep both alive for ever.
async fn forward(
    mut signals: mpsc::Receiver<Struct>,
    to: Weak<dyn Transport>,
    rewrite: Arc<dyn Fn(Struct) -> Vec<Struct> + Send + Sync>,
    (from, log): (PublicKey, SignalLog),
) {
    while let Some(signal) = signals.recv().await {
        log.lock().unwrap().push((from, signal.clone()));
        let Some(to) = to.upgrade() else { return };
        for signal in rewrite(signal) {
            match to.signal(signal).await {
                // The receiving side may close first; its remaining signals have nowhere to go.
                Ok(()) | Err(TransportError::Closed) => {}
                Err(err) => panic!("a transport refused the other's signal: {err}"),
            }
        }
    }
}

/// Opens both sides and waits up to `patience` for both streams.
pub async fn connect(
    a: &Arc<dyn Transport>,
    b: &Arc<dyn Transport>,
    patience: std::time::Duration,
) -> (mesh_transport::ByteStream, mesh_transport::ByteStream) {
    a.open().await.unwrap();
    b.open().await.unwrap();
    let (x, y) = tokio::time::timeout(patience, async { tokio::join!(a.connected(), b.connected()) })
        .await
        .expect("connected in time");
    (x.expect("the initiator connects"), y.expect("the answerer connects"))
}

/// Writes `data` into `x` and shuts it down while reading `y` to its end, and returns what `y` read.
pub async fn send_through(
    x: &mut mesh_transport::ByteStream,
    y: &mut mesh_transport::ByteStream,
    data: &[u8],
    patience: std::time::Duration,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ((), received) = tokio::join!(
        async {
            x.write_all(data).await.unwrap();
            x.shutdown().await.unwrap();
        },
        async {
            let mut received = Vec::new();
            tokio::time::timeout(patience, y.read_to_end(&mut received)).await.unwrap().unwrap();
            received
        }
    );
    received
}
