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

use common::{PATIENCE, peer::Peer, signal_server};

fn mesh() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesh"));
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// A key file made by `mesh keygen` in `dir`; returns its path.
async fn key(dir: &std::path::Path, name: &str) -> PathBuf {
    key_and_public(dir, name).await.0
}

/// A key file made by `mesh keygen` in `dir`; returns its path and the public key it printed.
async fn key_and_public(dir: &std::path::Path, name: &str) -> (PathBuf, mesh_keys::PublicKey) {
    let path = dir.join(name);
    let output = mesh().args(["keygen", "--out"]).arg(&path).output().await.expect("keygen runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let public = String::from_utf8_lossy(&output.stdout).trim().parse().expect("a public key");
    (path, public)
}

/// Invites a new peer with the key `guest` into the party of `party` (a key file); returns the
/// guest's admission file.
async fn admit(url: &str, party: &std::path::Path, guest: &std::path::Path) -> PathBuf {
    let (mut inviter, code) = invite(url, party).await;
    let output = tokio::time::timeout(
        PATIENCE,
        mesh().args(["join", &code, "--signal", url, "--key"]).arg(guest).output(),
    )
    .await
    .expect("join finishes in time")
    .expect("join runs");
    assert!(output.status.success(), "join failed: {}", String::from_utf8_lossy(&output.stderr));
    let status = tokio::time::timeout(PATIENCE, inviter.wait()).await.expect("invite ends").unwrap();
    assert!(status.success(), "the inviter exits once the peer is admitted");
    let mut path = guest.as_os_str().to_owned();
    path.push(".admission");
    PathBuf::from(path)
}

/// An admission file for the key file `key` to `party`, signed by that key itself.
fn forge_admission(dir: &std::path::Path, key: &std::path::Path, party: mesh_keys::PublicKey) -> PathBuf {
    use mesh::auth::{Admission, Credential};
    let secret: mesh::SecretKey = std::fs::read_to_string(key).unwrap().trim().parse().unwrap();
    let pair = mesh::Keypair::from_secret(&secret);
    let admission = Admission::direct(Credential::issue(&pair, party, pair.public(), None, false));
    let path = dir.join("forged.admission");
    std::fs::write(&path, hex::encode(admission.to_bytes())).unwrap();
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

#[tokio::test]
async fn admitted_peers_talk_in_a_members_only_swarm_and_an_outsider_hears_nothing() {
    let (_server, url) = signal_server().await;
    let dir = temp_dir("members");
    let (party, party_key) = key_and_public(&dir, "party.key").await;
    let topic = mesh_keys::DiscoveryKey::from_party(&party_key).to_hex();
    let (alice, bob, outsider) =
        (key(&dir, "alice.key").await, key(&dir, "bob.key").await, key(&dir, "outsider.key").await);
    let (alice_admission, bob_admission) =
        (admit(&url, &party, &alice).await, admit(&url, &party, &bob).await);

    let member = |key: &PathBuf, admission: &PathBuf| {
        vec![
            "--key".to_owned(),
            key.display().to_string(),
            "--admission".to_owned(),
            admission.display().to_string(),
        ]
    };
    let args = member(&alice, &alice_admission);
    let mut a =
        Peer::spawn_with(&url, &topic, &[], &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let args = member(&bob, &bob_admission);
    let mut b =
        Peer::spawn_with(&url, &topic, &[], &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // The outsider presents an admission it issued itself.
    let forged = forge_admission(&dir, &outsider, party_key);
    let args = member(&outsider, &forged);
    let mut c =
        Peer::spawn_with(&url, &topic, &[], &args.iter().map(String::as_str).collect::<Vec<_>>()).await;

    a.wait_connected(std::slice::from_ref(&b.key)).await;
    b.wait_connected(std::slice::from_ref(&a.key)).await;
    a.say("members only").await;
    let line = b.wait(|e| e["event"] == "message").await;
    assert_eq!(line["payload"], "members only");
    c.say("let me in").await;
    // Both members refuse the outsider: its connections to them end.
    for member in [a.key.clone(), b.key.clone()] {
        c.wait(|e| {
            assert!(e["event"] != "connected" && e["event"] != "message", "the outsider got {e}");
            e["event"] == "disconnected" && e["peer"] == member.as_str()
        })
        .await;
    }

    // Gossip never opened on the outsider's connections, so no line could reach it.
    a.exit().await;
    b.exit().await;
    drop(c.stdin.take());
    let mut outsider_events = Vec::new();
    while let Ok(Some(line)) = c.stdout.next_line().await {
        outsider_events.push(line);
    }
    assert!(
        outsider_events.iter().all(|line| !line.contains("\"message\"") && !line.contains("\"connected\"")),
        "the outsider got: {outsider_events:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
