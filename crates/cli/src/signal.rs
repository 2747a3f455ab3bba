//! `mesh signal`: run a signal server until SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use mesh_signal_server::{
    AuthPolicy, Config, Federation, IntroductionView, Limits, RateLimit, Server, TlsFiles,
};

/// Options of `mesh signal`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (port 0 picks a free port; the URL is printed on start).
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Who may use a peer key: off (DXOS behaviour), optional or required proof of the key.
    #[arg(long, default_value = "off", value_parser = parse_auth)]
    auth: AuthPolicy,
    /// The URL clients reach this server at (ws:// or wss://). With --auth, signatures then cover
    /// its host[:port] rather than the Host header, so a relaying server cannot replay them.
    #[arg(long)]
    public_url: Option<String>,
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
    /// Joins per second into one topic, from all connections together, on average.
    #[arg(long, default_value_t = Limits::default().join_rate_per_topic.per_second)]
    topic_join_rate: f64,
    /// Joins allowed at once into one topic after a quiet period.
    #[arg(long, default_value_t = Limits::default().join_rate_per_topic.burst)]
    topic_join_burst: u32,
    /// Joins per second per connection, on average.
    #[arg(long, default_value_t = Limits::default().join_rate_per_connection.per_second)]
    connection_join_rate: f64,
    /// Joins allowed at once per connection after a quiet period.
    #[arg(long, default_value_t = Limits::default().join_rate_per_connection.burst)]
    connection_join_burst: u32,
    /// Join streams in one topic at most.
    #[arg(long, default_value_t = Limits::default().max_topic_members)]
    max_topic_members: usize,
    /// Seconds without any frame (clients ping every 10) before a connection is closed.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Seconds a write to a client may stall (it does not read) before the connection is closed;
    /// capped at --idle-timeout.
    #[arg(long, default_value_t = Limits::default().write_timeout.as_secs())]
    write_timeout: u64,
    /// Introduce each newcomer to about this many members of a large topic instead of to all of
    /// them (off by default: everyone meets everyone, as with DXOS's server).
    #[arg(long)]
    introduction_view: Option<usize>,
    /// With --introduction-view: topics with fewer members than this still introduce everyone.
    #[arg(long, default_value_t = 0, requires = "introduction_view")]
    everyone_up_to: usize,
    /// Federate with the other signal servers on this NATS cluster (comma-separated URLs, e.g.
    /// nats://10.0.0.1:4222,nats://10.0.0.2:4222): peers on any of them meet and message each
    /// other. Without it the server serves alone.
    #[arg(long, value_delimiter = ',')]
    nats: Vec<String>,
    /// With --nats: the first tokens of every NATS subject, so federations can share a cluster.
    #[arg(long, default_value = "mesh.signal", requires = "nats")]
    nats_prefix: String,
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
        join_rate_per_topic: RateLimit { per_second: args.topic_join_rate, burst: args.topic_join_burst },
        join_rate_per_connection: RateLimit {
            per_second: args.connection_join_rate,
            burst: args.connection_join_burst,
        },
        max_topic_members: args.max_topic_members,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        write_timeout: Duration::from_secs(args.write_timeout),
        introduction_view: args
            .introduction_view
            .map(|view| IntroductionView::new(view, args.everyone_up_to)),
        ..Limits::default()
    };
    let tls = args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles { cert, key });
    let config = Config::default()
        .with_listen(args.listen)
        .with_limits(limits)
        .with_auth(args.auth)
        .with_tls(tls)
        .with_public_url(args.public_url)
        .with_federation(
            (!args.nats.is_empty()).then(|| Federation::new(args.nats).with_prefix(args.nats_prefix)),
        );
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
