//! Extensions: named protocols on a connection (RPC services, gossip, bulk transfer …).
//!
//! An extension opens when **both** sides added it (each side tells the other through the control
//! extension's `RegisterExtension`). It then gets an [`ExtensionContext`] to open channels, whose
//! tags are `"<extension>/<channel>"`, so the same channel name in two extensions never clashes.

use std::sync::Weak;

use async_trait::async_trait;
use mesh_keys::PublicKey;

use crate::channel::{Port, Stream};
use crate::error::{ChannelError, ExtensionError};
use crate::teleport::Inner;

/// A protocol that runs on a connection once both sides added it.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// Both sides added the extension. Open channels with `ctx`; an `Err` destroys the connection.
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError>;

    /// The connection is closing gracefully (either side); `error` is the reason, if any.
    async fn on_close(&self, _error: Option<String>) {}

    /// The connection ended abruptly (destroyed, heartbeat timeout, protocol error, transport).
    async fn on_abort(&self, _error: Option<String>) {}
}

/// What an open extension may do on its connection.
#[derive(Debug, Clone)]
pub struct ExtensionContext {
    pub(crate) name: String,
    pub(crate) initiator: bool,
    pub(crate) local_peer: PublicKey,
    pub(crate) remote_peer: PublicKey,
    pub(crate) session: PublicKey,
    pub(crate) teleport: Weak<Inner>,
}

impl ExtensionContext {
    /// The extension's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this side started the connection (exactly one side is the initiator).
    pub fn initiator(&self) -> bool {
        self.initiator
    }

    /// This side's peer key.
    pub fn local_peer(&self) -> PublicKey {
        self.local_peer
    }

    /// The remote's peer key.
    pub fn remote_peer(&self) -> PublicKey {
        self.remote_peer
    }

    /// The connection's session: key per-connection state by it rather than by the remote peer,
    /// whose new connection may displace an old one while both are briefly alive.
    pub fn session(&self) -> PublicKey {
        self.session
    }

    /// Opens a message channel `"<extension>/<channel>"`; `content_type` is advertised in
    /// `OpenChannel` (RPC ports use [`crate::muxer::RPC_CONTENT_TYPE`]).
    pub fn create_port(&self, channel: &str, content_type: Option<&str>) -> Result<Port, ChannelError> {
        let inner = self.teleport.upgrade().ok_or(ChannelError::Closed)?;
        inner.open_port(&self.tag(channel)?, content_type)
    }

    /// Opens a byte-stream channel `"<extension>/<channel>"`.
    pub fn create_stream(&self, channel: &str, content_type: Option<&str>) -> Result<Stream, ChannelError> {
        Ok(Stream::new(self.create_port(channel, content_type)?))
    }

    /// Closes the whole connection gracefully (in the background).
    pub fn close(&self, error: Option<String>) {
        if let Some(inner) = self.teleport.upgrade() {
            let teleport = crate::Teleport::from_inner(inner);
            tokio::spawn(async move { teleport.close_with(error).await });
        }
    }

    fn tag(&self, channel: &str) -> Result<String, ChannelError> {
        if channel.is_empty() || channel.contains('/') {
            return Err(ChannelError::InvalidName(channel.to_owned()));
        }
        Ok(format!("{}/{}", self.name, channel))
    }
}
