//! `mesh keygen`: a new key pair; the secret goes to a file only its owner can read.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};
use mesh_keys::Keypair;

/// Options of `mesh keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to write the secret key (64 hex characters); created with mode 0600.
    #[arg(long, default_value = "mesh.key")]
    out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if args.out.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let pair = Keypair::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // Mode applies only to a new file; make a replaced one private too.
    std::fs::set_permissions(&args.out, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{}", pair.secret().to_hex())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", pair.public());
    Ok(())
}
