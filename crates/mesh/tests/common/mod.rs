//! What the mixed-swarm tests share: a real DXOS 0.8.3 peer, a Node script from
//! `tests/swarm-interop`, run as a child process that prints JSON events and reads commands.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod browser;

use std::{path::PathBuf, process::Stdio, time::Duration};

use mesh_keys::{DiscoveryKey, PublicKey};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct DxosPeer {
    pub key: PublicKey,
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl DxosPeer {
    /// Runs `node SCRIPT URL TOPIC_HEX` in tests/swarm-interop and waits for its `ready` event.
    pub async fn spawn(script: &str, url: &str, topic: DiscoveryKey) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/swarm-interop");
        assert!(
            dir.join("node_modules/@dxos/teleport-extension-gossip").exists(),
            "the DXOS npm packages are missing in {}: run `cargo xtask test`, which installs them",
            dir.display()
        );
        let mut child = Command::new("node")
            .args([script, url, &topic.to_hex()])
            .current_dir(dir)
            .env("LOG_FILTER", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = Self { key: PublicKey::from_bytes([0; 32]), _child: child, stdin, stdout };
        let ready = peer.wait(|e| e["event"] == "ready").await;
        peer.key = ready["peer"].as_str().unwrap().parse().unwrap();
        peer
    }

    /// The first event `pick` takes.
    pub async fn wait(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let line = self.stdout.next_line().await.unwrap().expect("the DXOS peer exited");
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && pick(&event)
                {
                    return event;
                }
            }
        })
        .await
        .expect("expected event from the DXOS peer")
    }

    /// Writes one command line.
    /// Waits until this peer heard hellos from all of `from`, in any order.
    pub async fn wait_hellos(&mut self, from: &[PublicKey]) {
        let mut missing: std::collections::BTreeSet<String> = from.iter().map(PublicKey::to_hex).collect();
        while !missing.is_empty() {
            let event = self.wait(|e| e["event"] == "hello").await;
            missing.remove(event["from"].as_str().unwrap());
        }
    }

    pub async fn command(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

/// Waits until every (hearer, heard) pair of `expected` came out of `heard`, in any order: what
/// mesh peers' `hello` extensions report.
pub async fn wait_heard(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<(PublicKey, PublicKey)>,
    expected: &[(PublicKey, PublicKey)],
) {
    let mut missing: std::collections::BTreeSet<(PublicKey, PublicKey)> = expected.iter().copied().collect();
    tokio::time::timeout(PATIENCE, async {
        while !missing.is_empty() {
            let pair = heard.recv().await.unwrap();
            missing.remove(&pair);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hellos never heard: {missing:?}"));
}

/// Waits until the swarm of `rust` (mesh peers reporting to `heard`) and `dxos` is whole: every
/// peer heard a hello from every other.
pub async fn wait_whole(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<(PublicKey, PublicKey)>,
    rust: &[PublicKey],
    dxos: &mut [&mut DxosPeer],
) {
    let all: Vec<PublicKey> = rust.iter().copied().chain(dxos.iter().map(|peer| peer.key)).collect();
    let others = |me: PublicKey| all.iter().copied().filter(|key| *key != me).collect::<Vec<_>>();
    let expected: Vec<(PublicKey, PublicKey)> =
        rust.iter().flat_map(|me| others(*me).into_iter().map(move |from| (*me, from))).collect();
    wait_heard(heard, &expected).await;
    for peer in dxos {
        let from = others(peer.key);
        peer.wait_hellos(&from).await;
    }
}

/// Teleport with the `hello` test extension on every connection, reporting (local, remote) to
/// `heard` for each hello received.
pub fn hello_protocol(
    heard: &tokio::sync::mpsc::UnboundedSender<(PublicKey, PublicKey)>,
) -> std::sync::Arc<mesh::TeleportProtocol> {
    let heard = heard.clone();
    std::sync::Arc::new(mesh::TeleportProtocol::new(move |teleport| {
        let hello = mesh_teleport::hello::Hello::new(teleport.local_peer(), heard.clone());
        teleport.add_extension(mesh_teleport::hello::NAME, hello).expect("a valid extension name");
    }))
}
