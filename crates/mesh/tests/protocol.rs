//! Teleport as a swarm's protocol: each connection runs Teleport with the swarm's session and the
//! extensions the setup adds, and ends cleanly when the swarm closes it.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use mesh::TeleportProtocol;
use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_swarm::{ConnectionInfo, Protocol};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Teleport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reports the session of every connection it opens on.
struct Opened(mpsc::UnboundedSender<PublicKey>);

#[async_trait]
impl Extension for Opened {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let _ = self.0.send(ctx.session());
        Ok(())
    }
}

#[tokio::test]
async fn a_swarm_connection_runs_teleport_with_the_swarms_session() {
    let (tx, mut opened) = mpsc::unbounded_channel();
    let (sessions_tx, mut sessions) = mpsc::unbounded_channel();
    let protocol = TeleportProtocol::new(move |teleport| {
        let _ = sessions_tx.send(teleport.session());
        teleport.add_extension("x", Opened(tx.clone())).unwrap();
    });
    let (io, remote_io) = tokio::io::duplex(64 << 10);
    let (own, remote, session) = (PublicKey::random(), PublicKey::random(), PublicKey::random());
    let info = ConnectionInfo {
        own,
        remote,
        topic: DiscoveryKey::from_party(&PublicKey::random()),
        session,
        initiator: true,
        binding: None,
    };
    let close = CancellationToken::new();
    let running = {
        let close = close.clone();
        tokio::spawn(async move { protocol.run(info, Box::new(io), close).await })
    };
    let remote_side = Teleport::new(remote_io, Params::new(false, remote, own));
    let (remote_tx, _remote_opened) = mpsc::unbounded_channel();
    remote_side.add_extension("x", Opened(remote_tx)).unwrap();
    assert_eq!(sessions.recv().await, Some(session));
    assert_eq!(opened.recv().await, Some(session));
    close.cancel();
    assert!(running.await.unwrap().is_ok(), "the protocol ends cleanly");
}
