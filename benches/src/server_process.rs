//! Runs the server under test in a child process: the bench binary re-executed with
//! `--serve mesh` or `--serve bare`. The server then has its own tokio runtime and its own memory
//! and CPU figures in `/proc`, apart from the load generator's.
//!
//! The child prints `listening <addr> <url>` once it accepts connections and exits when its stdin
//! closes, so it never outlives the bench.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use mesh_signal_server::{Config, Limits, RateLimit, Server};

use crate::{bare_relay, proc_stats, signal_wire::Wire};

/// The argument that turns the bench binary into a server.
pub const SERVE_FLAG: &str = "--serve";

/// The mesh server's limits in the bench: the defaults, except a rate limit and connection limit
/// no bench client reaches and an idle timeout longer than the run.
pub fn mesh_limits() -> Limits {
    Limits {
        rate_limit: RateLimit { per_second: 1e9, burst: 1_000_000_000 },
        max_connections: 50_000,
        idle_timeout: Duration::from_secs(3600),
        ..Limits::default()
    }
}

/// One line describing [`mesh_limits`], for the bench's output.
pub fn describe_mesh_limits() -> String {
    let limits = mesh_limits();
    format!(
        "rate limit {:.0}/s (burst {}), max_connections {}, idle timeout {} s, send_queue {} (default), \
         max_frame_size {} B (default)",
        limits.rate_limit.per_second,
        limits.rate_limit.burst,
        limits.max_connections,
        limits.idle_timeout.as_secs(),
        limits.send_queue,
        limits.max_frame_size,
    )
}

/// A server running in a child process; dropping it kills the child.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    url: String,
}

impl ServerProcess {
    /// Starts the server for `wire` and waits until it listens.
    pub fn spawn(wire: Wire) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the bench binary")?;
        let mut child = Command::new(exe)
            .args([SERVE_FLAG, kind_name(wire)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server process")?;
        let stdout = child.stdout.take().context("the child's stdout is piped")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the server's address")?;
        let mut words = line.split_whitespace();
        let (Some("listening"), Some(addr), Some(url)) = (words.next(), words.next(), words.next()) else {
            let _ = child.kill();
            bail!("the server process said {line:?} instead of its address");
        };
        let addr = addr.parse().with_context(|| format!("bad server address {addr:?}"))?;
        Ok(Self { addr, url: url.to_owned(), child })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kind_name(wire: Wire) -> &'static str {
    match wire {
        Wire::Mesh => "mesh",
        Wire::Bare => "bare",
    }
}

/// If the process was started with `--serve KIND`, serves until stdin closes and returns `true`.
pub fn serve_if_asked() -> Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    let Some(position) = args.iter().position(|arg| arg == SERVE_FLAG) else { return Ok(false) };
    let wire = match args.get(position + 1).map(String::as_str) {
        Some("mesh") => Wire::Mesh,
        Some("bare") => Wire::Bare,
        other => bail!("{SERVE_FLAG} takes mesh or bare, not {other:?}"),
    };
    proc_stats::raise_open_file_limit()?;
    // One worker per core, as a deployed server would run.
    let runtime = tokio::runtime::Runtime::new().context("starting the server's runtime")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    match wire {
        Wire::Mesh => {
            let config = Config::default().with_listen(listen).with_limits(mesh_limits());
            let server = runtime.block_on(Server::start(config)).context("starting the mesh server")?;
            println!("listening {} {}", server.local_addr(), server.url());
            wait_for_stdin_close();
            runtime.block_on(server.shutdown(Duration::from_secs(1)));
        }
        Wire::Bare => {
            let listener = runtime.block_on(async { bare_relay::bind(listen) })?;
            let addr = listener.local_addr().context("the relay's address")?;
            let task = runtime.spawn(bare_relay::serve(listener));
            println!("listening {addr} ws://{addr}/");
            wait_for_stdin_close();
            task.abort();
        }
    }
    Ok(true)
}

fn wait_for_stdin_close() {
    let mut sink = Vec::new();
    // Returns at EOF, when the parent exits or drops the pipe; an error means the same.
    let _ = std::io::stdin().read_to_end(&mut sink);
}
