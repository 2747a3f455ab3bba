//! The Debian packages the tests run as real counterparts: Chromium for the browser peers, coturn
//! for TURN, nftables and iproute2 for the network namespaces, NATS for federated signal servers.
//! Installed with apt when missing.

use std::process::Command;

use anyhow::{Result, bail};

/// (program the tests run, Debian packages that bring it).
const PACKAGES: [(&str, &[&str]); 5] = [
    ("chromium", &["chromium", "chromium-driver"]),
    ("turnserver", &["coturn"]),
    ("nft", &["nftables"]),
    ("ip", &["iproute2"]),
    ("nats-server", &["nats-server"]),
];

/// Installs the packages of every missing program, or says plainly why it cannot.
pub(crate) fn install_missing() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(program, _)| !on_path(program))
        .flat_map(|(_, packages)| packages.iter().copied())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} for the tests", missing.join(", "));
    if !on_path("apt-get") {
        bail!(
            "the tests need the Debian packages {}, and apt-get is not here to install them",
            missing.join(" ")
        );
    }
    // A fresh machine may have no package lists yet; a failed update still lets cached lists work.
    let _ = apt(&["update", "-qq"]);
    if !apt(&[&["install", "-y", "-qq", "--no-install-recommends"], missing.as_slice()].concat())? {
        bail!("`apt-get install {}` failed (root is needed); install them by hand", missing.join(" "));
    }
    Ok(())
}

fn apt(args: &[&str]) -> Result<bool> {
    eprintln!("$ apt-get {}", args.join(" "));
    Ok(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?.success())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
