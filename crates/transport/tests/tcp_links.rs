//! TCP links that cannot be taken over: the initiator listens on loopback, the dialler dials only
//! allowed addresses, and with link nonces both ends prove their keys before the stream is theirs.
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Struct;
use mesh_transport::{
    ByteStream, LinkAuth, SignalSink, Transport, TransportError, TransportFactory, TransportOptions,
    tcp::{DialAllow, TcpTransportFactory},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// One side of a connection attempt and the signals it sends.
struct Side {
    transport: Arc<dyn Transport>,
    signals: mpsc::Receiver<Struct>,
}

impl Side {
    /// The `{port}` signal (the initiator's first).
    async fn port_signal(&mut self) -> Struct {
        tokio::time::timeout(PATIENCE, self.signals.recv()).await.unwrap().expect("a port signal")
    }
}

fn port_of(signal: &Struct) -> u16 {
    signal.get("port").and_then(|port| port.as_f64()).unwrap() as u16
}

/// Both ends of one connection attempt, each with its own factory (`configure`d, told whether it
/// is the initiator's), given link nonces when `authenticated` (both factories then hold their
/// peer's key pair).
fn sides(
    authenticated: bool,
    configure: impl Fn(bool, TcpTransportFactory) -> TcpTransportFactory,
) -> (Side, Side) {
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let topic = DiscoveryKey::from_party(&alice.public());
    let session = PublicKey::random();
    let (alice_nonce, bob_nonce) = (rand::random(), rand::random());
    let side = |own: &Keypair, remote: &Keypair, initiator, own_nonce, remote_nonce| {
        let (sink, signals) = SignalSink::channel();
        let factory = if authenticated {
            TcpTransportFactory::default().with_identity(own.clone())
        } else {
            TcpTransportFactory::default()
        };
        let options = TransportOptions {
            own: own.public(),
            remote: remote.public(),
            topic,
            initiator,
            session,
            signals: sink,
            link: authenticated.then_some(LinkAuth { own_nonce, remote_nonce }),
        };
        Side { transport: configure(initiator, factory).create(options), signals }
    };
    (side(&alice, &bob, true, alice_nonce, bob_nonce), side(&bob, &alice, false, bob_nonce, alice_nonce))
}

async fn connected(side: &Side) -> Result<ByteStream, TransportError> {
    tokio::time::timeout(PATIENCE, side.transport.connected()).await.expect("connected or failed in time")
}

/// Both streams carry bytes each way.
async fn talk(mut a: ByteStream, mut b: ByteStream) {
    a.write_all(b"ping").await.unwrap();
    b.write_all(b"pong").await.unwrap();
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

/// Reads what a socket receives until the other end closes or resets it.
async fn received(socket: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ =
        tokio::time::timeout(PATIENCE, socket.read_to_end(&mut bytes)).await.expect("the socket is closed");
    bytes
}

/// An address of this host that is not loopback, if it has one (where a route leads out).
fn non_loopback_ip() -> Option<IpAddr> {
    ["192.0.2.1:9", "[2001:db8::1]:9"].into_iter().find_map(|out| {
        let any: SocketAddr = if out.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" }.parse().ok()?;
        let socket = std::net::UdpSocket::bind(any).ok()?;
        // Connecting a UDP socket sends nothing; it only picks the local address of the route.
        socket.connect(out).ok()?;
        Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    })
}

#[tokio::test]
async fn the_initiator_listens_on_loopback_unless_it_advertises_a_host() {
    let Some(outside) = non_loopback_ip() else {
        eprintln!("this host has no address besides loopback; nothing to check");
        return;
    };
    let (mut initiator, _) = sides(false, |_, factory| factory);
    initiator.transport.open().await.unwrap();
    let port = port_of(&initiator.port_signal().await);
    assert!(TcpStream::connect((outside, port)).await.is_err(), "not reachable on {outside}");
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.is_ok(), "reachable on loopback");

    let (mut initiator, _) = sides(false, |_, factory| factory.with_advertise_host(outside.to_string()));
    initiator.transport.open().await.unwrap();
    let port = port_of(&initiator.port_signal().await);
    assert!(TcpStream::connect((outside, port)).await.is_ok(), "advertised: reachable on {outside}");
}

#[tokio::test]
async fn a_signalled_host_outside_the_allow_list_is_not_dialled() {
    // Linux connects 0.0.0.0 to this host, but it is not loopback, so the default refuses it.
    let target = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await.unwrap();
    let port = target.local_addr().unwrap().port();
    let signal = Struct::new().with("port", port).with("host", "0.0.0.0");

    let (_, responder) = sides(false, |_, factory| factory);
    responder.transport.signal(signal.clone()).await.unwrap();
    let err = connected(&responder).await.err().expect("refused");
    assert!(matches!(err, TransportError::HostNotAllowed { ref host } if host == "0.0.0.0"), "{err}");

    // Allowed, the same signal is dialled: the allow-list alone stopped it.
    let (_, responder) = sides(false, |_, factory| factory.with_dial_allow(DialAllow::Any));
    responder.transport.signal(signal).await.unwrap();
    tokio::time::timeout(PATIENCE, target.accept()).await.unwrap().unwrap();
}

#[tokio::test]
async fn authenticated_peers_connect_and_talk() {
    let (mut initiator, responder) = sides(true, |_, factory| factory);
    initiator.transport.open().await.unwrap();
    responder.transport.signal(initiator.port_signal().await).await.unwrap();
    let (a, b) = (connected(&initiator).await.unwrap(), connected(&responder).await.unwrap());
    let binding = initiator.transport.binding();
    assert!(binding.is_some(), "an authenticated link has a channel binding");
    assert_eq!(binding, responder.transport.binding(), "both ends derive the same binding");
    talk(a, b).await;

    let (mut other, responder) = sides(true, |_, factory| factory);
    other.transport.open().await.unwrap();
    responder.transport.signal(other.port_signal().await).await.unwrap();
    let _streams = (connected(&other).await.unwrap(), connected(&responder).await.unwrap());
    assert_ne!(other.transport.binding(), binding, "another link, another binding");
}

#[tokio::test]
async fn a_socket_that_connects_first_is_refused_and_the_proven_peer_still_connects() {
    let (mut initiator, responder) = sides(true, |_, factory| factory);
    initiator.transport.open().await.unwrap();
    let signal = initiator.port_signal().await;
    let mut intruder = TcpStream::connect((Ipv4Addr::LOCALHOST, port_of(&signal))).await.unwrap();
    intruder.write_all(b"hello, I am the peer you expect").await.unwrap();

    responder.transport.signal(signal).await.unwrap();
    let (a, b) = (connected(&initiator).await.unwrap(), connected(&responder).await.unwrap());
    talk(a, b).await;
    assert!(received(&mut intruder).await.is_empty(), "the intruder got nothing");
}

#[tokio::test]
async fn silent_connections_hold_handshake_slots_only_until_their_timeout() {
    // The listener gives each connection 200 ms to prove itself; the dialler waits longer,
    // since it may queue behind the silent ones.
    let configure = |initiator, mut factory: TcpTransportFactory| {
        factory.max_pending_handshakes = 2;
        if initiator {
            factory.handshake_timeout = Duration::from_millis(200);
        }
        factory
    };
    let (mut initiator, responder) = sides(true, configure);
    initiator.transport.open().await.unwrap();
    let signal = initiator.port_signal().await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect((Ipv4Addr::LOCALHOST, port_of(&signal))).await.unwrap());
    }
    responder.transport.signal(signal).await.unwrap();
    let (a, b) = (connected(&initiator).await.unwrap(), connected(&responder).await.unwrap());
    talk(a, b).await;
}

