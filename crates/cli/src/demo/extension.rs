//! The demo's Teleport extension: a "chat" port answering pings, and a "bulk" stream that counts
//! what arrives.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use mesh_keys::PublicKey;
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Port, Stream};
use tokio::{
    io::{AsyncReadExt, ReadHalf, WriteHalf},
    sync::mpsc,
};

/// The extension's name on the wire.
pub(crate) const NAME: &str = "mesh.demo";

/// What the peers' extensions report to the demo.
#[derive(Debug)]
pub(crate) enum Report {
    /// `local` can reach `remote`: the channels are open.
    Linked { local: PublicKey, remote: PublicKey },
    /// `local` got the answer to ping `round` from `remote`.
    Pong { local: PublicKey, remote: PublicKey, round: u32 },
    /// `local` received `bytes` on the bulk stream from `remote`.
    Bulk { local: PublicKey, remote: PublicKey, bytes: u64 },
}

/// The writing half of a bulk stream.
pub(crate) type BulkWriter = Arc<tokio::sync::Mutex<WriteHalf<Stream>>>;

/// The open channels to each remote, for the demo to send on.
pub(crate) type Links = Arc<Mutex<HashMap<(PublicKey, PublicKey), (Arc<Port>, BulkWriter)>>>;

pub(crate) struct Demo {
    pub(crate) links: Links,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
}

#[async_trait]
impl Extension for Demo {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let (local, remote) = (ctx.local_peer(), ctx.remote_peer());
        let chat = Arc::new(ctx.create_port("chat", Some("text/plain"))?);
        let bulk = ctx.create_stream("bulk", Some("application/octet-stream"))?;
        let (bulk_reader, bulk_writer) = tokio::io::split(bulk);
        lock(&self.links)
            .insert((local, remote), (chat.clone(), Arc::new(tokio::sync::Mutex::new(bulk_writer))));
        let reports = self.reports.clone();
        tokio::spawn(answer_pings(chat, local, remote, reports.clone()));
        tokio::spawn(count_bulk(bulk_reader, local, remote, reports.clone()));
        let _ = reports.send(Report::Linked { local, remote });
        Ok(())
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned lock still holds valid links.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn answer_pings(
    port: Arc<Port>,
    local: PublicKey,
    remote: PublicKey,
    reports: mpsc::UnboundedSender<Report>,
) {
    while let Some(message) = port.recv().await {
        let text = String::from_utf8_lossy(&message);
        if let Some(round) = text.strip_prefix("ping ") {
            if port.send(Bytes::from(format!("pong {round}"))).await.is_err() {
                return;
            }
        } else if let Some(round) = text.strip_prefix("pong ").and_then(|r| r.parse().ok()) {
            let _ = reports.send(Report::Pong { local, remote, round });
        }
    }
}

/// Reads transfers of the form `[u64 length][bytes]` and reports each one's size when complete.
async fn count_bulk(
    mut stream: ReadHalf<Stream>,
    local: PublicKey,
    remote: PublicKey,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(length) = stream.read_u64().await else { return };
        let mut left = length;
        while left > 0 {
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(buffer.len());
            match stream.read(&mut buffer[..take]).await {
                Ok(0) | Err(_) => return,
                Ok(read) => left -= read as u64,
            }
        }
        let _ = reports.send(Report::Bulk { local, remote, bytes: length });
    }
}
