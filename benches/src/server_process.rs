//! Runs the server under test in a child process: the bench binary re-executed with
//! `--serve mesh` or `--serve bare` (and `--limits deployed:N` for the mesh server's [`Profile`]).
//! The server then has its own tokio runtime and its own memory and CPU figures in `/proc`, apart
//! from the load generator's.
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
use mesh_signal_server::{Config, Federation, IntroductionView, Limits, RateLimit, Server};

use crate::{bare_relay, proc_stats, signal_wire::Wire};

/// The argument that turns the bench binary into a server.
pub const SERVE_FLAG: &str = "--serve";

/// The argument that sets the mesh server's [`Profile`] (the signal bench's when absent).
const PROFILE_FLAG: &str = "--limits";
/// The argument that federates the mesh server through the NATS server at the URL after it.
const NATS_FLAG: &str = "--nats";
/// File descriptors the server needs beyond one per connection: the listener, the epoll and
/// event fds, stdio, and sockets accepted past the connection limit until they are answered 503.
const SPARE_FILES: u64 = 128;

/// The limits the mesh server runs with in a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The signal bench's: the defaults, except a rate limit and connection limit no bench client
    /// reaches and an idle timeout longer than the run.
    Load,
    /// A deployed server's: the defaults, the idle timeout included (so clients must keep their
    /// connections alive), except room for `max_connections`.
    Deployed {
        /// [`Limits::max_connections`].
        max_connections: usize,
    },
    /// A join storm's: the load limits, with no join rate limit, room for `members` in a topic,
    /// and the bounded introduction view of `view` members (topics under 300 introduce everyone,
    /// as the simulator's default model) or none.
    Storm {
        /// [`Limits::max_topic_members`].
        members: usize,
        /// The introduction view, or `None` for everyone-to-everyone.
        view: Option<usize>,
    },
}

/// Topics smaller than this introduce everyone to everyone under [`Profile::Storm`].
const EVERYONE_UP_TO: usize = 300;

impl Profile {
    /// The server's limits under this profile.
    pub fn limits(self) -> Limits {
        match self {
            Self::Load => Limits {
                rate_limit: RateLimit { per_second: 1e9, burst: 1_000_000_000 },
                max_connections: 50_000,
                idle_timeout: Duration::from_secs(3600),
                ..Limits::default()
            },
            Self::Deployed { max_connections } => Limits { max_connections, ..Limits::default() },
            Self::Storm { members, view } => {
                let unlimited = RateLimit { per_second: 1e9, burst: 1_000_000_000 };
                Limits {
                    join_rate_per_topic: unlimited,
                    max_topic_members: members,
                    introduction_view: view.map(|view| IntroductionView::new(view, EVERYONE_UP_TO)),
                    ..Self::Load.limits()
                }
            }
        }
    }

    /// One line describing the limits, for the bench's output.
    pub fn describe(self) -> String {
        let limits = self.limits();
        let rate =
            format!("rate limit {:.0}/s (burst {})", limits.rate_limit.per_second, limits.rate_limit.burst);
        let rate = match self {
            Self::Load => rate,
            Self::Deployed { .. } => rate + " (default)",
            Self::Storm { members, view } => {
                let view = view.map_or("everyone meets everyone".into(), |view| {
                    format!("introduction view {view} (everyone below {EVERYONE_UP_TO})")
                });
                format!("{rate}, no join rate limit, {members} members per topic, {view}")
            }
        };
        format!(
            "{rate}, max_connections {}, idle timeout {} s, send_queue {} (default), \
             max_frame_size {} B (default)",
            limits.max_connections,
            limits.idle_timeout.as_secs(),
            limits.send_queue,
            limits.max_frame_size,
        )
    }

    /// Open files the server process needs: `None` when the usual limit will do.
    fn open_files(self) -> Option<u64> {
        match self {
            Self::Load => None,
            Self::Storm { members, .. } => Some(members as u64 + SPARE_FILES),
            Self::Deployed { max_connections } => Some(max_connections as u64 + SPARE_FILES),
        }
    }

