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
    run(&root, "cargo", &["test", "--workspace", "--doc"])
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
