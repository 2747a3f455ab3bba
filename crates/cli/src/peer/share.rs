//! `mesh peer --share FILE` and `--fetch HASH --out PATH`: blobs over the swarm's connections.

use std::{io::IsTerminal, path::PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mesh_extensions::blobs::{BlobHash, Blobs};
use serde_json::json;

use super::Out;

/// Adds `path`'s content to `blobs` and reports its hash.
pub(super) async fn share(blobs: &Blobs, path: &PathBuf, out: Out) -> Result<()> {
    let data = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
    let bytes = data.len();
    let hash = blobs.add(data);
    out.event(json!({"event": "shared", "hash": hash.to_string(), "bytes": bytes}), || {
        format!("* sharing {} ({bytes} bytes) as {hash}", path.display())
    });
    Ok(())
}

/// Fetches `hash` from the peers that hold it, with a bar on a terminal (or `progress` events
/// with `--json`), and writes it to `path`.
pub(super) async fn fetch(blobs: Blobs, hash: BlobHash, path: PathBuf, out: Out) -> Result<()> {
    let fetch = blobs.start_fetch(hash);
    let mut progress = fetch.progress();
    let bar = (!out.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("fetching [{bar:40}] {pos}/{len} KiB") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let reporting = async {
        let mut reported = 0;
        while progress.changed().await.is_ok() {
            let (held, all) = *progress.borrow_and_update();
            if let Some(bar) = &bar {
                bar.set_length(all);
                bar.set_position(held);
            }
            // JSON progress every tenth.
            let tenth = (held * 10).checked_div(all).unwrap_or(0);
            if out.json && tenth > reported {
                reported = tenth;
                out.event(
                    json!({"event": "progress", "hash": hash.to_string(), "held": held, "all": all}),
                    String::new,
                );
            }
        }
    };
    // The progress ends when the fetch does; the fetch's own result is what counts.
    let reporting = async {
        reporting.await;
        std::future::pending::<()>().await;
    };
    let blob = tokio::select! {
        blob = fetch.finished() => blob.context("fetching the blob")?,
        () = reporting => unreachable!("reporting never ends"),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    tokio::fs::write(&path, blob.data()).await.with_context(|| format!("writing {}", path.display()))?;
    out.event(
        json!({"event": "fetched", "hash": hash.to_string(), "bytes": blob.len(), "path": path.display().to_string()}),
        || format!("* fetched {hash} ({} bytes) to {}", blob.len(), path.display()),
    );
    Ok(())
}
