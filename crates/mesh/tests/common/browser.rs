//! Real DXOS 0.8.3 peers in headless Chromium: `tests/browser-interop/browser-peer.mjs`, one tab
//! per peer, each a `SwarmNetworkManager` with DXOS's browser WebRTC transport and Teleport with
//! the test extension `mesh.hello`.

use std::{path::PathBuf, process::Stdio};

use mesh_keys::{DiscoveryKey, PublicKey};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use super::PATIENCE;

/// A Chromium running browser peers, driven over the driver's stdin and stdout.
pub struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Events read while waiting for others, in order: the tabs report concurrently, and one
    /// tab's events must not be lost while the test waits for another's.
    unclaimed: Vec<Value>,
}

impl Browser {
    /// Starts Chromium with one tab per key in `peers` (tab N is `peers[N]`), all joining `topic`
    /// through `url` with `topology` (`full` or `star:HEX`).
    ///
    /// Panics with the reason when the browser cannot run: these tests never pass silently.
    pub async fn launch(url: &str, topic: DiscoveryKey, topology: &str, peers: &[PublicKey]) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser-interop");
        assert!(
            dir.join("node_modules/@dxos/network-manager").exists(),
            "the DXOS npm packages are missing in {}: run `cargo xtask test`, which installs them",
            dir.display()
        );
        let chromium = std::env::var("MESH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "Chromium is missing at {chromium}: `cargo xtask test` installs it (Debian packages chromium and chromium-driver)"
        );
        let mut args = vec!["browser-peer.mjs".to_owned(), url.to_owned(), topic.to_hex()];
        args.extend(["--topology".to_owned(), topology.to_owned()]);
        for peer in peers {
            args.extend(["--peer".to_owned(), peer.to_hex()]);
        }
        let mut child = Command::new("node")
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the browser driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Self { _child: child, stdin, stdout, unclaimed: Vec::new() };
        browser.wait(|e| e["event"] == "browser").await;
        browser
    }

    /// The first event `pick` takes, among those not taken yet. An `error` event from a page
    /// fails the test.
    pub async fn wait(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        if let Some(index) = self.unclaimed.iter().position(&mut pick) {
            return self.unclaimed.remove(index);
        }
        let unclaimed = &mut self.unclaimed;
        let stdout = &mut self.stdout;
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = stdout
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the browser driver exited (its stderr says why)");
                let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
                assert!(event["event"] != "error", "a browser peer failed: {event}");
                if pick(&event) {
                    return event;
                }
                unclaimed.push(event);
            }
        })
        .await;
        // What the browser said meanwhile tells which peer or step stalled.
        found.unwrap_or_else(|_| {
            panic!("the expected event from the browser never came; meanwhile: {:?}", self.unclaimed)
        })
    }

    /// Waits until tab `tab` heard hellos from all of `from`, in any order.
    pub async fn wait_hellos(&mut self, tab: usize, from: &[PublicKey]) {
        let mut missing: Vec<String> = from.iter().map(PublicKey::to_hex).collect();
        while !missing.is_empty() {
            let event = self.wait(|e| e["event"] == "hello" && e["tab"] == tab).await;
            missing.retain(|key| event["from"] != key.as_str());
        }
    }

    /// Drops the events not taken yet: what comes next is what the test waits for.
    pub fn forget(&mut self) {
        self.unclaimed.clear();
    }

    /// Writes one driver command (`reload N`, `leave N`, `open HEX`, ...).
    pub async fn command(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}
