//! The built-in control extension `dxos.mesh.teleport.control`: opened by both sides at once on
//! channel `dxos.mesh.teleport.control/rpc`, it serves `ControlService.RegisterExtension` (the
//! remote added an extension) and `ControlService.Heartbeat` (echo the timestamp), and sends a
//! heartbeat every interval; one unanswered for the heartbeat timeout aborts the connection.
//!
//! The names a remote registers are kept for the connection's life, so they are capped: at most
//! [`MAX_REMOTE_EXTENSIONS`] distinct names of at most [`MAX_EXTENSION_NAME_LEN`] bytes. A
//! registration over either cap is refused and aborts the connection as a protocol violation (DXOS
//! registers a handful of short names).

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use mesh_proto::Timestamp;
use mesh_proto::dxos::mesh::teleport::control::{
    ControlHeartbeatRequest, ControlHeartbeatResponse, RegisterExtensionRequest,
};
use tokio::sync::watch;

use crate::channel::Port;
use crate::error::{ProtocolError, RpcError};
use crate::muxer::CloseReason;
use crate::rpc::{RpcConfig, RpcPeer};
use crate::service::Router;
use crate::teleport::Inner;

/// The control extension's name.
pub const NAME: &str = "dxos.mesh.teleport.control";
/// Its RPC channel's tag.
pub const TAG: &str = "dxos.mesh.teleport.control/rpc";
/// `ControlService.RegisterExtension`.
pub const REGISTER_EXTENSION: &str = "dxos.mesh.teleport.control.ControlService.RegisterExtension";
/// `ControlService.Heartbeat`.
pub const HEARTBEAT: &str = "dxos.mesh.teleport.control.ControlService.Heartbeat";
/// The most distinct extension names a remote may register on one connection.
pub const MAX_REMOTE_EXTENSIONS: usize = 64;
/// The longest extension name (in bytes) a remote may register.
pub const MAX_EXTENSION_NAME_LEN: usize = 256;

pub(crate) async fn run(weak: Weak<Inner>, port: Port) {
    let Some(inner) = weak.upgrade() else { return };
    let interval = inner.params.heartbeat_interval;
    let timeout = inner.params.heartbeat_timeout;
    let on_register = weak.clone();
    let router = Router::new()
        .route(REGISTER_EXTENSION, move |request: RegisterExtensionRequest| {
            let refused = on_register.upgrade().and_then(|inner| refuse_violation(&inner, request.name));
            async move {
                match refused {
                    None => Ok(()),
                    Some(err) => Err(RpcError::remote("Error", err.to_string())),
                }
            }
        })
        .route(HEARTBEAT, |request: ControlHeartbeatRequest| async move {
            Ok(ControlHeartbeatResponse { request_timestamp: request.request_timestamp })
        });
    let config = RpcConfig { call_timeout: timeout, ..RpcConfig::default() };
    let rpc = RpcPeer::new(port, router, config);
    inner.control.send_replace(Some(rpc.clone()));
    drop(inner);

    match tokio::time::timeout(timeout, rpc.open()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return,
        Err(_) => return abort(&weak, &rpc),
    }
    loop {
        tokio::select! {
            _ = rpc.closed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let request = ControlHeartbeatRequest { request_timestamp: Some(Timestamp::from(SystemTime::now())) };
        match rpc.call_typed::<_, ControlHeartbeatResponse>(HEARTBEAT, &request).await {
            Ok(_) => {}
            Err(RpcError::Closed) => return,
            Err(err) => {
                tracing::debug!(%err, "heartbeat failed; aborting the connection");
                return abort(&weak, &rpc);
            }
        }
    }
}

/// Records a name the remote registered; a registration over the caps aborts the connection and
/// is returned to be refused.
fn refuse_violation(inner: &Arc<Inner>, name: String) -> Option<ProtocolError> {
    let err = inner.remote_registered(name).err()?;
    tracing::warn!(remote = %inner.params.remote_peer, %err, "aborting the connection: extension registration over the caps");
    inner.abort(CloseReason::Protocol(err.clone()));
    Some(err)
}

fn abort(weak: &Weak<Inner>, rpc: &RpcPeer) {
    rpc.abort();
    if let Some(inner) = weak.upgrade() {
        inner.abort(CloseReason::HeartbeatTimeout);
    }
}

/// Tells the remote we added `name` (once the control RPC is open); gives up when the connection
/// ends.
pub(crate) async fn register(weak: Weak<Inner>, name: String) {
    let Some(inner) = weak.upgrade() else { return };
    let closed = inner.closed();
    let control = inner.control.subscribe();
    drop(inner);
    tokio::select! {
        () = closed => {}
        () = send_registration(control, name) => {}
    }
}

async fn send_registration(mut control: watch::Receiver<Option<RpcPeer>>, name: String) {
    let rpc = match control.wait_for(Option::is_some).await {
        Ok(rpc) => rpc.clone(),
        Err(_) => return,
    };
    let Some(rpc) = rpc else { return };
    if rpc.opened().await.is_err() {
        return;
    }
    let request = RegisterExtensionRequest { name: name.clone() };
    if let Err(err) = rpc.call_typed::<_, ()>(REGISTER_EXTENSION, &request).await {
        tracing::debug!(name, %err, "registering an extension with the remote failed");
    }
}
