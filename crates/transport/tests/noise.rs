//! `tcp+noise`: two peers connect through their signals and talk, a tap on the wire sees only
//! ciphertext (where it sees plain TCP's bytes as they are), and an impostor or a peer that does
//! not speak Noise is refused without harm to the real connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{End, Rewrite};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Struct;
use mesh_transport::{
    ByteStream, SignalSink, Transport, TransportError, TransportFactory, TransportKind, TransportOptions,
    noise::{NoiseError, NoiseTcpTransportFactory},
    tcp::TcpTransportFactory,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const PATIENCE: Duration = Duration::from_secs(10);

fn noise(identity: &Keypair) -> NoiseTcpTransportFactory {
    NoiseTcpTransportFactory::new(identity.clone())
}

/// A factory whose diallers try one port signal only, and so fail with the reason when its
/// handshake fails (by default they wait for a few, since a forged one may come first).
fn noise_dialling_once(identity: &Keypair) -> NoiseTcpTransportFactory {
    let mut tcp = TcpTransportFactory::default();
    tcp.max_dial_attempts = 1;
    noise(identity).with_tcp(tcp)
}

/// Both ends of a connection between two fresh peers, each transport made by `factory` for its
/// peer, with the signals passed through `rewrite`.
fn pair_of_peers(
    factory: impl Fn(&Keypair) -> Box<dyn TransportFactory>,
    rewrite: impl Rewrite,
) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let (a, b) = (factory(&alice), factory(&bob));
    let initiator = End { factory: &*a, own: alice.public(), remote: bob.public() };
    let answerer = End { factory: &*b, own: bob.public(), remote: alice.public() };
    let (a, b, _) = common::pair_ends(initiator, answerer, rewrite);
    (a, b)
}

fn noise_pair(rewrite: impl Rewrite) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    pair_of_peers(|identity| Box::new(noise(identity)), rewrite)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 12) as u8).collect()
}

async fn write_and_shut<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) {
    writer.write_all(data).await.unwrap();
    writer.shutdown().await.unwrap();
}

async fn read_all<R: AsyncRead + Unpin>(reader: &mut R) -> Vec<u8> {
    let mut received = Vec::new();
    reader.read_to_end(&mut received).await.unwrap();
    received
}

/// Sends `to_y` from `x` to `y` and `to_x` the other way at once; what each side read.
async fn both_ways(x: ByteStream, y: ByteStream, to_y: &[u8], to_x: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let ((mut x_read, mut x_write), (mut y_read, mut y_write)) = (tokio::io::split(x), tokio::io::split(y));
    let exchange = async {
        tokio::join!(
            write_and_shut(&mut x_write, to_y),
            write_and_shut(&mut y_write, to_x),
            read_all(&mut x_read),
            read_all(&mut y_read)
        )
    };
    let ((), (), at_x, at_y) = tokio::time::timeout(PATIENCE, exchange).await.expect("exchanged in time");
    (at_x, at_y)
}

#[tokio::test]
async fn noise_peers_connect_through_their_signals_and_carry_mebibytes_both_ways() {
    assert_eq!(noise(&Keypair::generate()).kind(), TransportKind::NoiseTcp);
    let (a, b) = noise_pair(|signal| vec![signal]);
    let (x, y) = common::connect(&a, &b, PATIENCE).await;
    let binding = a.binding();
    assert!(binding.is_some(), "a noise connection has a channel binding");
    assert_eq!(binding, b.binding(), "both ends derive the same binding");

    let (to_b, to_a) = (pattern(4 << 20, 7), pattern((3 << 20) + 5, 13));
    let (at_a, at_b) = both_ways(x, y, &to_b, &to_a).await;
    assert!(at_b == to_b, "4 MiB reached the answerer intact ({} bytes)", at_b.len());
    assert!(at_a == to_a, "3 MiB reached the initiator intact ({} bytes)", at_a.len());
    assert_eq!(a.stats().bytes_sent, to_b.len() as u64);
    assert_eq!(a.stats().bytes_received, to_a.len() as u64);

    let (c, d) = noise_pair(|signal| vec![signal]);
    let _streams = common::connect(&c, &d, PATIENCE).await;
    assert_ne!(c.binding(), binding, "another connection, another binding");
}

/// What a proxy between the dialler and the listener saw, each way.
#[derive(Debug, Clone, Default)]
struct Tap {
    to_listener: Arc<Mutex<Vec<u8>>>,
    to_dialler: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    /// Rewrites `{port}` signals to the port of a proxy in front of the signalled one, which
    /// records every byte it forwards.
    fn rewrite(&self) -> impl Rewrite {
        let tap = self.clone();
        move |signal| vec![tap.intercept(signal)]
    }

