//! Project automation. Run `cargo xtask help` for the commands.

mod bench;
mod fuzz;
mod proto;
mod simulate;
mod system;
mod test;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

const USAGE: &str = "\
cargo xtask <command>

Commands:
  proto [--check]   regenerate crates/proto/src/gen from proto/ (--check: fail if the committed code is stale)
  bench <name> [..] run a benchmark (auth, federation, gossip, signal, swarm, teleport, webrtc) in release
                    and print its figures; further arguments go to the benchmark (e.g. `bench signal memory`)
  test              install what the tests need (npm and Debian packages) and run every test in the workspace
  fuzz --smoke [--seconds N]
                    build every fuzz target in fuzz/ (stable toolchain, no sanitizer; installs
                    cargo-fuzz when missing) and run each for N seconds (default 25); fails on any
                    panic, hang (an input over 10 s) or running out of memory
  fuzz <target>.. [--seconds N]
                    run fuzz targets for N seconds each (default 300), printing executions and
                    executions per second; targets: signal_server, signal_client, swarm,
                    teleport_stream, rpc, keys
  simulate [flags]  a whole swarm on virtual time (signal, swarm, topology) with a seeded network model
                    and churn; prints a summary table (--json: JSON), writes an SVG plot. Flags:
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["proto"] => proto::generate(proto::Mode::Write),
        ["proto", "--check"] => proto::generate(proto::Mode::Check),
        ["test", filters @ ..] => test::run_all(filters),
        ["bench", name, args @ ..] => bench::run(name, args),
        ["simulate", rest @ ..] => simulate::run(rest),
        ["fuzz", rest @ ..] => fuzz::run(rest),
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}{}", simulate::FLAGS);
            Ok(())
        }
        _ => {
            eprint!("unknown arguments: {}\n\n{USAGE}{}\n", args.join(" "), simulate::FLAGS);
            std::process::exit(2);
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits inside the workspace").to_path_buf()
}

/// Runs a command in `dir`, failing with its name when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = std::process::Command::new(program).args(args).current_dir(dir).status()?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}
