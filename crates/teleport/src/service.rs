//! A typed helper: serve prost-typed methods by name without writing `RpcMessage` plumbing.
//!
//! ```
//! use mesh_teleport::rpc::RpcHandler;
//! use mesh_teleport::service::Router;
//! use mesh_proto::dxos::mesh::teleport::control::RegisterExtensionRequest;
//!
//! let router = Router::new().route(
//!     "dxos.mesh.teleport.control.ControlService.RegisterExtension",
//!     |request: RegisterExtensionRequest| async move {
//!         println!("remote registered {}", request.name);
//!         Ok(())
//!     },
//! );
//! # let _: &dyn RpcHandler = &router;
//! ```
//! Callers use [`RpcPeer::call_typed`](crate::rpc::RpcPeer::call_typed).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use mesh_proto::{Any, Message, Name, any};

use crate::error::RpcError;
use crate::rpc::RpcHandler;

type Route = Arc<dyn Fn(Any) -> BoxFuture<'static, Result<Any, RpcError>> + Send + Sync>;

/// Serves methods by full name (`package.Service.Method`), each decoding its request as one prost
/// type and encoding its answer as another. Unknown methods are answered with an error.
#[derive(Default, Clone)]
pub struct Router {
    routes: HashMap<String, Route>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("methods", &self.routes.keys().collect::<Vec<_>>()).finish()
    }
}

impl Router {
    /// A router serving nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `method` with `handler`. The request payload is decoded as `Req` whatever its
    /// `type_url` says (the method fixes the type); the answer is packed with a leading-dot
    /// `type_url`, as DXOS does. Return `()` for `google.protobuf.Empty`.
    pub fn route<Req, Resp, F, Fut>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        Req: Message + Name + Default + 'static,
        Resp: Message + Name + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let route: Route = Arc::new(move |payload: Any| {
            let handler = handler.clone();
            Box::pin(async move {
                let request: Req =
                    any::decode_value(&payload).map_err(|err| RpcError::Malformed(err.to_string()))?;
                let answer = handler(request).await?;
                Ok(any::pack_request(&answer))
            })
        });
        self.routes.insert(method.into(), route);
        self
    }
}

#[async_trait]
impl RpcHandler for Router {
    async fn call(&self, method: &str, payload: Any) -> Result<Any, RpcError> {
        match self.routes.get(method) {
            Some(route) => route(payload).await,
            None => Err(RpcError::remote("Error", format!("Method not supported: {method}"))),
        }
    }
}
