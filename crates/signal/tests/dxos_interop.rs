//! Real DXOS 0.8.3 clients (`@dxos/messaging` from npm) against mesh's signal server, alone and
//! together with mesh's Rust client and messenger.

mod common;

use common::{dxos::DxosPeer, *};
use mesh_keys::Keypair;
use mesh_signal::ClientConfig;
use mesh_signal_server::{AuthPolicy, Config};

#[tokio::test]
async fn two_dxos_clients_meet_exchange_a_reliable_message_and_see_the_leave() {
    let server = server().await;
    let topic = topic();
    let mut a = DxosPeer::spawn(&[server.url()]).await;
    let mut b = DxosPeer::spawn(&[server.url()]).await;
    a.join(topic).await;
    b.join(topic).await;
    a.wait_available(topic, b.key).await;
    b.wait_available(topic, a.key).await;

    a.send(b.key, "hello from a").await;
    b.wait_message(a.key, "hello from a").await;
    a.wait_delivered("hello from a").await;

    b.leave(topic).await;
    a.wait_left(topic, b.key).await;
    a.exit().await;
    b.exit().await;
}

#[tokio::test]
async fn dxos_and_rust_clients_exchange_reliable_messages_both_ways() {
    let server = server().await;
    let topic = topic();
    let mut dxos = DxosPeer::spawn(&[server.url()]).await;
    let mut rust = RustPeer::join(ClientConfig::new(server.url()), peer(), topic).await;
    dxos.join(topic).await;
    wait_available(&mut rust.events, topic, dxos.key).await;
    dxos.wait_available(topic, rust.key).await;

    dxos.send(rust.key, "from dxos").await;
    let received = rust.receive().await;
    assert_eq!((received.author, received.payload.value.as_slice()), (dxos.key, b"from dxos".as_slice()));
    dxos.wait_delivered("from dxos").await;

    rust.send(dxos.key, "from rust").await;
    dxos.wait_message(rust.key, "from rust").await;
    dxos.exit().await;
}

#[tokio::test]
async fn clients_rejoin_after_the_server_restarts_on_the_same_port() {
    let first = server().await;
    let listen = first.local_addr();
    let topic = topic();
    let mut dxos = DxosPeer::spawn(&[first.url()]).await;
    let mut rust = RustPeer::join(ClientConfig::new(first.url()), peer(), topic).await;
    dxos.join(topic).await;
    wait_available(&mut rust.events, topic, dxos.key).await;

    // Kill the server: every connection drops at once, without a close handshake.
    first.abort().await;
    let _second = server_with(Config::default().with_listen(listen)).await;

    // Both clients reconnect and rejoin by themselves: each sees the other again.
    wait_available(&mut rust.events, topic, dxos.key).await;
    dxos.wait_available(topic, rust.key).await;

    rust.send(dxos.key, "after restart").await;
    dxos.wait_message(rust.key, "after restart").await;
    dxos.send(rust.key, "dxos after restart").await;
    assert_eq!(rust.receive().await.payload.value, b"dxos after restart");
    dxos.exit().await;
}

#[tokio::test]
async fn dxos_clients_keep_working_beside_authenticated_rust_peers_in_optional_mode() {
    let server = server_with(Config::default().with_auth(AuthPolicy::Optional)).await;
    let (topic, identity) = (topic(), Keypair::generate());
    let key = identity.public();
    let config = ClientConfig::new(server.url()).with_identity(identity);
    let mut rust = RustPeer::join(config, key, topic).await;
    let mut dxos = DxosPeer::spawn(&[server.url()]).await;
    dxos.join(topic).await;
    wait_available(&mut rust.events, topic, dxos.key).await;
    dxos.wait_available(topic, rust.key).await;

    rust.send(dxos.key, "proven sender").await;
    dxos.wait_message(rust.key, "proven sender").await;
    dxos.send(rust.key, "unproven sender").await;
    assert_eq!(rust.receive().await.payload.value, b"unproven sender");
    dxos.wait_delivered("unproven sender").await;
    assert_eq!(server.stats().auth_failures, 0);
    dxos.exit().await;
}
