//! The built-in control extension `dxos.mesh.teleport.control`: opened by both sides at once on
//! channel `dxos.mesh.teleport.control/rpc`, it serves `ControlService.RegisterExtension` (the
//! remote added an extension) and `ControlService.Heartbeat` (echo the timestamp), and sends a
//! heartbeat every interval; one unanswered for the heartbeat timeout aborts the connection.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use mesh_proto::Timestamp;
use mesh_proto::dxos::mesh::teleport::control::{
    ControlHeartbeatRequest, ControlHeartbeatResponse, RegisterExtensionRequest,
};

use crate::channel::Port;
use crate::error::RpcError;
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

pub(crate) async fn run(weak: Weak<Inner>, port: Port) {
    let Some(inner) = weak.upgrade() else { return };
    let interval = inner.params.heartbeat_interval;
    let timeout = inner.params.heartbeat_timeout;
    let on_register = weak.clone();
    let router = Router::new()
        .route(REGISTER_EXTENSION, move |request: RegisterExtensionRequest| {
            if let Some(inner) = on_register.upgrade() {
                inner.remote_registered(request.name);
            }
            async { Ok(()) }
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

fn abort(weak: &Weak<Inner>, rpc: &RpcPeer) {
    rpc.abort();
    if let Some(inner) = weak.upgrade() {
        inner.abort(CloseReason::HeartbeatTimeout);
    }
}

/// Tells the remote we added `name` (once the control RPC is open).
pub(crate) async fn register(weak: Weak<Inner>, name: String) {
    let Some(mut control) = weak.upgrade().map(|inner: Arc<Inner>| inner.control.subscribe()) else { return };
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