    fn intercept(&self, signal: Struct) -> Struct {
        let Some(port) = signal.get("port").and_then(|port| port.as_f64()) else { return signal };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let listener = TcpListener::from_std(listener).unwrap();
        tokio::spawn(self.clone().proxy(listener, port as u16));
        signal.with("port", proxy_port)
    }

    /// Forwards one connection to `target`, both ways, recording.
    async fn proxy(self, listener: TcpListener, target: u16) {
        let (dialler, _) = listener.accept().await.unwrap();
        let listener = TcpStream::connect((Ipv4Addr::LOCALHOST, target)).await.unwrap();
        let ((from_dialler, to_dialler), (from_listener, to_listener)) =
            (dialler.into_split(), listener.into_split());
        tokio::join!(
            forward(from_dialler, to_listener, &self.to_listener),
            forward(from_listener, to_dialler, &self.to_dialler)
        );
    }

    fn seen(&self) -> (Vec<u8>, Vec<u8>) {
        (self.to_listener.lock().unwrap().clone(), self.to_dialler.lock().unwrap().clone())
    }
}

async fn forward<R, W>(mut from: R, mut to: W, record: &Mutex<Vec<u8>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

const MARKER: &[u8] = b"plaintext the tap must not see;";

fn shows_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|window| window == MARKER)
}

/// Sends 64 KiB of the marker each way between two peers whose transports `factory` makes,
/// through a tap; checks it arrived, and returns what the tap saw each way.
async fn marker_through_a_tap(factory: impl Fn(&Keypair) -> Box<dyn TransportFactory>) -> (Vec<u8>, Vec<u8>) {
    let tap = Tap::default();
    let (a, b) = pair_of_peers(factory, tap.rewrite());
    let (x, y) = common::connect(&a, &b, PATIENCE).await;
    let text = MARKER.repeat((64 << 10) / MARKER.len());
    let (at_a, at_b) = both_ways(x, y, &text, &text).await;
    assert!(at_a == text && at_b == text, "the text crossed the tap both ways");
    tap.seen()
}

#[tokio::test]
async fn a_tap_on_the_wire_sees_plain_tcp_text_and_only_ciphertext_of_noise() {
    let (to_listener, to_dialler) = marker_through_a_tap(|_| Box::new(TcpTransportFactory::default())).await;
    assert!(shows_marker(&to_listener) && shows_marker(&to_dialler), "the tap sees plain TCP's text");

    let (to_listener, to_dialler) = marker_through_a_tap(|identity| Box::new(noise(identity))).await;
    assert!(to_listener.len() > 64 << 10 && to_dialler.len() > 64 << 10, "everything went through the tap");
    assert!(!shows_marker(&to_listener), "no plaintext towards the listener");
    assert!(!shows_marker(&to_dialler), "no plaintext towards the dialler");
}

/// One end of a connection attempt made by hand, and the signals it sends.
struct Side {
    transport: Arc<dyn Transport>,
    signals: mpsc::Receiver<Struct>,
}

/// The connection attempt both sides of which `side` makes.
#[derive(Clone, Copy)]
struct Attempt {
    topic: DiscoveryKey,
    session: PublicKey,
}

impl Attempt {
    fn new() -> Self {
        Self { topic: DiscoveryKey::from_party(&PublicKey::random()), session: PublicKey::random() }
    }

    /// A side made by `factory`, as `own`, expecting `remote`.
    fn side(
        self,
        factory: &dyn TransportFactory,
        own: PublicKey,
        remote: PublicKey,
        initiator: bool,
    ) -> Side {
        let (sink, signals) = SignalSink::channel();
        let (topic, session) = (self.topic, self.session);
        let options = TransportOptions { own, remote, topic, initiator, session, signals: sink, link: None };
        Side { transport: factory.create(options), signals }
    }
}

impl Side {
    /// Opens the side and, for an initiator, returns its `{port}` signal.
    async fn open(&mut self) -> Struct {
        self.transport.open().await.unwrap();
        tokio::time::timeout(PATIENCE, self.signals.recv()).await.unwrap().expect("a port signal")
    }

    async fn connected(&self) -> Result<ByteStream, TransportError> {
        tokio::time::timeout(PATIENCE, self.transport.connected()).await.expect("connected or failed in time")
    }

    /// Whether the side is still waiting for a connection a while later.
    async fn still_waiting(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(300), self.transport.connected()).await.is_err()
    }
}

fn port_of(signal: &Struct) -> u16 {
    signal.get("port").and_then(|port| port.as_f64()).unwrap() as u16
}

