//! `mesh signal` as a process: it serves, stops cleanly on SIGTERM, rejects bad arguments, and
//! federates with another process through NATS.

mod common;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test]
async fn serves_until_sigterm_then_closes_connections_and_exits_cleanly() {
    let (mut child, url) = common::signal_server().await;
    assert!(url.starts_with("ws://127.0.0.1:") && url.ends_with("/.well-known/dx/signal"), "{url}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // A ping answered means the server is serving this connection, not still setting it up.
    ws.send(Message::Ping(b"up?".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(Ok(Message::Pong(_))) = ws.next().await {
                return;
            }
        }
    });
    pong.await.expect("the server answers a ping");

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());

    // The connection is closed with 1001 (going away), then the process exits 0.
    let close = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(close, Some(1001));
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_arguments_exit_with_code_2_and_say_why() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--auth", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown auth policy \"sometimes\""), "{stderr}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--tls-cert", "cert.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a certificate needs a key");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

#[test]
fn a_public_url_without_a_host_is_a_clear_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--listen", "127.0.0.1:0", "--public-url", "https://signal.example"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("public URL \"https://signal.example\" is not a ws:// or wss:// URL"),
        "{stderr}"
    );
}

/// Starts `mesh signal` with `args`; returns what it logged before printing its URL.
async fn startup_log(args: &[&str]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mesh starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    tokio::time::timeout(PATIENCE, stdout.next_line())
        .await
        .expect("the URL in time")
        .expect("stdout readable")
        .expect("the URL line");
    // The URL comes after the startup logs; stopping the process closes stderr.
    child.kill().await.expect("mesh stops");
    let mut log = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut log).await.expect("stderr readable");
    log
}

#[tokio::test]
async fn authentication_without_a_public_url_warns_that_signatures_can_be_replayed() {
    let log = startup_log(&["--auth", "optional"]).await;
    assert!(log.contains("WARN") && log.contains("replay"), "{log}");
    let log =
        startup_log(&["--auth", "required", "--public-url", "wss://signal.example/.well-known/dx/signal"])
            .await;
    assert!(!log.contains("replay"), "{log}");
    let log = startup_log(&[]).await;
    assert!(!log.contains("replay"), "no authentication, nothing to replay: {log}");
}

#[path = "../../signal/tests/common/nats.rs"]
mod nats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_federated_through_nats_serve_one_topic() {
    use mesh_keys::{DiscoveryKey, Keypair};
    use mesh_signal::{Client, Event, Signal, SignalMessage};

    let nats = nats::NatsCluster::start(1).await;
    let (_first, first_url) = common::signal_server_with(&["--nats", &nats.url(0)]).await;
    let (_second, second_url) = common::signal_server_with(&["--nats", &nats.url(0)]).await;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
    let (a, b) = (Client::connect(first_url).unwrap(), Client::connect(second_url).unwrap());
    let (mut a_events, mut b_events) = (a.events(), b.events());
    // Bob's inbox and membership are on the second server only.
    b.subscribe(bob).await.unwrap();
    a.join(topic, alice).await.unwrap();
    b.join(topic, bob).await.unwrap();
    let payload = mesh_proto::Any { type_url: "mesh.test.Text".into(), value: b"across".to_vec() };
    tokio::time::timeout(PATIENCE, async {
        loop {
            match a_events.recv().await.expect("events") {
                Event::PeerAvailable { peer, .. } if peer == bob => break,
                _ => {}
            }
        }
    })
    .await
    .expect("alice sees bob, who is on the other server");
    a.send(SignalMessage { author: alice, recipient: bob, payload }).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            match b_events.recv().await.expect("events") {
                Event::Message(message) if message.payload.value == b"across" => break,
                _ => {}
            }
        }
    })
    .await
    .expect("the message crosses the federation");
}
