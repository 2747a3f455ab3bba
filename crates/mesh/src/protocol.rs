//! Teleport as the protocol of a swarm's connections.

use std::sync::Arc;

use async_trait::async_trait;
use mesh_extensions::auth::Authenticator;
use mesh_swarm::{ByteStream, ConnectionInfo, Protocol};
use tokio_util::sync::CancellationToken;

use mesh_teleport::{Params, Teleport};

type Setup = dyn Fn(&Teleport, &ConnectionInfo) + Send + Sync;

/// Runs Teleport over every connection of a swarm; `setup` adds the extensions to each.
#[derive(Clone)]
pub struct TeleportProtocol {
    setup: Arc<Setup>,
}

impl std::fmt::Debug for TeleportProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeleportProtocol").finish_non_exhaustive()
    }
}

impl TeleportProtocol {
    /// A protocol whose connections get their extensions from `setup`.
    pub fn new(setup: impl Fn(&Teleport) + Send + Sync + 'static) -> Self {
        Self { setup: Arc::new(move |teleport, _| setup(teleport)) }
    }

    /// A protocol whose connections get their extensions from `setup`, which also sees who the
    /// connection is between and its transport's channel binding.
    pub fn with_info(setup: impl Fn(&Teleport, &ConnectionInfo) + Send + Sync + 'static) -> Self {
        Self { setup: Arc::new(setup) }
    }

    /// A protocol whose connections get their extensions from `setup`; with `auth`, only once the
    /// remote proved its key (and admission) over the connection, so a refused remote never
    /// sees them.
    pub fn authenticated(
        auth: Option<Arc<Authenticator>>,
        setup: impl Fn(&Teleport) + Send + Sync + 'static,
    ) -> Self {
        let Some(auth) = auth else { return Self::new(setup) };
        let setup = Arc::new(setup);
        Self::with_info(move |teleport, info| {
            let (setup, later) = (setup.clone(), teleport.clone());
            // A closed connection refuses every extension and is going anyway.
            let _ = auth.attach(teleport, info.binding, move |_| setup(&later));
        })
    }
}

#[async_trait]
impl Protocol for TeleportProtocol {
    async fn run(
        &self,
        info: ConnectionInfo,
        stream: ByteStream,
        close: CancellationToken,
    ) -> Result<(), mesh_swarm::ProtocolError> {
        let params = Params { session: info.session, ..Params::new(info.initiator, info.own, info.remote) };
        let teleport = Teleport::new(stream, params);
        (self.setup)(&teleport, &info);
        let reason = tokio::select! {
            () = close.cancelled() => teleport.close().await,
            reason = teleport.closed() => reason,
        };
        // The reason itself is the error (typed, with a Display): no Debug text leaves here.
        if reason.is_clean() { Ok(()) } else { Err(mesh_swarm::ProtocolError::new(reason)) }
    }
}
