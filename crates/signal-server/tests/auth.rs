//! Authenticated signaling: sessions prove their keys, and the policy decides what unproven
//! sessions may do.

mod common;

use common::*;
use mesh_keys::Keypair;
use mesh_proto::dxos::rpc::response;
use mesh_signal_server::{AuthPolicy, Config};

async fn server(auth: AuthPolicy) -> mesh_signal_server::Server {
    server_with(Config { auth, ..Config::default() }).await
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