#[tokio::test]
async fn a_forged_port_that_cannot_prove_itself_is_skipped_for_the_real_one() {
    let (mut initiator, responder) = sides(true, |_, factory| factory);
    let impostor = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let forged = Struct::new().with("port", impostor.local_addr().unwrap().port());
    responder.transport.signal(forged).await.unwrap();
    let (mut hijacked, _) = tokio::time::timeout(PATIENCE, impostor.accept()).await.unwrap().unwrap();
    let mut proof = [0u8; 72];
    tokio::time::timeout(PATIENCE, hijacked.read_exact(&mut proof))
        .await
        .expect("the dialler proves itself")
        .unwrap();
    assert!(proof.starts_with(b"MESHLNK"));
    // It claims to be the listener, as an unauthenticated link would let it.
    hijacked.write_all(b"hello, I am the peer you expect").await.unwrap();

    initiator.transport.open().await.unwrap();
    responder.transport.signal(initiator.port_signal().await).await.unwrap();
    let (a, b) = (connected(&initiator).await.unwrap(), connected(&responder).await.unwrap());
    talk(a, b).await;
    assert!(received(&mut hijacked).await.is_empty(), "nothing after the dialler's proof");
}

#[tokio::test]
async fn a_dialler_gives_up_once_every_allowed_attempt_failed() {
    let configure = |_, mut factory: TcpTransportFactory| {
        factory.max_dial_attempts = 2;
        factory
    };
    let (_, responder) = sides(true, configure);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for _ in 0..2 {
        responder.transport.signal(Struct::new().with("port", closed_port)).await.unwrap();
    }
    let err = connected(&responder).await.err().expect("both attempts fail");
    assert!(matches!(err, TransportError::Io { context: "dialing", .. }), "{err}");
    // Further signals are ignored once the attempts are used up.
    responder.transport.signal(Struct::new()).await.unwrap();
}
