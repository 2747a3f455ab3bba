//! The gossip extension on one connection: serves `Announce` into the shared [`Gossip`] and sends
//! the connection's queued announces.
//!
//! [`Gossip`]: super::Gossip

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_proto::dxos::mesh::teleport::gossip::GossipMessage;
use mesh_teleport::{
    Extension, ExtensionContext, ExtensionError,
    muxer::RPC_CONTENT_TYPE,
    rpc::{RpcConfig, RpcPeer},
    service::Router,
};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use super::{ANNOUNCE, Shared};

/// Gossip on one connection; made by [`Gossip::extension`](super::Gossip::extension).
#[derive(Debug)]
pub struct GossipExtension {
    shared: Arc<Shared>,
    open: Mutex<Option<Open>>,
}

/// What an open extension holds: ending it ends the sending.
#[derive(Debug)]
struct Open {
    session: PublicKey,
    rpc: RpcPeer,
    _sending: AbortOnDropHandle<()>,
}

impl GossipExtension {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, open: Mutex::new(None) }
    }

    fn take_open(&self) -> Option<Open> {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(open) = &open {
            self.shared.disconnect(open.session);
        }
        open
    }
}

/// A connection can end without its extensions hearing of it (its task dropped): the connection
/// leaves the shared state then too.
impl Drop for GossipExtension {
    fn drop(&mut self) {
        self.take_open();
    }
}

#[async_trait]
impl Extension for GossipExtension {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("rpc", Some(RPC_CONTENT_TYPE))?;
        let (session, remote) = (ctx.session(), ctx.remote_peer());
        let shared = Arc::downgrade(&self.shared);
        let router = Router::new().route(ANNOUNCE, move |message: GossipMessage| {
            let shared = shared.clone();
            async move {
                if let Some(shared) = shared.upgrade() {
                    shared.receive(session, remote, message).await;
                }
                Ok(())
            }
        });
        let rpc = RpcPeer::new(port, router, RpcConfig::default());
        let config = self.shared.config();
        let (outbox, announces) = mpsc::channel(config.outbox_capacity.max(1));
        let sending = tokio::spawn(send_announces(rpc.clone(), announces, config.announces_in_flight.max(1)));
        self.shared.connect(session, remote, outbox);
        let open = Open { session, rpc, _sending: AbortOnDropHandle::new(sending) };
        *self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(open);
        Ok(())
    }

    async fn on_close(&self, _error: Option<String>) {
        if let Some(open) = self.take_open() {
            open.rpc.close().await;
        }
    }

    async fn on_abort(&self, _error: Option<String>) {
        if let Some(open) = self.take_open() {
            open.rpc.abort();
        }
    }
}

/// Opens the RPC session, then sends each queued announce, at most `in_flight` at once.
async fn send_announces(rpc: RpcPeer, mut announces: mpsc::Receiver<GossipMessage>, in_flight: usize) {
    if let Err(err) = rpc.open().await {
        debug!(%err, "gossip RPC did not open");
        return;
    }
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            announce = announces.recv(), if calls.len() < in_flight => {
                let Some(announce) = announce else { break };
                let rpc = rpc.clone();
                calls.spawn(async move {
                    if let Err(err) = rpc.call_typed::<_, ()>(ANNOUNCE, &announce).await {
                        debug!(%err, "announce failed");
                    }
                });
            }
            Some(_) = calls.join_next() => {}
        }
    }
    while calls.join_next().await.is_some() {}
}
