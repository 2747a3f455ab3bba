//! Authenticated signaling: sessions prove their keys, and the policy decides what unproven
//! sessions may do.

mod common;

use common::*;
use mesh_keys::Keypair;
use mesh_proto::dxos::rpc::response;
use mesh_signal_server::{AuthPolicy, Config, Limits, RateLimit, StartError};

async fn server(auth: AuthPolicy) -> mesh_signal_server::Server {
    server_with(Config::default().with_auth(auth)).await
}

fn accepted(response: &mesh_proto::dxos::rpc::Response) -> bool {
    matches!(response.content, Some(response::Content::Payload(_)))
}

#[tokio::test]
async fn required_policy_refuses_unproven_keys_and_admits_proven_ones() {
    let server = server(AuthPolicy::Required).await;
    let identity = Keypair::generate();
    let mut client = RawClient::connect(&server.url()).await;
    client.join(0, key(), identity.public()).await;
    client.expect_error(0, "UNAUTHORIZED").await;
    client.receive(1, identity.public()).await;
    client.expect_error(1, "UNAUTHORIZED").await;
    client.send_message(2, identity.public(), key(), b"").await;
    client.expect_error(2, "UNAUTHORIZED").await;

    assert!(accepted(&client.authenticate(10, &identity, &host_of(&server)).await));
    client.join(20, key(), identity.public()).await;
    client.expect_ready(20).await;
    client.receive(21, identity.public()).await;
    client.expect_ready(21).await;
    client.send_message(22, identity.public(), key(), b"").await;
    client.expect_reply(22).await;
}

