//! `mesh`: the command-line entry to the mesh stack.

mod demo;
mod ice;
mod invite;
mod keygen;
mod peer;
mod signal;
mod transport;

use clap::{Args as _, Parser, Subcommand, error::ErrorKind};

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
    /// Create a key pair: the secret to a file (mode 0600), the public key on stdout.
    Keygen(keygen::Args),
    /// Join a swarm and stay in it: stdin lines go to every peer, others' lines are printed.
    Peer(peer::Args),
    /// Watch a swarm form on loopback: an embedded signal server and N peers over real sockets.
    Demo(demo::Args),
    /// Invite a new peer into a party: prints a one-time code and waits for the peer to use it.
    Invite(invite::InviteArgs),
    /// Join a party with a code from `mesh invite`; the admission is stored next to the key.
    Join(invite::JoinArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Peer(args) = &cli.command
        && let Some(message) = args.usage_error()
    {
        peer::Args::augment_args(clap::Command::new("mesh peer"))
            .error(ErrorKind::ArgumentConflict, message)
            .exit();
    }
    // The server logs what it does; the other commands speak through their own output. The
    // WebRTC stack warns about routine ICE and DTLS events; only its errors matter here.
    let default_filter = match cli.command {
        Command::Signal(_) => "info",
        _ => "warn,rtc=error,webrtc=error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = match cli.command {
        Command::Signal(args) => runtime.block_on(signal::run(args)),
        Command::Keygen(args) => keygen::run(args),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Peer(args) => runtime.block_on(peer::run(args)),
        Command::Invite(args) => runtime.block_on(invite::invite(args)),
        Command::Join(args) => runtime.block_on(invite::join(args)),
    };
    // Without waiting for blocking reads (stdin) that will never finish: a peer that fails exits
    // at once instead of when its input closes.
    runtime.shutdown_background();
    result
}