    /// The arguments that tell the server process this profile.
    fn to_args(self) -> Vec<String> {
        match self {
            Self::Load => Vec::new(),
            Self::Deployed { max_connections } => {
                vec![PROFILE_FLAG.to_owned(), format!("deployed:{max_connections}")]
            }
            Self::Storm { members, view } => {
                let view = view.map_or("all".to_owned(), |view| view.to_string());
                vec![PROFILE_FLAG.to_owned(), format!("storm:{members}:{view}")]
            }
        }
    }

    /// Reads the profile from the server process's arguments.
    fn from_args(args: &[String]) -> Result<Self> {
        let Some(position) = args.iter().position(|arg| arg == PROFILE_FLAG) else { return Ok(Self::Load) };
        let value = args.get(position + 1).map(String::as_str);
        if let Some(storm) = value.and_then(|value| value.strip_prefix("storm:")) {
            let parsed = storm.split_once(':').and_then(|(members, view)| {
                let view = if view == "all" { None } else { Some(view.parse().ok()?) };
                Some(Self::Storm { members: members.parse().ok()?, view })
            });
            return parsed
                .with_context(|| format!("{PROFILE_FLAG} storm:{storm}: expected storm:MEMBERS:VIEW|all"));
        }
        match value.and_then(|value| value.strip_prefix("deployed:")) {
            Some(count) => {
                let max_connections = count
                    .parse()
                    .with_context(|| format!("{PROFILE_FLAG} deployed:{count}: not a number"))?;
                Ok(Self::Deployed { max_connections })
            }
            None => bail!(
                "{PROFILE_FLAG} takes deployed:<max connections> or storm:<members>:<view>, not {value:?}"
            ),
        }
    }
}

/// A server running in a child process; dropping it kills the child.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    url: String,
}

impl ServerProcess {
    /// Starts the server for `wire` (the mesh server with [`Profile::Load`]) and waits until it
    /// listens.
    pub fn spawn(wire: Wire) -> Result<Self> {
        Self::spawn_with(wire, Profile::Load)
    }

    /// Starts the server for `wire`, the mesh server with `profile`, and waits until it listens.
    pub fn spawn_with(wire: Wire, profile: Profile) -> Result<Self> {
        Self::spawn_process(wire, profile, None)
    }

    /// Starts the mesh server with `profile`, federated through the NATS server at `nats`.
    pub fn spawn_federated(profile: Profile, nats: &str) -> Result<Self> {
        Self::spawn_process(Wire::Mesh, profile, Some(nats))
    }

    fn spawn_process(wire: Wire, profile: Profile, nats: Option<&str>) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the bench binary")?;
        let nats = nats.map(|url| [NATS_FLAG, url]);
        let mut child = Command::new(exe)
            .args([SERVE_FLAG, kind_name(wire)])
            .args(profile.to_args())
            .args(nats.iter().flatten())
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

/// If the process was started with `--serve KIND` (and perhaps `--limits PROFILE`), serves until
/// stdin closes and returns `true`.
pub fn serve_if_asked() -> Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    let Some(position) = args.iter().position(|arg| arg == SERVE_FLAG) else { return Ok(false) };
    let wire = match args.get(position + 1).map(String::as_str) {
        Some("mesh") => Wire::Mesh,
        Some("bare") => Wire::Bare,
        other => bail!("{SERVE_FLAG} takes mesh or bare, not {other:?}"),
    };
    let profile = Profile::from_args(&args)?;
    match profile.open_files() {
        Some(needed) => proc_stats::ensure_open_file_limit(needed)?,
        None => proc_stats::raise_open_file_limit()?,
    };
    // One worker per core, as a deployed server would run.
    let runtime = tokio::runtime::Runtime::new().context("starting the server's runtime")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    match wire {
        Wire::Mesh => {
            let nats = args.iter().position(|arg| arg == NATS_FLAG).and_then(|at| args.get(at + 1));
            let federation = nats.map(|url| Federation::new([url.clone()]));
            let config = Config::default()
                .with_listen(listen)
                .with_limits(profile.limits())
                .with_federation(federation);
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
