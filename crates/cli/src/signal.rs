//! `mesh signal`: run a signal server until SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use mesh_signal_server::{AuthPolicy, Config, Limits, RateLimit, Server, TlsFiles};

/// Options of `mesh signal`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (port 0 picks a free port; the URL is printed on start).
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Who may use a peer key: off (DXOS behaviour), optional or required proof of the key.
    #[arg(long, default_value = "off", value_parser = parse_auth)]
    auth: AuthPolicy,
    /// Open WebSocket connections at most.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_frame_size)]
    max_frame_size: usize,
    /// Join streams per connection at most.
    #[arg(long, default_value_t = Limits::default().max_joins_per_connection)]
    max_joins: usize,
    /// Requests per second allowed per connection, on average.
    #[arg(long, default_value_t = Limits::default().rate_limit.per_second)]
    rate_limit: f64,
    /// Requests allowed at once per connection after a quiet period.
    #[arg(long, default_value_t = Limits::default().rate_limit.burst)]
    rate_burst: u32,
    /// Seconds without any frame (clients ping every 10) before a connection is closed.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds to wait for connections to close on shutdown.
    #[arg(long, default_value_t = 5)]
    shutdown_timeout: u64,
}

fn parse_auth(text: &str) -> Result<AuthPolicy, String> {
    text.parse()
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let limits = Limits {
        max_connections: args.max_connections,
        max_frame_size: args.max_frame_size,
        max_joins_per_connection: args.max_joins,
        rate_limit: RateLimit { per_second: args.rate_limit, burst: args.rate_burst },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..Limits::default()
    };
    let tls = args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles { cert, key });
    let config = Config { listen: args.listen, limits, auth: args.auth, tls, public_url: None };
    let server = Server::start(config).await.context("starting the signal server")?;
    // The URL on stdout, alone on its line, for scripts that start the server on port 0.
    println!("{}", server.url());
    tracing::info!(url = %server.url(), metrics = %format!("http://{}/metrics", server.local_addr()), "ready");

    wait_for_stop_signal().await?;
    tracing::info!("shutting down");
    if !server.shutdown(Duration::from_secs(args.shutdown_timeout)).await {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}

async fn wait_for_stop_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}