#[tokio::test]
async fn bad_signatures_and_replays_to_another_host_fail() {
    let server = server(AuthPolicy::Required).await;
    let identity = Keypair::generate();
    let mut client = RawClient::connect(&server.url()).await;
    // Signed for another server: the host is part of what is signed.
    let response = client.authenticate(0, &identity, "evil.example:443").await;
    assert!(is_error(&response, "AUTHENTICATION_FAILED"), "{response:?}");
    // No challenge asked for at all.
    let request = mesh_proto::mesh::v1::AuthenticateRequest {
        peer: identity.public().as_bytes().to_vec(),
        signature: vec![0; 64],
    };
    client.request(5, AUTHENTICATE, &request, false).await;
    client.expect_error(5, "AUTHENTICATION_FAILED").await;
    assert_eq!(server.stats().auth_failures, 2);
    // A failed attempt does not authenticate.
    client.join(6, key(), identity.public()).await;
    client.expect_error(6, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn optional_policy_protects_claimed_keys_only() {
    let server = server(AuthPolicy::Optional).await;
    let (owner, topic) = (Keypair::generate(), key());

    // Before anyone proves the key, anyone may use it: the DXOS behaviour.
    let mut impostor = RawClient::connect(&server.url()).await;
    impostor.join(0, topic, owner.public()).await;
    impostor.expect_ready(0).await;
    impostor.receive(1, owner.public()).await;
    impostor.expect_ready(1).await;

    let mut watcher = RawClient::connect(&server.url()).await;
    watcher.join(0, topic, key()).await;
    watcher.expect_ready(0).await;
    watcher.expect_event(0).await;
    impostor.expect_event(0).await;

    // The owner proves the key: the impostor's join and inbox are withdrawn.
    let mut real = RawClient::connect(&server.url()).await;
    assert!(accepted(&real.authenticate(0, &owner, &host_of(&server)).await));
    let mut revoked =
        vec![impostor.response().await.id.expect("id"), impostor.response().await.id.expect("id")];
    revoked.sort();
    assert_eq!(revoked, [0, 1]);
    assert_eq!(left_peer(&watcher.expect_event(0).await), Some(owner.public().as_bytes().to_vec()));

    // From now on, unproven sessions cannot join as, read, or send as the owner.
    impostor.join(2, topic, owner.public()).await;
    impostor.expect_error(2, "UNAUTHORIZED").await;
    impostor.receive(3, owner.public()).await;
    impostor.expect_error(3, "UNAUTHORIZED").await;
    impostor.send_message(4, owner.public(), key(), b"forged").await;
    impostor.expect_error(4, "UNAUTHORIZED").await;
    // Other keys stay open to everyone.
    impostor.join(5, topic, key()).await;
    impostor.expect_ready(5).await;

    // The owner may use its key, but not speak as another.
    real.join(10, topic, owner.public()).await;
    real.expect_ready(10).await;
    // It hears of the two members: the watcher and the impostor's other key.
    real.expect_event(10).await;
    real.expect_event(10).await;
    real.send_message(11, key(), key(), b"").await;
    real.expect_error(11, "UNAUTHORIZED").await;
    real.send_message(12, owner.public(), key(), b"").await;
    real.expect_reply(12).await;
}

#[tokio::test]
async fn a_claim_ends_with_the_authenticated_session() {
    let server = server(AuthPolicy::Optional).await;
    let (owner, topic) = (Keypair::generate(), key());
    let mut real = RawClient::connect(&server.url()).await;
    assert!(accepted(&real.authenticate(0, &owner, &host_of(&server)).await));
    real.join(2, topic, owner.public()).await;
    real.expect_ready(2).await;
    let mut other = RawClient::connect(&server.url()).await;
    other.join(0, topic, key()).await;
    other.expect_ready(0).await;
    other.expect_event(0).await;
    other.receive(1, owner.public()).await;
    other.expect_error(1, "UNAUTHORIZED").await;

    // The owner's connection drops; its PeerLeft comes after its claim is released.
    real.abort();
    assert_eq!(left_peer(&other.expect_event(0).await), Some(owner.public().as_bytes().to_vec()));
    other.receive(3, owner.public()).await;
    other.expect_ready(3).await;
}

#[tokio::test]
async fn off_policy_refuses_authentication_requests() {
    let server = server(AuthPolicy::Off).await;
    let mut client = RawClient::connect(&server.url()).await;
    let request = mesh_proto::mesh::v1::ChallengeRequest { peer: key().as_bytes().to_vec() };
    client.request(0, CHALLENGE, &request, false).await;
    client.expect_error(0, "AUTH_DISABLED").await;
}

#[tokio::test]
async fn a_connection_proves_at_most_the_configured_number_of_keys() {
    let limits = Limits { max_proven_keys_per_connection: 2, ..Limits::default() };
    let server = server_with(Config::default().with_auth(AuthPolicy::Optional).with_limits(limits)).await;
    let (first, second, third) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let mut client = RawClient::connect(&server.url()).await;
    assert!(accepted(&client.authenticate(0, &first, &host_of(&server)).await));
    assert!(accepted(&client.authenticate(2, &second, &host_of(&server)).await));
    let refused = client.authenticate(4, &third, &host_of(&server)).await;
    assert!(is_error(&refused, "LIMIT_EXCEEDED"), "{refused:?}");
    // Proving a key again adds nothing, so it is still answered.
    assert!(accepted(&client.authenticate(6, &first, &host_of(&server)).await));
    // The refused key was not claimed: an unauthenticated session may still use it.
    let mut other = RawClient::connect(&server.url()).await;
    other.join(0, key(), third.public()).await;
    other.expect_ready(0).await;
}

/// The public URL of the servers in the relay tests, and its authority.
const PUBLIC_URL: &str = "wss://signal-b.example:8443/.well-known/dx/signal";
const PUBLIC_AUTHORITY: &str = "signal-b.example:8443";
/// The authority of another server, which relays its clients' challenges to this one.
const RELAY_AUTHORITY: &str = "signal-a.example";

async fn server_at_public_url() -> mesh_signal_server::Server {
    let config = Config::default().with_auth(AuthPolicy::Required).with_public_url(Some(PUBLIC_URL.into()));
    server_with(config).await
}

#[tokio::test]
async fn a_signature_relayed_from_another_server_is_refused_whatever_the_host_header() {
    let server = server_at_public_url().await;
    let identity = Keypair::generate();
    // The relaying server connects with its own authority in Host, as its client did with it.
    for host in [RELAY_AUTHORITY, PUBLIC_AUTHORITY] {
        let mut relay = RawClient::connect_with_host(&server.url(), host).await;
        let response = relay.authenticate(0, &identity, RELAY_AUTHORITY).await;
        assert!(is_error(&response, "AUTHENTICATION_FAILED"), "Host {host}: {response:?}");
        relay.join(2, key(), identity.public()).await;
        relay.expect_error(2, "UNAUTHORIZED").await;
    }
    assert_eq!(server.stats().auth_failures, 2);
}

#[tokio::test]
async fn a_signature_for_the_public_url_is_accepted_whatever_the_host_header() {
    let server = server_at_public_url().await;
    let identity = Keypair::generate();
    // Behind a proxy the Host header may be anything; the public URL decides.
    let mut client = RawClient::connect(&server.url()).await;
    assert!(accepted(&client.authenticate(0, &identity, PUBLIC_AUTHORITY).await));
    client.join(2, key(), identity.public()).await;
    client.expect_ready(2).await;
}

#[tokio::test]
async fn a_public_url_without_a_host_is_refused_at_start() {
    for url in ["https://signal.example/", "ws:///.well-known/dx/signal", "signal.example"] {
        let config = Config::default().with_public_url(Some(url.into()));
        match mesh_signal_server::Server::start(config).await {
            Err(StartError::PublicUrl(refused)) => assert_eq!(refused, url),
            Err(other) => panic!("{url}: unexpected error {other}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }
}

#[tokio::test]
async fn a_claim_reaches_a_session_whose_queue_is_full() {
    let limits = Limits {
        send_queue: 2,
        rate_limit: RateLimit { per_second: 1e6, burst: 1_000_000 },
        write_timeout: std::time::Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = server_with(Config::default().with_auth(AuthPolicy::Optional).with_limits(limits)).await;
    let (owner, topic) = (Keypair::generate(), key());
    // An impostor joins and reads as the owner's key, then stops reading while its inbox floods.
    let mut impostor = RawClient::connect_with_small_window(&server.url()).await;
    impostor.join(0, topic, owner.public()).await;
    impostor.expect_ready(0).await;
    impostor.receive(1, owner.public()).await;
    impostor.expect_ready(1).await;
    let mut flooder = RawClient::connect(&server.url()).await;
    let body = vec![7u8; 60 * 1024];
    let mut id = 0;
    while server.stats().messages_dropped == 0 {
        assert!(id < 5_000, "the impostor's queue never filled");
        flooder.send_message(id, key(), owner.public(), &body).await;
        flooder.expect_reply(id).await;
        id += 1;
    }

    // The owner proves the key while the impostor's queue is full.
    let mut real = RawClient::connect(&server.url()).await;
    assert!(accepted(&real.authenticate(0, &owner, &host_of(&server)).await));
    // Reading again, the impostor finds the messages relayed before, then both streams withdrawn.
    let mut withdrawn = std::collections::HashSet::new();
    while withdrawn.len() < 2 {
        let response = impostor.response().await;
        if is_error(&response, "UNAUTHORIZED") {
            withdrawn.insert(response.id.expect("an id"));
        }
    }
    assert_eq!(withdrawn, [0, 1].into());
}
