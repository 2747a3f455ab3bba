//! Running one test inside a network namespace of its own: the test binary runs itself again
//! under `unshare --net`, after shell commands that shape the namespace (bring loopback up, add
//! nftables rules). Needs root or user namespaces; where namespaces are forbidden the test says
//! so loudly and is skipped.

use std::process::Command;

/// Set in the re-run test's environment: the test body runs there.
const INSIDE: &str = "MESH_TEST_NETNS";

/// Whether this process is the re-run inside the namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Runs the test `name` (its full path in the test binary) again in a new network namespace,
/// after `setup` (shell commands) ran there, and fails if it fails. Returns `false` (after
/// saying so on stderr) when no namespace can be made here.
pub fn rerun_inside(name: &str, setup: &[&str]) -> bool {
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    if !probe.as_ref().is_ok_and(|out| out.status.success()) {
        let why = match probe {
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(err) => err.to_string(),
        };
        eprintln!("\n*** SKIPPED {name}: network namespaces are forbidden here ({why}) ***\n");
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!("set -e; {}; exec \"$0\" \"$@\"", setup.join("; "));
    let status = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .arg(exe)
        .args(["--exact", name, "--nocapture"])
        .env(INSIDE, "1")
        .status()
        .unwrap();
    assert!(status.success(), "{name} failed inside its network namespace ({status})");
    true
}
