//! `cargo xtask test`: bring what the tests need, then run every test in the workspace.
//!
//! What the tests need beyond Rust is installed here when missing, so a fresh machine needs nothing
//! but this command: the pinned npm packages of each Node project under tests/ (`npm ci`), and the
//! Debian packages of the real counterparts (Chromium, coturn, nftables).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::{run, workspace_root};

/// Node projects under tests/ whose pinned packages the tests use.
const NODE_PROJECTS: [&str; 5] = [
    "tests/browser-interop",
    "tests/golden",
    "tests/signal-interop",
    "tests/swarm-interop",
    "tests/teleport-interop",
];

pub(crate) fn run_all(filters: &[&str]) -> Result<()> {
    let root = workspace_root();
    crate::system::install_missing()?;
    for project in NODE_PROJECTS {
        install_node_packages(&root.join(project))?;
    }

    // The committed golden vectors must still be what the published DXOS encoders write.
    run(&root.join("tests/golden"), "node", &["make-vectors.mjs", "--check"])?;

    if has_nextest() {
        let mut args = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        args.extend(filters);
        run(&root, "cargo", &args)?;
    } else {
        eprintln!("cargo-nextest not found: running the tests with cargo test");
        let mut args = vec!["test", "--workspace", "--all-targets", "--no-fail-fast", "--"];
        args.extend(filters);
        run(&root, "cargo", &args)?;
    }
    // nextest does not run doctests; the crate docs' examples are tests too.
    run(&root, "cargo", &["test", "--workspace", "--doc"])?;
    if filters.is_empty() && has_nextest() {
        webrtc_on_a_bare_host(&root)?;
    }
    Ok(())
}

/// The WebRTC tests once more, in a network namespace with nothing but loopback: no other
/// interface and no multicast route, as on a container or an offline machine, where peer
/// connections must still come up.
fn webrtc_on_a_bare_host(root: &Path) -> Result<()> {
    let probe = std::process::Command::new("unshare").args(["--net", "true"]).output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!(
            "\n*** SKIPPED the WebRTC tests on a loopback-only host: network namespaces are forbidden here ***\n"
        );
        return Ok(());
    }
    let script = "set -e; ip link set lo up; \
        if ip route show table all | grep -q '^multicast\\|224\\.0\\.0\\.0'; then echo 'a multicast route exists' >&2; exit 1; fi; \
        exec cargo nextest run --workspace --offline --no-fail-fast \
          -E '(binary(/webrtc/) | binary(browser_interop) | test(/webrtc/)) - binary(webrtc_loss)'";
    run(root, "unshare", &["--net", "sh", "-c", script])
}

/// Runs `npm ci` in `dir` unless its node_modules were installed from the current lockfile.
fn install_node_packages(dir: &Path) -> Result<()> {
    let lock = std::fs::read(dir.join("package-lock.json"))
        .with_context(|| format!("reading the lockfile in {}", dir.display()))?;
    // A copy of the lockfile that node_modules was installed from.
    let stamp = dir.join("node_modules/.installed-from-lock.json");
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    if std::process::Command::new("npm").arg("--version").output().is_err() {
        bail!("npm is needed for the interop tests: install Node.js 20 or later");
    }
    // --ignore-scripts: the DXOS packages install without their build scripts.
    run(dir, "npm", &["ci", "--ignore-scripts", "--no-audit", "--no-fund"])?;
    std::fs::write(&stamp, lock)?;
    Ok(())
}

fn has_nextest() -> bool {
    std::process::Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}
