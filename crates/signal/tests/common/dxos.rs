//! A real DXOS 0.8.3 signaling peer (tests/signal-interop/dxos-peer.mjs) driven from Rust.

use std::{path::PathBuf, process::Stdio};

use mesh_keys::{DiscoveryKey, PublicKey};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use super::PATIENCE;

pub struct DxosPeer {
    pub key: PublicKey,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/signal-interop")
}

impl DxosPeer {
    /// Starts a DXOS peer connected to `urls` and waits until it is ready.
    pub async fn spawn(urls: &[String]) -> Self {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/@dxos/messaging").exists(),
            "the DXOS npm packages are missing in {}: run `cargo xtask test`, which installs them",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("dxos-peer.mjs")
            .args(urls)
            .current_dir(&dir)
            .env("LOG_FILTER", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut peer = Self { key: PublicKey::from_bytes([0; 32]), child, stdin, stdout };
        let ready = peer.wait(|event| event["event"] == "ready").await;
        peer.key = ready["peer"].as_str().expect("peer key").parse().expect("hex key");
        peer
    }

    async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("DXOS peer takes commands");
    }

    pub async fn join(&mut self, topic: DiscoveryKey) {
        self.command(json!({"cmd": "join", "topic": topic.to_hex()})).await;
    }

    pub async fn leave(&mut self, topic: DiscoveryKey) {
        self.command(json!({"cmd": "leave", "topic": topic.to_hex()})).await;
    }

    /// Sends a reliable message; its outcome arrives as a `delivered` or `send-failed` event.
    pub async fn send(&mut self, to: PublicKey, text: &str) {
        self.command(json!({"cmd": "send", "to": to.to_hex(), "text": text})).await;
    }

    /// Waits for the first event that `pick` accepts, skipping others.
    pub async fn wait(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let line = self.stdout.next_line().await.expect("stdout readable").expect("DXOS peer exited");
                let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
                assert_ne!(event["event"], "error", "DXOS peer reported {event}");
                if pick(&event) {
                    return event;
                }
            }
        })
        .await
        .expect("expected event from the DXOS peer did not arrive")
    }

    pub async fn wait_available(&mut self, topic: DiscoveryKey, peer: PublicKey) {
        let (topic, peer) = (topic.to_hex(), peer.to_hex());
        self.wait(|e| e["event"] == "peer-available" && e["topic"] == topic && e["peer"] == peer).await;
    }

    pub async fn wait_left(&mut self, topic: DiscoveryKey, peer: PublicKey) {
        let (topic, peer) = (topic.to_hex(), peer.to_hex());
        self.wait(|e| e["event"] == "peer-left" && e["topic"] == topic && e["peer"] == peer).await;
    }

    pub async fn wait_message(&mut self, from: PublicKey, text: &str) {
        let from = from.to_hex();
        self.wait(|e| e["event"] == "message" && e["from"] == from && e["text"] == text).await;
    }

    pub async fn wait_delivered(&mut self, text: &str) {
        let event = self
            .wait(|e| (e["event"] == "delivered" || e["event"] == "send-failed") && e["text"] == text)
            .await;
        assert_eq!(event["event"], "delivered", "DXOS send failed: {event}");
    }

    pub async fn exit(mut self) {
        self.command(json!({"cmd": "exit"})).await;
        let status =
            tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("DXOS peer exits").expect("wait");
        assert!(status.success(), "DXOS peer exited with {status}");
    }
}