/// Both streams carry bytes each way.
async fn talk(a: ByteStream, b: ByteStream) {
    let (at_a, at_b) = both_ways(a, b, b"ping", b"pong").await;
    assert_eq!((&at_a[..], &at_b[..]), (&b"pong"[..], &b"ping"[..]));
}

#[tokio::test]
async fn an_impostor_listener_is_refused_and_the_dialler_goes_on_to_the_expected_one() {
    let (alice, bob, mallory) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let attempt = Attempt::new();
    // Mallory forged a port signal for the connection in which Bob expects Alice.
    let mut forged = attempt.side(&noise(&mallory), mallory.public(), bob.public(), true);
    let dialler = attempt.side(&noise_dialling_once(&bob), bob.public(), alice.public(), false);
    dialler.transport.signal(forged.open().await).await.unwrap();
    let err = dialler.connected().await.err().expect("refused");
    assert!(matches!(err, TransportError::Noise(NoiseError::WrongPeer)), "{err}");

    // With the default attempts, the dialler takes the next port signal, the real one.
    let mut forged = attempt.side(&noise(&mallory), mallory.public(), bob.public(), true);
    let mut listener = attempt.side(&noise(&alice), alice.public(), bob.public(), true);
    let dialler = attempt.side(&noise(&bob), bob.public(), alice.public(), false);
    dialler.transport.signal(forged.open().await).await.unwrap();
    dialler.transport.signal(listener.open().await).await.unwrap();
    talk(listener.connected().await.unwrap(), dialler.connected().await.unwrap()).await;
}

#[tokio::test]
async fn an_impostor_dialler_is_refused_and_the_expected_peer_still_connects() {
    let (alice, bob, mallory) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let attempt = Attempt::new();
    let mut listener = attempt.side(&noise(&alice), alice.public(), bob.public(), true);
    let port = listener.open().await;

    let impostor = attempt.side(&noise_dialling_once(&mallory), mallory.public(), alice.public(), false);
    impostor.transport.signal(port.clone()).await.unwrap();
    let err = impostor.connected().await.err().expect("refused");
    assert!(matches!(err, TransportError::Noise(NoiseError::Closed)), "{err}");
    assert!(listener.still_waiting().await, "the listener refused Mallory and waits on");

    // A transport claiming a key its factory does not hold fails before it sends anything.
    let borrowed = attempt.side(&noise(&mallory), bob.public(), alice.public(), false);
    let err = borrowed.transport.signal(port.clone()).await.expect_err("refused");
    assert!(matches!(err, TransportError::Noise(NoiseError::WrongIdentity)), "{err}");

    let dialler = attempt.side(&noise(&bob), bob.public(), alice.public(), false);
    dialler.transport.signal(port).await.unwrap();
    talk(listener.connected().await.unwrap(), dialler.connected().await.unwrap()).await;
}

#[tokio::test]
async fn peers_that_do_not_speak_noise_are_refused() {
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let attempt = Attempt::new();
    let mut listener = attempt.side(&noise(&alice), alice.public(), bob.public(), true);
    let port = listener.open().await;

    // Bytes that are not a Noise handshake, on a raw socket: the listener hangs up.
    let mut raw = TcpStream::connect((Ipv4Addr::LOCALHOST, port_of(&port))).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut seen)).await.expect("the socket is closed");
    assert!(seen.len() <= 34, "the listener sent its first handshake message at most ({} bytes)", seen.len());

    // A plain TCP transport takes the socket as its stream; the noise listener refuses it.
    let plain = attempt.side(&TcpTransportFactory::default(), bob.public(), alice.public(), false);
    plain.transport.signal(port.clone()).await.unwrap();
    let mut stream = plain.connected().await.unwrap();
    let _ = stream.write_all(b"\x00\x01plain protocol bytes").await;
    assert!(listener.still_waiting().await, "the listener refused plain TCP and waits on");

    // The other way round: a noise dialler refuses a plain TCP listener that talks first.
    let mut plain = attempt.side(&TcpTransportFactory::default(), alice.public(), bob.public(), true);
    let dialler = attempt.side(&noise_dialling_once(&bob), bob.public(), alice.public(), false);
    dialler.transport.signal(plain.open().await).await.unwrap();
    let mut stream = plain.connected().await.unwrap();
    stream.write_all(b"hello from plain TCP").await.unwrap();
    let err = dialler.connected().await.err().expect("refused");
    assert!(matches!(err, TransportError::Noise(NoiseError::NotNoise)), "{err}");

    // And the expected peer still gets through to the first listener.
    let dialler = attempt.side(&noise(&bob), bob.public(), alice.public(), false);
    dialler.transport.signal(port).await.unwrap();
    talk(listener.connected().await.unwrap(), dialler.connected().await.unwrap()).await;
}
