//! The `mesh.hello` extension against a remote that repeats itself.

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_teleport::hello::{self, Hello};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Teleport};
use tokio::sync::mpsc;

/// Speaks `mesh.hello` but sends its key `times` times, then closes the connection.
struct Repeating {
    key: PublicKey,
    times: usize,
}

#[async_trait]
impl Extension for Repeating {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("hello", Some("application/octet-stream"))?;
        let (key, times) = (self.key, self.times);
        tokio::spawn(async move {
            for _ in 0..times {
                port.send(key.to_hex().into()).await?;
            }
            port.flushed().await;
            ctx.close(None);
            Ok::<_, mesh_teleport::ChannelError>(())
        });
        Ok(())
    }
}

#[tokio::test]
async fn a_remote_repeating_its_hello_is_reported_once() {
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
    let a = Teleport::new(a_io, Params::new(true, a_key, b_key));
    let b = Teleport::new(b_io, Params::new(false, b_key, a_key));
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    a.add_extension(hello::NAME, Hello::new(a_key, heard_tx)).unwrap();
    b.add_extension(hello::NAME, Repeating { key: b_key, times: 1000 }).unwrap();
    assert!(a.closed().await.is_clean());
    drop(a);
    let mut reports = Vec::new();
    while let Some(report) = heard.recv().await {
        reports.push(report);
    }
    assert_eq!(reports.len(), 1, "one report per connection");
    assert_eq!(reports[0], (a_key, b_key));
}
