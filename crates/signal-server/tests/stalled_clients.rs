//! Clients that stop reading: every write to them has a deadline, so they are closed instead of
//! holding a connection slot, and they never delay shutdown.

mod common;

use std::time::Duration;

use common::*;
use mesh_keys::PublicKey;
use mesh_signal_server::{Config, Limits, RateLimit, Server};

/// The largest message body that fits the default frame limit with room for its envelope.
const BODY: usize = 60 * 1024;
/// Flood messages sent at most before a test gives up: far more than any socket buffers hold.
const MAX_FLOOD: usize = 5_000;

fn limits(write_timeout: Duration) -> Limits {
    Limits {
        rate_limit: RateLimit { per_second: 1e6, burst: 1_000_000 },
        send_queue: 4,
        write_timeout,
        ..Limits::default()
    }
}

/// A client that opens its inbox and then never reads again.
async fn stalled(server: &Server) -> (RawClient, PublicKey) {
    let peer = key();
    let mut client = RawClient::connect_with_small_window(&server.url()).await;
    client.receive(0, peer).await;
    client.expect_ready(0).await;
    (client, peer)
}

/// Sends large messages to `recipients` in turn until `done` holds (checked after each reply);
/// returns the flooding client.
async fn flood(server: &Server, recipients: &[PublicKey], done: impl Fn(&Server) -> bool) -> RawClient {
    let mut flooder = RawClient::connect(&server.url()).await;
    let body = vec![7u8; BODY];
    for id in 0..MAX_FLOOD {
        flooder.send_message(id as i32, key(), recipients[id % recipients.len()], &body).await;
        flooder.expect_reply(id as i32).await;
        if done(server) {
            return flooder;
        }
    }
    panic!("still not done after {MAX_FLOOD} messages: {:?}", server.stats());
}

#[tokio::test]
async fn clients_that_stop_reading_are_closed_after_the_write_timeout() {
    let config = Config::default().with_limits(limits(Duration::from_millis(500)));
    let server = server_with(config).await;
    let mut clients = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..4 {
        let (client, peer) = stalled(&server).await;
        clients.push(client);
        peers.push(peer);
    }
    let _flooder = flood(&server, &peers, |server| server.stats().writes_timed_out == 4).await;
    // Each stalled client, reading again, finds what was written before the server gave up, and
    // then the end of the connection.
    for mut client in clients {
        while !matches!(client.next().await, Received::Closed(_)) {}
    }
    assert_eq!(server.stats().connections, 1, "only the flooder is left");
}

/// A server with a write stuck on a client that stopped reading, whose write timeout (an hour)
/// is far longer than any test waits; returns the server and the clients keeping it stuck.
async fn server_stuck_writing() -> (Server, RawClient, RawClient) {
    let config = Config::default().with_limits(limits(Duration::from_secs(3600)));
    let server = server_with(config).await;
    let (client, peer) = stalled(&server).await;
    // Once messages are dropped, the connection's queue is full: its task is stuck writing.
    let flooder = flood(&server, &[peer], |server| server.stats().messages_dropped > 0).await;
    (server, client, flooder)
}

#[tokio::test]
async fn shutdown_is_not_delayed_by_a_client_that_stopped_reading() {
    let (server, _client, _flooder) = server_stuck_writing().await;
    assert!(server.shutdown(Duration::from_secs(5)).await, "every connection finished");
}

#[tokio::test]
async fn abort_is_not_delayed_by_a_client_that_stopped_reading() {
    let (server, _client, _flooder) = server_stuck_writing().await;
    tokio::time::timeout(PATIENCE, server.abort()).await.expect("abort returns");
}
