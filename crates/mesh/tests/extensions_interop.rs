//! A mixed swarm: two real DXOS 0.8.3 peers running DXOS's own gossip and presence
//! (`@dxos/teleport-extension-gossip` over `@dxos/network-manager` with the TCP transport) and two
//! mesh peers running mesh's, joined through mesh's signal server. A message posted on either side
//! reaches both peers of the other side, and presence on every peer lists the other three.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use mesh::{
    TeleportProtocol,
    gossip::{EXTENSION, Gossip, GossipConfig, Subscription},
    presence::{Presence, PresenceConfig, PresenceEvent},
};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Any;
use mesh_signal::Client;
use mesh_swarm::{NetworkManager, SwarmConfig, SwarmHandle, topology::FullyConnected};
use mesh_transport::tcp::TcpTransportFactory;

use common::{DxosPeer, PATIENCE};
/// The payload type both sides use for chat lines.
const TEXT_TYPE: &str = "mesh.test.Text";

struct MeshPeer {
    key: PublicKey,
    gossip: Gossip,
    presence: Presence,
    chat: Subscription,
    _swarm: SwarmHandle,
}

impl MeshPeer {
    async fn join(url: &str, topic: DiscoveryKey) -> Self {
        let pair = Keypair::generate();
        let key = pair.public();
        let gossip = Gossip::new(key, GossipConfig::default());
        let presence = Presence::spawn(
            gossip.clone(),
            PresenceConfig::default().with_timing(Duration::from_millis(200), Duration::from_secs(3)),
        );
        let chat = gossip.subscribe("chat");
        let for_connections = gossip.clone();
        let protocol = TeleportProtocol::new(move |teleport| {
            teleport.add_extension(EXTENSION, for_connections.extension()).expect("a valid extension name");
        });
        let manager = NetworkManager::new(
            key,
            Arc::new(Client::connect(url).unwrap()),
            Arc::new(TcpTransportFactory::default().with_identity(pair)),
            SwarmConfig::default(),
        )
        .await
        .unwrap();
        let swarm = manager.join(topic, Box::new(FullyConnected), Arc::new(protocol)).await.unwrap();
        Self { key, gossip, presence, chat, _swarm: swarm }
    }

    /// Waits until presence lists every one of `peers` online.
    async fn wait_online(&self, peers: &[PublicKey]) {
        let mut events = self.presence.events();
        let all_online = |presence: &Presence| {
            let online: BTreeSet<PublicKey> = presence.online().into_iter().map(|info| info.peer).collect();
            peers.iter().all(|peer| online.contains(peer))
        };
        tokio::time::timeout(PATIENCE, async {
            while !all_online(&self.presence) {
                let _: Result<PresenceEvent, _> = events.recv().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("presence lists {:?}", self.presence.online()));
    }

    /// Waits for the chat line `text` from `origin`.
    async fn wait_chat(&mut self, origin: PublicKey, text: &str) {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let message = self.chat.recv().await.unwrap();
                if message.origin == origin && message.payload.value == text.as_bytes() {
                    assert_eq!(message.payload.type_url, TEXT_TYPE);
                    return;
                }
            }
        })
        .await
        .expect("the chat line arrives");
    }
}

/// Waits until DXOS's presence on `peer` lists every one of `peers` online.
async fn wait_dxos_online(peer: &mut DxosPeer, peers: &[PublicKey]) {
    let wanted: BTreeSet<String> = peers.iter().map(PublicKey::to_hex).collect();
    peer.wait(|e| {
        let online: BTreeSet<String> = e["online"]
            .as_array()
            .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        e["event"] == "presence" && wanted.is_subset(&online)
    })
    .await;
}

/// Waits until `peer` printed the chat line `text` from `origin`.
async fn wait_dxos_chat(peer: &mut DxosPeer, origin: PublicKey, text: &str) {
    peer.wait(|e| e["event"] == "gossip" && e["origin"] == origin.to_hex() && e["text"] == text).await;
}

#[tokio::test]
async fn dxos_and_mesh_peers_share_gossip_and_presence() {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await.unwrap();
    let url = server.url();
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let mut dxos_a = DxosPeer::spawn("dxos-gossip-peer.mjs", &url, topic).await;
    let mut dxos_b = DxosPeer::spawn("dxos-gossip-peer.mjs", &url, topic).await;
    let mut mesh_a = MeshPeer::join(&url, topic).await;
    let mut mesh_b = MeshPeer::join(&url, topic).await;
    let all = [dxos_a.key, dxos_b.key, mesh_a.key, mesh_b.key];
    let others = |me: PublicKey| all.iter().copied().filter(|k| *k != me).collect::<Vec<_>>();

    // Presence on every peer lists the other three.
    mesh_a.wait_online(&others(mesh_a.key)).await;
    mesh_b.wait_online(&others(mesh_b.key)).await;
    let others_of_a = others(dxos_a.key);
    wait_dxos_online(&mut dxos_a, &others_of_a).await;
    let others_of_b = others(dxos_b.key);
    wait_dxos_online(&mut dxos_b, &others_of_b).await;

    // A line from a DXOS peer reaches both mesh peers, and one from a mesh peer both DXOS peers.
    dxos_a.command("post from dxos").await;
    mesh_a.wait_chat(dxos_a.key, "from dxos").await;
    mesh_b.wait_chat(dxos_a.key, "from dxos").await;
    mesh_b.gossip.post("chat", Any { type_url: TEXT_TYPE.into(), value: b"from mesh".to_vec() });
    wait_dxos_chat(&mut dxos_a, mesh_b.key, "from mesh").await;
    wait_dxos_chat(&mut dxos_b, mesh_b.key, "from mesh").await;
    mesh_a.wait_chat(mesh_b.key, "from mesh").await;
}
