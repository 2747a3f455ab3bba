//! Helpers shared by the `mesh` command tests.
#![allow(dead_code, unreachable_pub)]

pub mod peer;

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Long enough for anything on loopback; a test that waits this long has failed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts `mesh signal` on a free loopback port; returns the process and the URL it printed.
pub async fn signal_server() -> (Child, String) {
    signal_server_with(&[]).await
}

/// Starts `mesh signal` with `extra` arguments on a free loopback port; returns the process and
/// the URL it printed.
pub async fn signal_server_with(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["signal", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mesh starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let url = tokio::time::timeout(PATIENCE, stdout.next_line())
        .await
        .expect("the URL in time")
        .expect("stdout readable")
        .expect("the URL line");
    (child, url)
}
