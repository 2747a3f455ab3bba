//! The plain HTTP endpoints: readiness on the signal path, metrics, and errors elsewhere.

mod common;

use common::*;
use std::time::Duration;

use mesh_signal_server::{Config, Limits};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn plain_get_on_the_signal_path_answers_200() {
    let server = server_with(Config::default()).await;
    let (status, body) = http_get(server.local_addr(), "/.well-known/dx/signal").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("ready"));
    let (status, _) = http_get(server.local_addr(), "/nothing").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn metrics_count_connections_topics_members_and_relays() {
    let server = server_with(Config::default()).await;
    let (topic, alice, bob) = (key(), key(), key());
    let mut a = RawClient::connect(&server.url()).await;
    a.join(0, topic, alice).await;
    a.expect_ready(0).await;
    a.receive(1, alice).await;
    a.expect_ready(1).await;
    let mut b = RawClient::connect(&server.url()).await;
    b.join(0, topic, bob).await;
    b.expect_ready(0).await;
    b.expect_event(0).await;
    b.send_message(1, bob, alice, b"hi").await;
    b.expect_reply(1).await;
    a.expect_event(0).await;
    a.expect_message(1).await;

    let (status, body) = http_get(server.local_addr(), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for line in [
        "mesh_signal_connections 2",
        "mesh_signal_topics 1",
        "mesh_signal_members 2",
        "mesh_signal_messages_relayed_total 1",
        "mesh_signal_frames_rejected_total 0",
        "mesh_signal_rate_limited_total 0",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in\n{body}");
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_request_that_never_ends() {
    let limits = Limits { handshake_timeout: Duration::from_secs(3600), ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut stuck = tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect");
    stuck.write_all(b"GET /.well-known/dx/signal HTTP/1.1\r\n").await.expect("write");
    // The server accepts in order, so answering a later request means it took the stuck one.
    let (status, _) = http_get(server.local_addr(), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(server.shutdown(Duration::from_secs(5)).await, "every connection finished");
}

#[tokio::test]
async fn sockets_beyond_the_handshake_limit_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let limits =
        Limits { max_handshakes: 2, handshake_timeout: Duration::from_secs(3600), ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    // Two clients connect and never send a request: they hold both places.
    let _silent = [
        tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect"),
        tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect"),
    ];
    let mut third = tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect");
    let mut buffer = [0; 16];
    let read = tokio::time::timeout(PATIENCE, third.read(&mut buffer)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "the third socket is closed: {read:?}");
    assert_eq!(server.stats().connections_rejected, 1);
}
