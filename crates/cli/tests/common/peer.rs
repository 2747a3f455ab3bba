//! A `mesh peer` process driven over its JSON output and its stdin.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use super::PATIENCE;

/// A running `mesh peer --json`.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Lines<BufReader<ChildStdout>>,
    pub key: String,
}

impl Peer {
    pub async fn spawn(url: &str, topic: &str, transport: &[&str]) -> Self {
        Self::spawn_with(url, topic, transport, &[]).await
    }

    pub async fn spawn_with(url: &str, topic: &str, transport: &[&str], extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(["peer", "--signal", url, "--topic", topic, "--json"])
            .args(transport)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = Self { child, stdin, stdout, key: String::new() };
        peer.key = peer.wait(|e| e["event"] == "ready").await["peer"].as_str().unwrap().to_owned();
        peer
    }

    pub async fn wait(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        // The events passed over, so that a wait that times out says what the peer did instead.
        let mut skipped = Vec::new();
        let stdout = &mut self.stdout;
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = stdout.next_line().await.unwrap().expect("the peer exited");
                let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if pick(&event) {
                    return event;
                }
                skipped.push(event);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("expected event from mesh peer never came; meanwhile: {skipped:?}"))
    }

    pub async fn wait_connected(&mut self, others: &[String]) {
        let mut missing: Vec<String> = others.to_vec();
        while !missing.is_empty() {
            let event = self.wait(|e| e["event"] == "connected").await;
            missing.retain(|peer| event["peer"] != peer.as_str());
        }
    }

    pub async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn exit(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "mesh peer exited with {status}");
    }
}
