//! `mesh signal` as a process: it serves, stops cleanly on SIGTERM, and rejects bad arguments.

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
