//! Presence over gossip between Teleport connections: two peers, four along a chain, and a peer
//! that goes offline when its connection drops.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mesh_extensions::{
    gossip::{EXTENSION, Gossip, GossipConfig},
    presence::{PeerInfo, Presence, PresenceConfig, PresenceEvent},
};
use mesh_keys::{Keypair, PublicKey};
use mesh_teleport::{Params, Teleport};
use tokio::sync::broadcast;

/// How long anything that should happen may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);
const ANNOUNCE: Duration = Duration::from_millis(100);
const OFFLINE: Duration = Duration::from_millis(1000);

struct Peer {
    gossip: Gossip,
    presence: Presence,
    events: broadcast::Receiver<PresenceEvent>,
}

impl Peer {
    fn new() -> Self {
        let gossip = Gossip::new(Keypair::generate().public(), GossipConfig::default());
        let presence =
            Presence::spawn(gossip.clone(), PresenceConfig::default().with_timing(ANNOUNCE, OFFLINE));
        let events = presence.events();
        Self { gossip, presence, events }
    }

    fn key(&self) -> PublicKey {
        self.gossip.local_peer()
    }

    /// Waits until every one of `peers` came online here.
    async fn wait_online(&mut self, peers: &[&Peer]) {
        let mut missing: Vec<PublicKey> = peers.iter().map(|p| p.key()).collect();
        missing.retain(|key| !self.presence.online().iter().any(|info| info.peer == *key));
        tokio::time::timeout(PATIENCE, async {
            while !missing.is_empty() {
                if let Ok(PresenceEvent::Online(info)) = self.events.recv().await {
                    missing.retain(|key| *key != info.peer);
                }
            }
        })
        .await
        .expect("the peers come online");
    }

    /// Waits for `peer` to go offline here.
    async fn wait_offline(&mut self, peer: PublicKey) {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(PresenceEvent::Offline(gone)) = self.events.recv().await
                    && gone == peer
                {
                    return;
                }
            }
        })
        .await
        .expect("the peer goes offline");
    }

    fn connections_of(&self, peer: &Peer) -> Vec<PublicKey> {
        let online: Vec<PeerInfo> = self.presence.online();
        online
            .into_iter()
            .find(|info| info.peer == peer.key())
            .map(|info| info.connections)
            .unwrap_or_default()
    }
}

fn link(a: &Peer, b: &Peer) -> [Teleport; 2] {
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let a_end = Teleport::new(a_io, Params::new(true, a.key(), b.key()));
    let b_end = Teleport::new(b_io, Params::new(false, b.key(), a.key()));
    a_end.add_extension(EXTENSION, a.gossip.extension()).unwrap();
    b_end.add_extension(EXTENSION, b.gossip.extension()).unwrap();
    [a_end, b_end]
}

fn sorted(mut keys: Vec<PublicKey>) -> Vec<PublicKey> {
    keys.sort();
    keys
}

#[tokio::test]
async fn two_peers_see_each_other_online() {
    let (mut a, mut b) = (Peer::new(), Peer::new());
    let _ab = link(&a, &b);
    a.wait_online(&[&b]).await;
    b.wait_online(&[&a]).await;
    assert_eq!(a.presence.online().len(), 1);
    assert_eq!(a.presence.online()[0].identity, Some(b.key()));
}

#[tokio::test]
async fn four_peers_on_a_chain_see_all_others_and_their_connections() {
    let mut peers: Vec<Peer> = (0..4).map(|_| Peer::new()).collect();
    let _links: Vec<[Teleport; 2]> = (0..3).map(|i| link(&peers[i], &peers[i + 1])).collect();
    for index in 0..4 {
        let (before, rest) = peers.split_at_mut(index);
        let (me, after) = rest.split_first_mut().unwrap();
        let others: Vec<&Peer> = before.iter().chain(after.iter()).collect();
        me.wait_online(&others).await;
    }
    // The far end learns whom the middle peers are connected to; the reports catch up with the
    // links as announces go round.
    let expected = sorted(vec![peers[0].key(), peers[2].key()]);
    let middle = peers[1].key();
    let mut announced = peers[3].connections_of(&peers[1]);
    tokio::time::timeout(PATIENCE, async {
        while sorted(announced.clone()) != expected {
            if let Ok(PresenceEvent::Updated(info)) = peers[3].events.recv().await
                && info.peer == middle
            {
                announced = info.connections;
            }
        }
    })
    .await
    .expect("the middle peer's connections are announced");
    assert_eq!(sorted(announced), expected);
    let graph = peers[0].presence.graph();
    assert_eq!(graph.len(), 4);
    assert_eq!(graph[&peers[0].key()], vec![peers[1].key()]);
}

#[tokio::test]
async fn a_peer_whose_connection_drops_goes_offline_within_the_timeout() {
    let (mut a, mut b, c) = (Peer::new(), Peer::new(), Peer::new());
    let _ab = link(&a, &b);
    let bc = link(&b, &c);
    a.wait_online(&[&b, &c]).await;
    b.wait_online(&[&a, &c]).await;

    let dropped_at = tokio::time::Instant::now();
    for end in &bc {
        end.close().await;
    }
    // Its neighbour sees it go at once; the far peer when its announces stop arriving.
    b.wait_offline(c.key()).await;
    a.wait_offline(c.key()).await;
    assert!(dropped_at.elapsed() < OFFLINE * 2, "offline after {:?}", dropped_at.elapsed());
    assert!(a.presence.online().iter().all(|info| info.peer != c.key()));
    assert_eq!(a.presence.online().len(), 1, "b stays online");
}
