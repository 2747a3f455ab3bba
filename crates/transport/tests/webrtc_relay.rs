//! Relay only: two transports that may use nothing but a real TURN server (coturn, started here
//! on loopback with long-term credentials) connect and carry data, and offer each other no
//! address but the relay's.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::UdpSocket, process::Stdio, time::Duration};

use mesh_transport::webrtc::{IceServer, WebRtcTransportFactory};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const PATIENCE: Duration = Duration::from_secs(30);
const USER: &str = "mesh";
const PASSWORD: &str = "relay-secret";

/// A coturn server on loopback, stopped when dropped.
struct Coturn {
    url: String,
    _child: Child,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Coturn {
    async fn start() -> Self {
        let binary = "turnserver";
        assert!(
            std::process::Command::new(binary).arg("--version").output().is_ok(),
            "coturn's turnserver is missing: `cargo xtask test` installs it (Debian package coturn)"
        );
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mesh-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(binary)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                // Peers on loopback are what the test has; coturn refuses relaying to them otherwise.
                "--allow-loopback-peers",
                "--lt-cred-mech",
                &format!("--user={USER}:{PASSWORD}"),
                "--realm=mesh.test",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--log-file=stdout",
                &format!("--pidfile={}", dir.join("turnserver.pid").display()),
                &format!("--userdb={}", dir.join("turndb").display()),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Total General servers") {
                    return;
                }
            }
            panic!("coturn exited before it was ready");
        })
        .await
        .expect("coturn ready in time");
        // Keep draining its log, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { url: format!("turn:127.0.0.1:{port}?transport=udp"), _child: child, _dir: TempDir(dir) }
    }
}

fn candidate_type(signal: &mesh_proto::Struct) -> Option<String> {
    let line = signal.get("data")?.as_struct()?.get("candidate")?.as_struct()?.get("candidate")?.as_str()?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let typ = fields.iter().position(|field| *field == "typ")?;
    fields.get(typ + 1).map(|kind| (*kind).to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_transports_connect_through_turn() {
    let coturn = Coturn::start().await;
    let factory = WebRtcTransportFactory::loopback()
        .with_ice_servers(vec![IceServer::turn(&coturn.url, USER, PASSWORD)])
        .with_relay_only(true);
    let (a, b, log) = common::pair_logged(&factory, common::ordered_keys(), |signal| vec![signal]);
    let started = std::time::Instant::now();
    let (mut x, mut y) = common::connect(&a, &b, PATIENCE).await;
    eprintln!("connected after {:?}", started.elapsed());
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let received = common::send_through(&mut x, &mut y, &data, PATIENCE).await;
    eprintln!("transferred after {:?}", started.elapsed());
    assert!(received == data, "256 KiB arrived intact through the relay");

    let kinds: Vec<String> =
        log.lock().unwrap().iter().filter_map(|(_, signal)| candidate_type(signal)).collect();
    assert!(!kinds.is_empty(), "candidates were signalled");
    assert!(kinds.iter().all(|kind| kind == "relay"), "only relay candidates were offered: {kinds:?}");
    a.close().await;
    b.close().await;
}
