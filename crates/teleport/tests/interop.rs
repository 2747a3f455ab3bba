//! Interop with the real DXOS 0.8.3 Teleport (`@dxos/teleport` from npm, run by Node.js):
//! `tests/teleport-interop/interop.mjs` connects to us over loopback TCP; both sides add the
//! extension `mesh.interop`; RPC calls go both ways; 10 MiB go each way on a stream and their
//! digests are compared; heartbeats cross both ways every 100 ms meanwhile (an unanswered or
//! malformed one would abort the connection); then one side closes and both must see a clean
//! close.
//!
//! The npm packages are installed by `cargo xtask test`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{Opened, TEST_CALL, TestExtension, TestRpcRequest, TestRpcResponse, VOID_CALL};
use mesh_keys::PublicKey;
use mesh_teleport::{Params, Teleport};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

const BULK: usize = 10 * 1024 * 1024;
const WRITE: usize = 64 * 1024;

fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/teleport-interop");
    assert!(
        dir.join("node_modules/@dxos/teleport/package.json").exists(),
        "{} has no node_modules: run `cargo xtask test` (it installs the pinned DXOS packages)",
        dir.display()
    );
    dir
}

/// One JSON line from the Node side, read without a JSON dependency: the fields are flat strings.
#[derive(Debug)]
struct Line(String);

impl Line {
    fn event(&self) -> Option<&str> {
        self.field("event")
    }

    fn field(&self, name: &str) -> Option<&str> {
        let key = format!("\"{name}\":\"");
        let start = self.0.find(&key)? + key.len();
        let end = self.0[start..].find('"')? + start;
        Some(&self.0[start..end])
    }
}

#[derive(PartialEq)]
enum Closer {
    Rust,
    Js,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dxos_teleport_interop_rust_closes() -> Result<()> {
    scenario(Closer::Rust).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dxos_teleport_interop_js_closes() -> Result<()> {
    scenario(Closer::Js).await
}

async fn scenario(closer: Closer) -> Result<()> {
    let dir = interop_dir();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let local = PublicKey::random();
    let mut node = Command::new("node")
        .current_dir(&dir)
        .args(["interop.mjs", "--port", &port.to_string(), "--peer", &local.to_hex()])
        // Heartbeats every 100 ms both ways, so several cross the wire during the transfer.
        .args(["--bytes", &BULK.to_string(), "--heartbeat-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (Node.js 20 or later is needed for the interop tests)")?;
    let stdout = node.stdout.take().context("node stdout")?;
    let mut lines = BufReader::new(stdout).lines();

    let (socket, _) =
        timeout(Duration::from_secs(30), listener.accept()).await.context("node never connected")??;
    socket.set_nodelay(true)?;
    // DXOS does not tell its peer key on the wire; the Node side made one up.
    let mut params = Params::new(true, local, PublicKey::random());
    params.heartbeat_interval = Duration::from_millis(100);
    let teleport = Teleport::new(socket, params);
    let (extension, mut opened) = TestExtension::new("rust echo");
    teleport.add_extension("mesh.interop", extension)?;
    let Opened { rpc, bulk, .. } =
        timeout(Duration::from_secs(20), opened.recv()).await?.context("extension closed")?;

    // 10 MiB each way at once.
    let (mut reader, mut writer) = tokio::io::split(bulk);
    let sending = tokio::spawn(async move {
        let mut sha = Sha256::new();
        let mut hasher = blake3::Hasher::new();
        let mut chunk = vec![0u8; WRITE];
        for _ in 0..BULK / WRITE {
            rand::fill(&mut chunk[..]);
            sha.update(&chunk);
            hasher.update(&chunk);
            writer.write_all(&chunk).await?;
        }
        anyhow::Ok((hex::encode(sha.finalize()), hasher.finalize().to_hex().to_string(), writer))
    });
    let receiving = tokio::spawn(async move {
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; WRITE];
        let mut left = BULK;
        while left > 0 {
            let n = reader.read(&mut buf[..left.min(WRITE)]).await?;
            ensure!(n > 0, "the stream ended after {} bytes", BULK - left);
            sha.update(&buf[..n]);
            left -= n;
        }
        anyhow::Ok((hex::encode(sha.finalize()), reader))
    });

    // RPC from us to DXOS, while the streams run. (The receiver must already be reading: a
    // channel nobody reads stops the whole connection once its inbox is full.)
    let answer: TestRpcResponse =
        rpc.call_typed(TEST_CALL, &TestRpcRequest { data: "hello from rust".into() }).await?;
    assert_eq!(answer.data, "js echo: hello from rust");
    rpc.call_typed::<(), ()>(VOID_CALL, &()).await?;

    // What the Node side reports: its RPC calls to us, what it sent and what it received.
    let mut js_sent = None;
    let mut js_received = None;
    let mut js_rpc = None;
    let mut js_void = false;
    let mut served = Vec::new();
    let events = async {
        while js_sent.is_none() || js_received.is_none() {
            let Some(line) = lines.next_line().await? else { bail!("node exited early") };
            let line = Line(line);
            match line.event() {
                Some("rpc") => js_rpc = line.field("answer").map(str::to_owned),
                Some("rpc-void") => js_void = true,
                Some("served") => served.push(line.field("data").unwrap_or_default().to_owned()),
                Some("sent") => js_sent = line.field("sha256").map(str::to_owned),
                Some("received") => js_received = line.field("sha256").map(str::to_owned),
                Some("error") => bail!("node failed: {}", line.0),
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    timeout(Duration::from_secs(60), events).await.context("node did not finish the transfer")??;
    let (our_sent_sha, our_sent_blake3, _writer) = sending.await??;
    let (our_received_sha, _reader) = receiving.await??;

    assert_eq!(js_rpc.as_deref(), Some("rust echo: hello from js"), "DXOS called us");
    assert!(js_void, "DXOS's VoidCall to us");
    assert_eq!(served, ["hello from rust"]);
    assert_eq!(js_received.as_deref(), Some(our_sent_sha.as_str()), "DXOS received our 10 MiB intact");
    assert_eq!(js_sent.as_deref(), Some(our_received_sha.as_str()), "we received DXOS's 10 MiB intact");
    assert_eq!(our_sent_blake3.len(), 64);

    let reason = match closer {
        Closer::Rust => timeout(Duration::from_secs(10), teleport.close()).await?,
        Closer::Js => {
            let _: TestRpcResponse =
                rpc.call_typed(TEST_CALL, &TestRpcRequest { data: "please close".into() }).await?;
            timeout(Duration::from_secs(10), teleport.closed()).await?
        }
    };
    assert!(reason.is_clean(), "close was not clean: {reason:?}");

    let mut js_closed = None;
    let rest = async {
        while let Some(line) = lines.next_line().await? {
            let line = Line(line);
            if line.event() == Some("closed") {
                js_closed = line.field("how").map(str::to_owned);
            }
        }
        anyhow::Ok(node.wait().await?)
    };
    let status =
        timeout(Duration::from_secs(10), rest).await.context("node did not exit after the close")??;
    assert!(status.success(), "node exited with {status}");
    assert_eq!(js_closed.as_deref(), Some("close"), "DXOS saw a graceful close");
    Ok(())
}
