//! `mesh`: the command-line entry to the mesh stack.

mod signal;

use clap::{Parser, Subcommand};

/// Resilient peer-to-peer networking, wire-compatible with DXOS 0.8.3.
#[derive(Debug, Parser)]
#[command(name = "mesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a signal server: swarm membership and message relay over WebSocket.
    Signal(signal::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Signal(args) => runtime.block_on(signal::run(args)),
    }
}
