//! `mesh.hello`: a minimal extension that proves both ends of a connection talk. Each side sends
//! its peer key (hex) on port "hello" and reports `(own, from)` for the first key that arrives,
//! then stops reading (so a remote repeating itself cannot grow the report queue). The DXOS
//! counterpart is in `tests/swarm-interop/dxos-swarm-peer.mjs`; the mixed-swarm test and the swarm
//! benchmark use both.

use async_trait::async_trait;
use mesh_keys::PublicKey;
use tokio::sync::mpsc;

use crate::{Extension, ExtensionContext, ExtensionError};

/// The extension's name on the wire.
pub const NAME: &str = "mesh.hello";

/// Sends this peer's key and reports the keys that arrive.
#[derive(Debug)]
pub struct Hello {
    own: PublicKey,
    heard: mpsc::UnboundedSender<(PublicKey, PublicKey)>,
}

impl Hello {
    /// A hello from `own` that reports `(own, remote)` on `heard` once per connection, for the
    /// first remote key received.
    pub fn new(own: PublicKey, heard: mpsc::UnboundedSender<(PublicKey, PublicKey)>) -> Self {
        Self { own, heard }
    }
}

#[async_trait]
impl Extension for Hello {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("hello", Some("application/octet-stream"))?;
        let (own, heard) = (self.own, self.heard.clone());
        tokio::spawn(async move {
            if port.send(own.to_hex().into()).await.is_err() {
                return;
            }
            while let Some(message) = port.recv().await {
                if let Some(from) = std::str::from_utf8(&message).ok().and_then(|hex| hex.parse().ok()) {
                    let _ = heard.send((own, from));
                    return;
                }
            }
        });
        Ok(())
    }
}
