//! The responder's side: dialling the `{port, host}` the initiator signalled, checked against
//! the allow-list, and (with an upgrade: link authentication or Noise) trying later port signals
//! when a listener fails to prove itself.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpStream, sync::mpsc, task::JoinSet};
use tracing::{debug, warn};

use super::{
    allow::DialAllow,
    upgrade::{Upgrade, Upgraded},
};
use crate::TransportError;

/// A place to dial, as signalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
}

/// How to dial and what to check.
#[derive(Debug, Clone)]
pub(super) struct Dialler {
    pub(super) allow: DialAllow,
    /// What a connection must pass before the stream counts; `None` on the unauthenticated path.
    pub(super) upgrade: Option<Arc<dyn Upgrade>>,
}

impl Dialler {
    /// Dials every target that arrives, at once, until one yields a stream (upgraded, if there
    /// is an upgrade). Fails with the last error once the targets end and every attempt failed.
    pub(super) async fn dial_until_connected(
        self,
        mut targets: mpsc::Receiver<Target>,
    ) -> Result<Upgraded, TransportError> {
        let mut attempts = JoinSet::new();
        let mut more = true;
        let mut last_error = TransportError::Closed;
        loop {
            tokio::select! {
                target = targets.recv(), if more => match target {
                    Some(target) => {
                        attempts.spawn(self.clone().attempt(target));
                    }
                    None => more = false,
                },
                Some(done) = attempts.join_next() => match done {
                    Ok(Ok(stream)) => return Ok(stream),
                    Ok(Err(err)) => last_error = err,
                    // Attempts do not panic; an aborted one is only possible on shutdown.
                    Err(err) => debug!(%err, "a dial attempt ended early"),
                },
                else => return Err(last_error),
            }
        }
    }

    /// Dials one target and, with an upgrade, runs it on the connection.
    pub(super) async fn attempt(self, target: Target) -> Result<Upgraded, TransportError> {
        let result = async {
            let stream = self.connect(&target).await?;
            let _ = stream.set_nodelay(true);
            match &self.upgrade {
                Some(upgrade) => upgrade.run(stream).await,
                None => Ok(Upgraded::plain(stream)),
            }
        }
        .await;
        if let Err(err) = &result {
            let (host, port) = (&target.host, target.port);
            match err {
                TransportError::LinkAuth(_)
                | TransportError::Noise(_)
                | TransportError::HostNotAllowed { .. } => {
                    warn!(%err, ?host, port, "refused a signalled TCP link");
                }
                _ => debug!(%err, ?host, port, "TCP dial failed"),
            }
        }
        result
    }

    /// Resolves the host once, keeps the addresses the allow-list permits, and connects to the
    /// first of those that answers; the checked address is the one dialled.
    async fn connect(&self, target: &Target) -> Result<TcpStream, TransportError> {
        let resolved = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|err| TransportError::io("resolving", err))?;
        let allowed: Vec<SocketAddr> = resolved.filter(|addr| self.allow.allows(addr.ip())).collect();
        if allowed.is_empty() {
            return Err(TransportError::HostNotAllowed { host: target.host.clone() });
        }
        let mut last_error = None;
        for addr in allowed {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last_error = Some(err),
            }
        }
        let err = last_error.unwrap_or_else(|| std::io::ErrorKind::AddrNotAvailable.into());
        Err(TransportError::io("dialing", err))
    }
}
