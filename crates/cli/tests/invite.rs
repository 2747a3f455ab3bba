//! `mesh invite` and `mesh join`: a party key invites a new peer with a one-time code through a
//! real signal server; the new peer's admission lands next to its key. A code with the right id
//! and a wrong secret fails with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, process::Stdio};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use common::{PATIENCE, signal_server};

fn mesh() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesh"));
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// A fresh directory with a key file made by `mesh keygen`; returns the key file's path.
async fn key(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let output = mesh().args(["keygen", "--out"]).arg(&path).output().await.expect("keygen runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    path
}

/// Starts `mesh invite` and returns it with the code it printed.
async fn invite(url: &str, key: &std::path::Path) -> (Child, String) {
    let mut child = mesh().args(["invite", "--signal", url, "--key"]).arg(key).spawn().expect("invite runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a code in time")
        .expect("stdout readable")
        .expect("a line");
    let event: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(event["event"], "invitation");
    let code = event["code"].as_str().expect("a code").to_owned();
    // Give stdout back, so the rest of the output can be read after the process ends.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, code)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-invite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_code_admits_the_new_peer_and_stores_its_admission() {
    let (_server, url) = signal_server().await;
    let dir = temp_dir("ok");
    let (party, guest) = (key(&dir, "party.key").await, key(&dir, "guest.key").await);
    let (mut inviter, code) = invite(&url, &party).await;

    let output = tokio::time::timeout(
        PATIENCE,
        mesh().args(["join", &code, "--signal", &url, "--key"]).arg(&guest).output(),
    )
    .await
    .expect("join finishes in time")
    .expect("join runs");
    assert!(output.status.success(), "join failed: {}", String::from_utf8_lossy(&output.stderr));
    let admitted: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(admitted["event"], "admitted");
    let stored = std::fs::read_to_string(dir.join("guest.key.admission")).expect("the admission is stored");
    assert!(stored.trim().len() > 128 && stored.trim().chars().all(|c| c.is_ascii_hexdigit()));

    let status = tokio::time::timeout(PATIENCE, inviter.wait()).await.expect("invite ends").unwrap();
    assert!(status.success(), "the inviter exits once the peer is admitted");

    // A second join with this key refuses to overwrite the admission.
    let again = mesh().args(["join", &code, "--signal", &url, "--key"]).arg(&guest).output().await.unwrap();
    assert!(!again.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wrong_secret_fails_with_the_reason() {
    let (_server, url) = signal_server().await;
    let dir = temp_dir("wrong");
    let (party, guest) = (key(&dir, "party.key").await, key(&dir, "guest.key").await);
    let (_inviter, code) = invite(&url, &party).await;
    let last = if code.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &code[..code.len() - 1]);

    let output = tokio::time::timeout(
        PATIENCE,
        mesh().args(["join", &wrong, "--signal", &url, "--key"]).arg(&guest).output(),
    )
    .await
    .expect("join finishes in time")
    .expect("join runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not know the invitation's secret"), "{stderr}");
    assert!(!dir.join("guest.key.admission").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
