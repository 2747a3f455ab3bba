//! `mesh demo` forms a swarm and passes; `mesh keygen` writes a private key file.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use mesh_keys::{Keypair, PublicKey, SecretKey};

fn mesh() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
}

#[test]
fn demo_forms_a_swarm_and_reports_its_figures() {
    let output =
        mesh().args(["demo", "--peers", "4", "--bulk-mib", "4", "--timeout", "30"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for line in
        ["swarm formed    12 connections", "12 pings answered", "bulk transfer   4 MiB", "demo passed"]
    {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

fn demo_over(transport: &str) {
    let output =
        mesh().args(["demo", "--peers", "3", "--transport", transport, "--bulk-mib", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("swarm formed    6 connections"), "{stdout}");
    assert!(stdout.contains("demo passed"), "{stdout}");
}

#[test]
fn demo_over_the_memory_transport() {
    demo_over("memory");
}

#[test]
fn demo_over_webrtc() {
    demo_over("webrtc");
}

#[test]
fn demo_refuses_a_swarm_of_one() {
    let output = mesh().args(["demo", "--peers", "1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn keygen_writes_a_private_secret_and_prints_its_public_key() {
    let dir = std::env::temp_dir().join(format!("mesh-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("peer.key");
    let output = mesh().args(["keygen", "--out"]).arg(&file).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let public: PublicKey = String::from_utf8(output.stdout).unwrap().trim().parse().unwrap();
    let secret: SecretKey = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    assert_eq!(Keypair::from_secret(&secret).public(), public);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // An existing key is never overwritten by accident.
    let again = mesh().args(["keygen", "--out"]).arg(&file).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret.to_hex());
    std::fs::remove_dir_all(&dir).unwrap();
}
