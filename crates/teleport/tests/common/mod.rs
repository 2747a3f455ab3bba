//! Helpers shared by the integration tests: DXOS's `example.testing.rpc` test service as prost
//! types and an extension that serves it, opens an RPC port and a byte stream, and hands both to
//! the test.

#![allow(dead_code, unreachable_pub)]

pub mod wire;

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_teleport::muxer::RPC_CONTENT_TYPE;
use mesh_teleport::rpc::{RpcConfig, RpcPeer};
use mesh_teleport::service::Router;
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Stream, Teleport};
use tokio::sync::{mpsc, watch};

/// Two Teleports over an in-memory byte stream, `a` the initiator, each with `params` applied.
pub fn pair_with(params: impl Fn(Params) -> Params) -> (Teleport, Teleport) {
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
    let a = Teleport::new(a_io, params(Params::new(true, a_key, b_key)));
    let b = Teleport::new(b_io, params(Params::new(false, b_key, a_key)));
    (a, b)
}

/// Two Teleports with the default parameters.
pub fn pair() -> (Teleport, Teleport) {
    pair_with(|p| p)
}

/// `example.testing.rpc.TestRpcRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TestRpcRequest {
    #[prost(string, tag = "1")]
    pub data: String,
}

impl prost::Name for TestRpcRequest {
    const NAME: &'static str = "TestRpcRequest";
    const PACKAGE: &'static str = "example.testing.rpc";
}

/// `example.testing.rpc.TestRpcResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TestRpcResponse {
    #[prost(string, tag = "1")]
    pub data: String,
}

impl prost::Name for TestRpcResponse {
    const NAME: &'static str = "TestRpcResponse";
    const PACKAGE: &'static str = "example.testing.rpc";
}

pub const TEST_CALL: &str = "example.testing.rpc.TestService.TestCall";
pub const VOID_CALL: &str = "example.testing.rpc.TestService.VoidCall";

/// What the test extension hands over once open.
pub struct Opened {
    pub rpc: RpcPeer,
    pub bulk: Stream,
    pub ctx: ExtensionContext,
}

/// Serves `TestService` (`TestCall` answers `"<prefix>: <data>"`, `VoidCall` answers nothing,
/// and our own `Hang` never answers), opens port `rpc` and stream `bulk`.
pub struct TestExtension {
    pub opened: mpsc::Sender<Opened>,
    pub prefix: &'static str,
    pub config: RpcConfig,
    pub closed: Option<mpsc::Sender<&'static str>>,
}

impl TestExtension {
    pub fn new(prefix: &'static str) -> (Self, mpsc::Receiver<Opened>) {
        let (tx, rx) = mpsc::channel(1);
        (Self { opened: tx, prefix, config: RpcConfig::default(), closed: None }, rx)
    }
}

/// A method that never answers, to test calls cut off mid-way.
pub const HANG_CALL: &str = "example.testing.rpc.TestService.Hang";

#[async_trait]
impl Extension for TestExtension {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let prefix = self.prefix;
        let router = Router::new()
            .route(TEST_CALL, move |request: TestRpcRequest| async move {
                Ok(TestRpcResponse { data: format!("{prefix}: {}", request.data) })
            })
            .route(VOID_CALL, |_: ()| async { Ok(()) })
            .route(HANG_CALL, |_: ()| async {
                std::future::pending::<()>().await;
                Ok(())
            });
        let rpc = RpcPeer::new(ctx.create_port("rpc", Some(RPC_CONTENT_TYPE))?, router, self.config.clone());
        let bulk = ctx.create_stream("bulk", Some("application/octet-stream"))?;
        rpc.open().await?;
        let _ = self.opened.send(Opened { rpc, bulk, ctx }).await;
        Ok(())
    }

    async fn on_close(&self, _error: Option<String>) {
        if let Some(closed) = &self.closed {
            let _ = closed.send("close").await;
        }
    }

    async fn on_abort(&self, _error: Option<String>) {
        if let Some(closed) = &self.closed {
            let _ = closed.send("abort").await;
        }
    }
}

/// Counts the futures alive that hold one of its guards.
#[derive(Clone)]
pub struct Alive(watch::Sender<usize>);

/// Counted by its [`Alive`] while it lives.
pub struct Guard(watch::Sender<usize>);

impl Alive {
    pub fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    pub fn guard(&self) -> Guard {
        self.0.send_modify(|n| *n += 1);
        Guard(self.0.clone())
    }

    /// Waits until exactly `count` guards are alive.
    pub async fn until(&self, count: usize) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == count).await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
