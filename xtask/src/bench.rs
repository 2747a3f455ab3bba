//! `cargo xtask bench <name>`: runs one benchmark target of `mesh-benches` (release build) and
//! lets it print its figures.

use anyhow::{Result, bail};

/// The benchmark targets in `benches/benches/`.
const NAMES: &[&str] = &["auth", "federation", "gossip", "signal", "swarm", "teleport", "webrtc"];

/// Runs `cargo bench -p mesh-benches --bench <name> -- <args>`.
pub(crate) fn run(name: &str, args: &[&str]) -> Result<()> {
    if !NAMES.contains(&name) {
        bail!("unknown benchmark {name:?}: expected one of {}", NAMES.join(", "));
    }
    let mut command = vec!["bench", "-p", "mesh-benches", "--bench", name];
    if !args.is_empty() {
        command.push("--");
        command.extend_from_slice(args);
    }
    crate::run(&crate::workspace_root(), "cargo", &command)
}
