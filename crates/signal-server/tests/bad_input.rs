//! Bad input closes at most the connection that sent it, never the server, and the error is clear.

mod common;

use std::time::Duration;

use common::*;
use mesh_proto::{
    Any, Message,
    dxos::rpc::{Response, RpcMessage, response, rpc_message},
};
use mesh_signal_server::{Config, Limits, RateLimit};

/// Proves the server still serves others: a fresh pair exchanges a message.
async fn server_still_relays(url: &str) {
    let (alice, bob) = (key(), key());
    let mut a = RawClient::connect(url).await;
    let mut b = RawClient::connect(url).await;
    b.receive(1, bob).await;
    b.expect_ready(1).await;
    a.send_message(1, alice, bob, b"still here").await;
    a.expect_reply(1).await;
    assert_eq!(b.expect_message(1).await.payload.map(|p| p.value), Some(b"still here".to_vec()));
}

#[tokio::test]
async fn malformed_protobuf_closes_only_that_connection() {
    let server = server_with(Config::default()).await;
    let (topic, alice) = (key(), key());
    let mut bystander = RawClient::connect(&server.url()).await;
    bystander.join(0, topic, alice).await;
    bystander.expect_ready(0).await;

    let mut bad = RawClient::connect(&server.url()).await;
    bad.send_bytes(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    assert_eq!(bad.expect_closed().await, Some(1002));
    assert_eq!(server.stats().frames_rejected, 1);

    server_still_relays(&server.url()).await;
    let bob = key();
    let mut late = RawClient::connect(&server.url()).await;
    late.join(0, topic, bob).await;
    late.expect_ready(0).await;
    assert_eq!(available_peer(&bystander.expect_event(0).await), Some(bob.as_bytes().to_vec()));
}

#[tokio::test]
async fn unknown_method_gets_an_error_and_the_connection_stays() {
    let server = server_with(Config::default()).await;
    let mut client = RawClient::connect(&server.url()).await;
    client.request_any(4, "dxos.mesh.signal.Signal.Teleport", Any::default(), false).await;
    let error = client.expect_error(4, "UNKNOWN_METHOD").await;
    assert!(error.message.unwrap_or_default().contains("Teleport"));
    client.receive(5, key()).await;
    client.expect_ready(5).await;
}

#[tokio::test]
async fn wrong_payloads_get_invalid_request() {
    let server = server_with(Config::default()).await;
    let mut client = RawClient::connect(&server.url()).await;
    // Not a JoinRequest at all.
    let garbage = Any { type_url: ".dxos.mesh.signal.JoinRequest".into(), value: vec![0x0a, 0x7f] };
    client.request_any(1, JOIN, garbage, true).await;
    client.expect_error(1, "INVALID_REQUEST").await;
    // A JoinRequest without a topic.
    let empty =
        mesh_proto::dxos::mesh::signal::JoinRequest { swarm: vec![], peer: vec![1; 32], metadata: None };
    client.request(2, JOIN, &empty, true).await;
    client.expect_error(2, "INVALID_REQUEST").await;
    // A key longer than any key.
    client.send_message(3, key(), key(), b"").await;
    client.expect_reply(3).await;
    let long = mesh_proto::dxos::mesh::signal::ReceptionRequest { peer: vec![1; 65] };
    client.request(4, RECEIVE, &long, true).await;
    client.expect_error(4, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn reused_stream_id_is_refused() {
    let server = server_with(Config::default()).await;
    let mut client = RawClient::connect(&server.url()).await;
    client.join(1, key(), key()).await;
    client.expect_ready(1).await;
    client.receive(1, key()).await;
    client.expect_error(1, "DUPLICATE_STREAM_ID").await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let limits = Limits { max_frame_size: 1024, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut bad = RawClient::connect(&server.url()).await;
    bad.send_bytes(vec![0; 4096]).await;
    bad.expect_closed().await;
    assert_eq!(server.stats().frames_rejected, 1);
    server_still_relays(&server.url()).await;
}

#[tokio::test]
async fn responses_from_a_client_are_a_protocol_violation() {
    let server = server_with(Config::default()).await;
    let mut bad = RawClient::connect(&server.url()).await;
    let response = Response { id: Some(1), content: Some(response::Content::Close(true)) };
    bad.send_bytes(RpcMessage { content: Some(rpc_message::Content::Response(response)) }.encode_to_vec())
        .await;
    assert_eq!(bad.expect_closed().await, Some(1002));
    server_still_relays(&server.url()).await;
}

#[tokio::test]
async fn ping_text_frames_are_ignored() {
    let server = server_with(Config::default()).await;
    let mut client = RawClient::connect(&server.url()).await;
    client.send_text("__ping__").await;
    client.send_text("anything else").await;
    client.join(0, key(), key()).await;
    client.expect_ready(0).await;
    assert_eq!(server.stats().frames_rejected, 0);
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_get_rate_limit_exceeded() {
    let limits = Limits { rate_limit: RateLimit { per_second: 0.001, burst: 3 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut client = RawClient::connect(&server.url()).await;
    for id in 0..3 {
        client.send_message(id, key(), key(), b"").await;
        client.expect_reply(id).await;
    }
    client.send_message(3, key(), key(), b"").await;
    client.expect_error(3, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(server.stats().rate_limited, 1);
    // Other connections have their own budget.
    server_still_relays(&server.url()).await;
}

#[tokio::test]
async fn joins_beyond_the_limit_are_refused() {
    let limits = Limits { max_joins_per_connection: 2, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut client = RawClient::connect(&server.url()).await;
    for id in 0..2 {
        client.join(id, key(), key()).await;
        client.expect_ready(id).await;
    }
    client.join(2, key(), key()).await;
    client.expect_error(2, "LIMIT_EXCEEDED").await;
    // Closing one frees its place.
    client.close_stream(0).await;
    client.join(3, key(), key()).await;
    client.expect_ready(3).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let _a = RawClient::connect(&server.url()).await;
    let _b = RawClient::connect(&server.url()).await;
    let refused = tokio_tungstenite::connect_async(server.url()).await.expect_err("third connection refused");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other}"),
    }
    assert_eq!(server.stats().connections_rejected, 1);
}

#[tokio::test]
async fn idle_connections_are_closed_and_leave_their_topics() {
    let limits = Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut idle = RawClient::connect(&server.url()).await;
    idle.join(0, key(), key()).await;
    idle.expect_ready(0).await;
    assert_eq!(server.stats().members, 1);
    assert_eq!(idle.expect_closed().await, Some(1000));
    // The server leaves the topics before it sends the close frame.
    assert_eq!((server.stats().members, server.stats().connections), (0, 0));
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_others() {
    let limits = Limits { send_queue: 8, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let (sender, sleepy) = (key(), key());
    let mut stalled = RawClient::connect(&server.url()).await;
    stalled.receive(0, sleepy).await;
    stalled.expect_ready(0).await;
    // The stalled client never reads again. Flood it with large messages.
    let mut flooder = RawClient::connect(&server.url()).await;
    let body = vec![7u8; 32 * 1024];
    for id in 0..200 {
        flooder.send_message(id, sender, sleepy, &body).await;
        flooder.expect_reply(id).await;
    }
    assert!(server.stats().messages_dropped > 0, "a full queue drops instead of growing");
    server_still_relays(&server.url()).await;
    drop(stalled);
}

#[tokio::test]
async fn open_handshakes_are_rate_limited_like_requests() {
    let limits = Limits { rate_limit: RateLimit { per_second: 0.001, burst: 3 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut client = RawClient::connect(&server.url()).await;
    for _ in 0..1_000 {
        client.open().await;
    }
    // A request after the flood: its answer comes after every open_ack the server wrote.
    client.send_message(9, key(), key(), b"").await;
    let mut acks = 0;
    loop {
        match client.next().await {
            Received::OpenAck => acks += 1,
            Received::Response(response) if response.id == Some(9) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks, 3, "only the burst is answered");
    assert_eq!(server.stats().rate_limited, 1_000 - 3 + 1);
}

#[tokio::test]
async fn stream_closes_take_from_the_rate_limit() {
    let limits = Limits { rate_limit: RateLimit { per_second: 0.001, burst: 3 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let mut client = RawClient::connect(&server.url()).await;
    for id in 100..103 {
        client.close_stream(id).await;
    }
    client.send_message(1, key(), key(), b"").await;
    client.expect_error(1, "RATE_LIMIT_EXCEEDED").await;
}

#[tokio::test]
async fn closing_an_open_stream_works_even_beyond_the_rate_limit() {
    let limits = Limits { rate_limit: RateLimit { per_second: 0.001, burst: 2 }, ..Limits::default() };
    let server = server_with(Config::default().with_limits(limits)).await;
    let (topic, alice, bob) = (key(), key(), key());
    let mut watcher = RawClient::connect(&server.url()).await;
    watcher.join(0, topic, alice).await;
    watcher.expect_ready(0).await;
    let mut client = RawClient::connect(&server.url()).await;
    client.join(0, topic, bob).await;
    client.expect_ready(0).await;
    client.expect_event(0).await;
    watcher.expect_event(0).await;
    client.send_message(1, key(), key(), b"").await;
    client.expect_reply(1).await;
    // The budget is spent, yet leaving the topic must not leave a member behind.
    client.close_stream(0).await;
    assert_eq!(left_peer(&watcher.expect_event(0).await), Some(bob.as_bytes().to_vec()));
}

#[tokio::test]
async fn a_long_violation_still_closes_with_a_valid_close_frame() {
    let server = server_with(Config::default()).await;
    let mut bad = RawClient::connect(&server.url()).await;
    // A request whose payload's type URL is not UTF-8: prost names every enclosing field in its
    // error, which makes a reason longer than a close frame may carry.
    let any = [vec![0x0a, 0x02, 0xff, 0xfe]].concat();
    let request = [vec![0x0a, 0x01, b'm', 0x12, any.len() as u8], any].concat();
    let message = [vec![0x0a, request.len() as u8], request].concat();
    bad.send_bytes(message).await;
    assert_eq!(bad.expect_closed().await, Some(1002));
}
