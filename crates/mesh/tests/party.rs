//! A party swarm over real sockets (TCP, and WebRTC): two members, admitted by the party key (one directly, one
//! through a delegate), and an outsider who joins the same topic with a credential it issued
//! itself. The members authenticate each other over their TCP links and exchange gossip and a
//! blob; the outsider's connections are refused on both members, and it receives neither.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mesh::{
    Any, DiscoveryKey, JoinOptions, Keypair, Node,
    auth::{Admission, Credential, PartyPolicy},
    topology::FullyConnected,
    transport::webrtc::WebRtcTransportFactory,
};

const PATIENCE: Duration = Duration::from_secs(30);

/// A node with `key` on TCP (the default, whose links between mesh peers are authenticated) or
/// on WebRTC (whose connections bind to their DTLS fingerprints).
async fn node(url: &str, key: &Keypair, webrtc: bool) -> Node {
    let builder = Node::builder().signal([url.to_owned()]).key(key.clone());
    let builder =
        if webrtc { builder.transport(Arc::new(WebRtcTransportFactory::loopback())) } else { builder };
    builder.spawn().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_get_party_data_over_tcp() {
    only_members_get_party_data(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_get_party_data_over_webrtc() {
    only_members_get_party_data(true).await;
}

async fn only_members_get_party_data(webrtc: bool) {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let party = Keypair::generate();
    let topic = DiscoveryKey::from_party(&party.public());
    let policy = PartyPolicy::new(party.public());

    let (alice, bob, delegate, outsider) =
        (Keypair::generate(), Keypair::generate(), Keypair::generate(), Keypair::generate());
    let alice_admission =
        Admission::direct(Credential::issue(&party, party.public(), alice.public(), None, false));
    let bob_admission =
        Admission::direct(Credential::issue(&party, party.public(), delegate.public(), None, true))
            .extended(Credential::issue(&delegate, party.public(), bob.public(), None, false));
    let forged =
        Admission::direct(Credential::issue(&outsider, party.public(), outsider.public(), None, false));

    let (a, b, c) = (
        node(&url, &alice, webrtc).await,
        node(&url, &bob, webrtc).await,
        node(&url, &outsider, webrtc).await,
    );
    let a = a
        .join_with(topic, FullyConnected, JoinOptions::default().party(policy.clone(), alice_admission))
        .await
        .unwrap();
    let b = b
        .join_with(topic, FullyConnected, JoinOptions::default().party(policy.clone(), bob_admission))
        .await
        .unwrap();
    let c = c
        .join_with(topic, FullyConnected, JoinOptions::default().party(policy.clone(), forged))
        .await
        .unwrap();
    let (mut at_b, mut at_c) = (b.gossip().subscribe("party"), c.gossip().subscribe("party"));

    // The members admit each other, and each refuses the outsider.
    for swarm in [&a, &b] {
        let mut stats = swarm.auth_stats().unwrap();
        tokio::time::timeout(PATIENCE, stats.wait_for(|stats| stats.passed >= 1 && stats.refused >= 1))
            .await
            .expect("a member admitted the other and refused the outsider")
            .unwrap();
    }
    tokio::time::timeout(PATIENCE, a.gossip().watch_peers().wait_for(|peers| peers.len() == 1))
        .await
        .unwrap()
        .unwrap();

    a.gossip().post("party", Any { type_url: "test.Secret".into(), value: b"members only".to_vec() });
    let message = tokio::time::timeout(PATIENCE, at_b.recv()).await.expect("bob got the gossip").unwrap();
    assert_eq!(message.payload.value, b"members only");

    let data = vec![7u8; 256 << 10];
    let hash = a.blobs().add(data.clone());
    let blob = tokio::time::timeout(PATIENCE, b.blobs().start_fetch(hash).finished()).await.unwrap().unwrap();
    assert!(blob.data() == data.as_slice());

    let outsider_fetch = c.blobs().start_fetch(hash);
    assert_eq!(outsider_fetch.progress().borrow().0, 0, "no piece of the blob reached the outsider");
    assert!(at_c.try_recv().is_none(), "no gossip reached the outsider");
    assert!(c.gossip().watch_peers().borrow().is_empty(), "the outsider has no gossip connection");
    assert_eq!(a.gossip().watch_peers().borrow().len(), 1, "alice gossips with bob only");
}
