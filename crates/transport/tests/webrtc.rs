//! The WebRTC transport over real loopback UDP: two transports signal each other, connect, and
//! carry bytes; closing, bad signals and misuse behave as the transport contract says.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mesh_proto::Struct;
use mesh_transport::{
    ByteStream, Transport, TransportError, TransportFactory, TransportKind, webrtc::WebRtcTransportFactory,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A guard against hangs, far above what any step here takes.
const PATIENCE: Duration = Duration::from_secs(20);

/// Opens both sides and waits for both streams; returns them and the setup time.
async fn connect(a: &Arc<dyn Transport>, b: &Arc<dyn Transport>) -> (ByteStream, ByteStream, Duration) {
    let started = Instant::now();
    let (x, y) = common::connect(a, b, PATIENCE).await;
    (x, y, started.elapsed())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transports_connect_through_their_signals_and_talk_both_ways() {
    // The default binding (every interface plus loopback), as real use has it.
    let factory = WebRtcTransportFactory::default();
    assert_eq!(factory.kind(), TransportKind::WebRtc);
    let (a, b) = common::pair(&factory);
    let (mut x, mut y, setup) = connect(&a, &b).await;
    eprintln!("WebRTC setup, open to both connected: {setup:?}");
    assert!(a.binding().is_some(), "a WebRTC connection has a channel binding");
    assert_eq!(a.binding(), b.binding(), "both ends derive the same binding from the DTLS fingerprints");

    x.write_all(b"hello from the initiator").await.unwrap();
    y.write_all(b"hello back").await.unwrap();
    let mut buf = [0u8; 24];
    tokio::time::timeout(PATIENCE, y.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"hello from the initiator");
    let mut buf = [0u8; 10];
    tokio::time::timeout(PATIENCE, x.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"hello back");

    assert_eq!(a.stats().bytes_sent, 24);
    assert_eq!(a.stats().bytes_received, 10);
    assert!(matches!(a.connected().await, Err(TransportError::Closed)), "the stream is handed over once");
    assert!(matches!(b.connected().await, Err(TransportError::Closed)), "the stream is handed over once");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_cross_each_way_at_once_intact() {
    const LEN: usize = 4 * 1024 * 1024;
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    let (x, y, setup) = connect(&a, &b).await;
    eprintln!("WebRTC setup on loopback only, open to both connected: {setup:?}");
    let started = Instant::now();

    let transfer = |stream: ByteStream, seed: u8, expect: u8| async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let send = async move {
            writer.write_all(&pattern(LEN, seed)).await.unwrap();
            writer
        };
        let receive = async move {
            let mut got = vec![0u8; LEN];
            reader.read_exact(&mut got).await.unwrap();
            got
        };
        let (_writer, got) = tokio::join!(send, receive);
        assert!(got == pattern(LEN, expect), "bytes arrive intact and in order");
    };
    tokio::time::timeout(PATIENCE * 3, async { tokio::join!(transfer(x, 1, 2), transfer(y, 2, 1)) })
        .await
        .expect("transfers finish in time");

    let elapsed = started.elapsed();
    let rate = (2 * LEN) as f64 / elapsed.as_secs_f64() / 1e6;
    eprintln!("2 × 4 MiB at once in {elapsed:?}: {rate:.1} MB/s in total");
    assert_eq!(a.stats().bytes_sent, LEN as u64);
    assert_eq!(a.stats().bytes_received, LEN as u64);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_transport_ends_the_other_sides_reads() {
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    let (mut x, mut y, _) = connect(&a, &b).await;
    x.write_all(b"last words").await.unwrap();
    let mut buf = [0u8; 10];
    tokio::time::timeout(PATIENCE, y.read_exact(&mut buf)).await.unwrap().unwrap();

    a.close().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, y.read_to_end(&mut rest)).await.expect("EOF in time");
    assert_eq!(read.unwrap(), 0, "the other side reads EOF");
    let mut rest = Vec::new();
    assert_eq!(x.read_to_end(&mut rest).await.unwrap(), 0, "the closed side's own stream ends too");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_stream_down_delivers_what_was_written_then_eof() {
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    let (mut x, mut y, _) = connect(&a, &b).await;
    let data = pattern(300 * 1024, 7);
    x.write_all(&data).await.unwrap();
    x.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, y.read_to_end(&mut got)).await.expect("EOF in time").unwrap();
    assert!(got == data, "everything written before the shutdown arrives");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signals_are_bad_signals() {
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    let data = |fields: Struct| Struct::new().with("data", fields);
    for bad in [
        Struct::new(),
        Struct::new().with("port", 4000.0),
        data(Struct::new().with("type", "offer")),
        data(Struct::new().with("type", "answer").with("sdp", "this is not SDP")),
        data(Struct::new().with("type", "rollback").with("sdp", "")),
        data(
            Struct::new()
                .with("type", "candidate")
                .with("candidate", "candidate:1 1 udp 1 127.0.0.1 9 typ host"),
        ),
        data(
            Struct::new()
                .with("type", "candidate")
                .with("candidate", Struct::new().with("candidate", "nonsense")),
        ),
    ] {
        for side in [&a, &b] {
            let result = side.signal(bad.clone()).await;
            assert!(matches!(result, Err(TransportError::BadSignal(_))), "{bad:?} gave {result:?}");
        }
    }

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_before_the_connection_is_up_fails_connected() {
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    a.open().await.unwrap();
    a.close().await;
    let result = tokio::time::timeout(PATIENCE, a.connected()).await.expect("no hang");
    assert!(matches!(result, Err(TransportError::Closed)), "got {:?}", result.err());
    assert!(matches!(a.open().await, Ok(()) | Err(TransportError::Closed)));

    // Closed before it was ever opened: opening fails, and so does waiting for it.
    b.close().await;
    assert!(matches!(b.open().await, Err(TransportError::Closed)));
    let result = tokio::time::timeout(PATIENCE, b.connected()).await.expect("no hang");
    assert!(matches!(result, Err(TransportError::Closed)), "got {:?}", result.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_closes_the_connection() {
    let (a, b) = common::pair(&WebRtcTransportFactory::loopback());
    let (x, mut y, _) = connect(&a, &b).await;
    drop(x);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, y.read_to_end(&mut rest)).await.expect("EOF in time");
    assert_eq!(read.unwrap(), 0, "the other side reads EOF");
    a.close().await;
    b.close().await;
}

/// Points an ICE candidate at a port nobody listens on; other signals pass unchanged.
fn unreachable(signal: Struct) -> Vec<Struct> {
    let line = signal
        .get("data")
        .and_then(|data| data.as_struct())
        .and_then(|data| data.get("candidate"))
        .and_then(|candidate| candidate.as_struct())
        .and_then(|candidate| candidate.get("candidate"))
        .and_then(|line| line.as_str());
    let Some(line) = line else { return vec![signal] };
    let mut fields: Vec<&str> = line.split(' ').collect();
    fields[5] = "9";
    let candidate =
        Struct::new().with("candidate", fields.join(" ")).with("sdpMLineIndex", 0u16).with("sdpMid", "0");
    vec![Struct::new().with("data", Struct::new().with("type", "candidate").with("candidate", candidate))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_candidates_make_connected_fail() {
    let (a, b) = common::pair_rewriting(&WebRtcTransportFactory::loopback(), unreachable);
    let started = Instant::now();
    a.open().await.unwrap();
    b.open().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), a.connected()).await.expect("fails in time");
    eprintln!("failed after {:?}: {:?}", started.elapsed(), result.as_ref().err());
    assert!(matches!(result, Err(TransportError::Failed(_))), "got {:?}", result.err());
    a.close().await;
    b.close().await;
}

/// The `data.type` of a WebRTC signal.
fn signal_type(signal: &Struct) -> String {
    let data = signal.get("data").and_then(|data| data.as_struct()).unwrap();
    data.get("type").and_then(|kind| kind.as_str()).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lower_key_offers_whichever_side_initiated() {
    let (lower, higher) = common::ordered_keys();
    let mut bindings = Vec::new();
    for (keys, case) in
        [((lower, higher), "the lower key initiates"), ((higher, lower), "the higher key initiates")]
    {
        let (a, b, log) =
            common::pair_logged(&WebRtcTransportFactory::loopback(), keys, |signal| vec![signal]);
        let (mut x, mut y, _) = connect(&a, &b).await;
        x.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(PATIENCE, y.read_exact(&mut buf)).await.unwrap().unwrap();
        let descriptions: Vec<(bool, String)> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(from, signal)| (*from == lower, signal_type(signal)))
            .filter(|(_, kind)| kind != "candidate")
            .collect();
        assert_eq!(
            descriptions,
            [(true, "offer".to_owned()), (false, "answer".to_owned())],
            "{case}: the lower key offers, the higher answers"
        );
        assert_eq!(a.binding(), b.binding());
        bindings.push(a.binding());
        a.close().await;
        b.close().await;
    }
    assert_ne!(bindings[0], bindings[1], "each connection has its own binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_signals_are_ignored() {
    let (a, b) =
        common::pair_rewriting(&WebRtcTransportFactory::loopback(), |signal| vec![signal.clone(), signal]);
    let (mut x, mut y, _) = connect(&a, &b).await;
    y.write_all(b"still one connection").await.unwrap();
    let mut buf = [0u8; 20];
    tokio::time::timeout(PATIENCE, x.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"still one connection");
    a.close().await;
    b.close().await;
}
