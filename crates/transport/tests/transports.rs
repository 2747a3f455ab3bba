//! Both transports connect two sides through their signals and carry bytes each way.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::Struct;
use mesh_transport::{
    SignalSink, Transport, TransportError, TransportFactory, TransportOptions,
    memory::{Conditions, MemoryTransportFactory, Shape},
    tcp::TcpTransportFactory,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(10);

async fn exchange(a: &Arc<dyn Transport>, b: &Arc<dyn Transport>) {
    a.open().await.unwrap();
    b.open().await.unwrap();
    let (mut x, mut y) = tokio::time::timeout(PATIENCE, async { (a.connected().await, b.connected().await) })
        .await
        .expect("connected in time");
    let (x, y) = (x.as_mut().expect("a connects"), y.as_mut().expect("b connects"));
    x.write_all(b"hello from the initiator").await.unwrap();
    y.write_all(b"hello back").await.unwrap();
    let mut buf = [0u8; 24];
    y.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello from the initiator");
    let mut buf = [0u8; 10];
    x.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello back");
}

#[tokio::test]
async fn tcp_initiator_listens_and_the_other_side_dials_localhost() {
    let factory = TcpTransportFactory::default();
    let (a, b) = common::pair(&factory);
    exchange(&a, &b).await;
    assert_eq!(a.stats().bytes_sent, 24);
    assert_eq!(a.stats().bytes_received, 10);
    assert!(a.connected().await.is_err(), "the stream is handed over once");
}

#[tokio::test]
async fn tcp_dials_the_advertised_host_when_given() {
    let factory = TcpTransportFactory::default().with_advertise_host("127.0.0.1");
    let (a, b) = common::pair(&factory);
    exchange(&a, &b).await;
}

#[tokio::test]
async fn tcp_dial_to_a_closed_port_fails_with_the_reason() {
    let factory = TcpTransportFactory::default();
    let (sink, _signals) = SignalSink::channel();
    let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
    let options = TransportOptions {
        own: alice,
        remote: bob,
        topic: DiscoveryKey::from_party(&alice),
        initiator: false,
        session: alice,
        signals: sink,
        link: None,
    };
    let transport = factory.create(options);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    transport.signal(Struct::new().with("port", closed_port).with("host", "127.0.0.1")).await.unwrap();
    let err = tokio::time::timeout(PATIENCE, transport.connected()).await.unwrap().err().expect("refused");
    assert!(matches!(err, TransportError::Io { context: "dialing", .. }), "{err}");
    assert!(
        matches!(transport.signal(Struct::new()).await, Ok(())),
        "later signals are ignored once dialing"
    );
}

#[tokio::test]
async fn closing_before_connecting_ends_the_wait() {
    let factory = TcpTransportFactory::default();
    let (a, _b) = common::pair(&factory);
    a.open().await.unwrap();
    a.close().await;
    assert!(matches!(a.connected().await, Err(TransportError::Closed)));
}

#[tokio::test]
async fn memory_transports_connect_through_their_signals() {
    let factory = MemoryTransportFactory::default();
    let (a, b) = common::pair(&factory);
    exchange(&a, &b).await;
    assert_eq!(b.stats().bytes_received, 24);
}

#[tokio::test(start_paused = true)]
async fn shaped_memory_transports_carry_latency() {
    let shape = Shape { latency: Duration::from_millis(25), bandwidth: Some(10_000_000) };
    let factory = MemoryTransportFactory::new(Conditions { shape, loss: 0.0 }, 7);
    let (a, b) = common::pair(&factory);
    exchange(&a, &b).await;
}

#[tokio::test]
async fn lost_memory_connections_fail_on_both_sides() {
    let factory = MemoryTransportFactory::new(Conditions { loss: 1.0, ..Conditions::default() }, 1);
    let (a, b) = common::pair(&factory);
    a.open().await.unwrap();
    b.open().await.unwrap();
    assert!(matches!(a.connected().await, Err(TransportError::Failed(_))));
    assert!(matches!(b.connected().await, Err(TransportError::Failed(_))));
}

#[tokio::test]
async fn bad_signals_are_refused() {
    let factory = MemoryTransportFactory::default();
    let (_a, b) = common::pair(&factory);
    let bad = Struct::new().with("transportId", "not hex");
    assert!(matches!(b.signal(bad).await, Err(TransportError::BadSignal(_))));
}
