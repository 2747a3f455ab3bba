//! Teleport end to end over in-memory byte streams: extensions, RPC both ways, closing, destroying,
//! heartbeats on virtual time, backpressure and a slow reader.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Alive, HANG_CALL, Opened, TEST_CALL, TestExtension, TestRpcRequest, TestRpcResponse, VOID_CALL, pair,
    pair_with,
};
use mesh_keys::PublicKey;
use mesh_teleport::muxer::RPC_CONTENT_TYPE;
use mesh_teleport::rpc::{RpcConfig, RpcPeer};
use mesh_teleport::service::Router;
use mesh_teleport::{
    CloseReason, Extension, ExtensionContext, ExtensionError, Params, ProtocolError, RpcError, Teleport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Adds the test extension on both sides and returns what each side opened.
async fn open_test_extension(a: &Teleport, b: &Teleport, config: RpcConfig) -> (Opened, Opened) {
    let (mut ext_a, mut rx_a) = TestExtension::new("a");
    let (mut ext_b, mut rx_b) = TestExtension::new("b");
    ext_a.config = config.clone();
    ext_b.config = config;
    a.add_extension("test", ext_a).expect("a adds the extension");
    b.add_extension("test", ext_b).expect("b adds the extension");
    (rx_a.recv().await.expect("a opens"), rx_b.recv().await.expect("b opens"))
}

#[tokio::test]
async fn rpc_through_an_extension_both_ways() {
    let (a, b) = pair();
    let (opened_a, opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    assert!(opened_a.ctx.initiator());
    assert!(!opened_b.ctx.initiator());
    assert_eq!(opened_a.ctx.remote_peer(), b.local_peer());

    let from_a: TestRpcResponse =
        opened_a.rpc.call_typed(TEST_CALL, &TestRpcRequest { data: "hi b".into() }).await.unwrap();
    let from_b: TestRpcResponse =
        opened_b.rpc.call_typed(TEST_CALL, &TestRpcRequest { data: "hi a".into() }).await.unwrap();
    assert_eq!(from_a.data, "b: hi b");
    assert_eq!(from_b.data, "a: hi a");
    opened_a.rpc.call_typed::<(), ()>(VOID_CALL, &()).await.unwrap();
    let unknown = opened_b.rpc.call_typed::<(), ()>("nope.Service.Method", &()).await;
    assert!(matches!(unknown, Err(RpcError::Remote { .. })), "{unknown:?}");

    assert!(a.close().await.is_clean());
    assert!(b.closed().await.is_clean());
}

#[tokio::test]
async fn both_sides_closing_at_once_close_cleanly() {
    let (a, b) = pair();
    let (_opened_a, _opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    let (ra, rb) = tokio::join!(a.close(), b.close());
    assert_eq!((ra, rb), (CloseReason::Local, CloseReason::Local));
}

#[tokio::test]
async fn extension_opens_only_when_both_sides_added_it() {
    let (a, b) = pair();
    let (ext_a, mut rx_a) = TestExtension::new("a");
    a.add_extension("test", ext_a).unwrap();
    // b has another extension only: "test" must not open on a.
    let (other, mut rx_other) = TestExtension::new("other");
    b.add_extension("other", other).unwrap();
    let (probe_a, mut rx_probe) = TestExtension::new("probe");
    a.add_extension("other", probe_a).unwrap();
    rx_other.recv().await.unwrap();
    rx_probe.recv().await.unwrap();
    assert!(rx_a.try_recv().is_err(), "\"test\" opened though b never added it");

    let (ext_b, mut rx_b) = TestExtension::new("b");
    b.add_extension("test", ext_b).unwrap();
    rx_a.recv().await.unwrap();
    rx_b.recv().await.unwrap();
    assert!(a.add_extension("test", TestExtension::new("again").0).is_err());
}

#[tokio::test]
async fn disconnect_mid_call_fails_the_call() {
    let (a, b) = pair();
    let config = RpcConfig::default().with_call_timeout(Duration::from_secs(600));
    let (opened_a, _opened_b) = open_test_extension(&a, &b, config).await;
    let call = tokio::spawn(async move { opened_a.rpc.call_typed::<(), ()>(HANG_CALL, &()).await });
    tokio::task::yield_now().await;
    b.destroy();
    let result = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call hung").unwrap();
    assert_eq!(result, Err(RpcError::Closed));
    a.closed().await;
}

#[tokio::test]
async fn destroy_twice_is_idempotent() {
    let (a, b) = pair();
    let (_opened_a, _opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    a.destroy();
    a.destroy();
    assert_eq!(a.closed().await, CloseReason::Destroyed(None));
    a.destroy();
    assert_eq!(a.closed().await, CloseReason::Destroyed(None));
    // b learns from the courtesy Close (or the stream's end).
    assert!(b.closed().await.is_clean());
    assert!(a.add_extension("late", TestExtension::new("late").0).is_err());
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_aborts_a_silent_connection() {
    let (io, _silent_remote): (DuplexStream, DuplexStream) = tokio::io::duplex(64 << 10);
    let teleport = Teleport::new(io, Params::new(true, PublicKey::random(), PublicKey::random()));
    let (ext, mut closed) = {
        let (tx, rx) = mpsc::channel(1);
        let (mut ext, _opened) = TestExtension::new("x");
        ext.closed = Some(tx);
        (ext, rx)
    };
    teleport.add_extension("x", ext).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(teleport.closed().await, CloseReason::HeartbeatTimeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(75),
        "aborted after {waited:?}"
    );
    // The extension never opened, so it is not told.
    assert!(closed.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_quiet_connection_open() {
    let (a, b) = pair();
    let (_opened_a, _opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(!a.is_closed() && !b.is_closed(), "heartbeats must keep a quiet connection open");
}

/// A remote that completes the control RPC handshake and then answers nothing.
async fn deaf_control_peer(io: DuplexStream) {
    use bytes::{Bytes, BytesMut};
    use mesh_proto::Message;
    use mesh_proto::dxos::rpc::{RpcMessage, rpc_message::Content};
    use mesh_teleport::muxer::{Config, Event, Muxer, RPC_CONTENT_TYPE};

    let mut muxer = Muxer::new(Config::default());
    let channel =
        muxer.open_channel(mesh_teleport::control::TAG, Some(RPC_CONTENT_TYPE)).expect("open control");
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut out = BytesMut::new();
        if muxer.poll_transmit(&mut out, usize::MAX) && wr.write_all(&out).await.is_err() {
            return;
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        muxer.handle_input(std::time::Instant::now(), &buf[..n]);
        while let Some(event) = muxer.poll_event() {
            if let Event::Data { data, .. } = event
                && let Ok(RpcMessage { content: Some(Content::Open(_)) }) =
                    RpcMessage::decode(data.into_bytes())
            {
                let ack = RpcMessage { content: Some(Content::OpenAck(true)) };
                let _ = muxer.send(channel, Bytes::from(ack.encode_to_vec()));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_aborts_when_the_remote_stops_answering() {
    let (io, remote) = tokio::io::duplex(64 << 10);
    tokio::spawn(deaf_control_peer(remote));
    let teleport = Teleport::new(io, Params::new(true, PublicKey::random(), PublicKey::random()));
    let start = tokio::time::Instant::now();
    assert_eq!(teleport.closed().await, CloseReason::HeartbeatTimeout);
    // First heartbeat after 10 s, unanswered for 60 s.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(70) && waited < Duration::from_secs(72),
        "aborted after {waited:?}"
    );
}

#[tokio::test]
async fn malformed_bytes_close_the_connection_with_a_reason() {
    let (io, mut remote) = tokio::io::duplex(64 << 10);
    let teleport = Teleport::new(io, Params::new(true, PublicKey::random(), PublicKey::random()));
    // A frame on channel 0 with a length of 10 and 3 bytes that are not a Command.
    remote.write_all(&[0, 5, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
    let reason = teleport.closed().await;
    assert!(
        matches!(
            reason,
            CloseReason::Protocol(ProtocolError::MalformedCommand(_) | ProtocolError::ChunkOverrun { .. })
        ),
        "{reason:?}"
    );
    // The remote gets a Close and then the end of the stream.
    let mut rest = Vec::new();
    remote.read_to_end(&mut rest).await.unwrap();
    assert!(!rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_holds_the_writer_back_within_bounds() {
    let send_buffer = 256 << 10;
    let recv_buffer = 512 << 10;
    let (a, b) = pair_with(|mut p| {
        p.muxer.channel_send_buffer = send_buffer;
        p.muxer.channel_recv_buffer = recv_buffer;
        p
    });
    let (opened_a, opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    let total = 6 << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let mut bulk_a = opened_a.bulk;
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
        for piece in data.chunks(64 << 10) {
            bulk_a.write_all(piece).await.unwrap();
            progress.fetch_add(piece.len(), Ordering::SeqCst);
        }
        bulk_a
    });
    // Nobody reads b's stream: once everything is idle (the paused clock only jumps ahead when
    // every task waits), the writer must be stuck well short of the total, with no more in flight
    // than the buffers allow.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stuck_at = written.load(Ordering::SeqCst);
    let bound =
        send_buffer + recv_buffer + (64 << 10) /* duplex */ + (512 << 10) /* driver batches */ + (64 << 10);
    assert!(stuck_at < total, "the writer was never held back");
    assert!(stuck_at <= bound, "{stuck_at} bytes went out before the writer was held back (bound {bound})");

    // The reader now reads slowly; everything arrives, in order.
    let mut bulk_b = opened_b.bulk;
    let mut received = Vec::with_capacity(total);
    let mut buf = vec![0u8; 10_000];
    while received.len() < total {
        let n = bulk_b.read(&mut buf).await.unwrap();
        assert!(n > 0);
        received.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    writer.await.unwrap();
    assert!(received.iter().enumerate().all(|(i, &byte)| byte == (i % 253) as u8));
}

#[tokio::test]
async fn rpc_answers_while_a_stream_saturates_the_connection() {
    let (a, b) = pair();
    let (opened_a, opened_b) = open_test_extension(&a, &b, RpcConfig::default()).await;
    let mut bulk_a = opened_a.bulk;
    let mut bulk_b = opened_b.bulk;
    let total = 4 << 20;
    let writer = tokio::spawn(async move {
        let chunk = vec![9u8; 64 << 10];
        for _ in 0..total / chunk.len() {
            bulk_a.write_all(&chunk).await.unwrap();
        }
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        while got < total {
            got += bulk_b.read(&mut buf).await.unwrap();
        }
        got
    });
    for i in 0..20 {
        let answer: TestRpcResponse =
            opened_a.rpc.call_typed(TEST_CALL, &TestRpcRequest { data: format!("{i}") }).await.unwrap();
        assert_eq!(answer.data, format!("b: {i}"));
    }
    writer.await.unwrap();
    assert_eq!(reader.await.unwrap(), total);
}

/// Serves `HANG_CALL` with a handler that never answers (counted by `alive`), and hands its RPC
/// peer over.
struct Hanging {
    alive: Alive,
    opened: mpsc::Sender<RpcPeer>,
}

#[async_trait]
impl Extension for Hanging {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let alive = self.alive.clone();
        let router = Router::new().route(HANG_CALL, move |_: ()| {
            let guard = alive.guard();
            async move {
                let _guard = guard;
                std::future::pending::<Result<(), RpcError>>().await
            }
        });
        let config = RpcConfig::default().with_call_timeout(Duration::from_secs(600));
        let rpc = RpcPeer::new(ctx.create_port("rpc", Some(RPC_CONTENT_TYPE))?, router, config);
        rpc.open().await?;
        let _ = self.opened.send(rpc).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn an_rpc_handler_that_never_answers_ends_with_its_connection() {
    let (a, b) = pair();
    let alive = Alive::new();
    let (tx_a, mut rx_a) = mpsc::channel(1);
    let (tx_b, mut rx_b) = mpsc::channel(1);
    a.add_extension("hang", Hanging { alive: alive.clone(), opened: tx_a }).unwrap();
    b.add_extension("hang", Hanging { alive: alive.clone(), opened: tx_b }).unwrap();
    let (rpc_a, _rpc_b) = (rx_a.recv().await.unwrap(), rx_b.recv().await.unwrap());
    let call = tokio::spawn(async move { rpc_a.call_typed::<(), ()>(HANG_CALL, &()).await });
    alive.until(1).await;
    a.destroy();
    assert_eq!(call.await.unwrap(), Err(RpcError::Closed));
    tokio::time::timeout(Duration::from_secs(60), alive.until(0))
        .await
        .expect("the handler still runs after its connection ended");
    assert!(b.closed().await.is_clean());
}
