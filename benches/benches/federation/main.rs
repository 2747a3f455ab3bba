//! Signal server figures at federation scale: relaying between federated servers, join storms
//! into one topic, and the connections one server process holds.
//!
//! `cargo bench -p mesh-benches --bench federation` (or `cargo xtask bench federation`) runs
//! every section; append section names (`-- relay`, `-- storm`, `-- connections`) to run those
//! only. Servers run in child processes (this binary with `--serve mesh`, a limits profile and
//! perhaps `--nats URL`), NATS as `nats-server`, and the clients here.
//! - relay (`relay.rs`): cross-server relay throughput and latency, two federated servers against
//!   one server in the same run.
//! - storm (`storm.rs`): 10,000 clients joining one topic at once with the bounded introduction
//!   view: time until all are introduced, server CPU and memory, against 2,000 with and without
//!   the view.
//! - connections (`connections.rs`): 100,000 idle clients (`--clients N` for another count), or
//!   as many as the open-file limit allows, in topics of 10, each joined to its topic with its
//!   inbox open and sending DXOS's `__ping__` every 10 s. The server's RSS growth per connection,
//!   against the same figure for 10,000 clients on a fresh server in the same run (the baseline),
//!   the idle server's RSS, its open files and the time to open every connection. `--hold S` then
//!   keeps the connections S seconds more (past the server's 40 s idle timeout, say), checks that
//!   none was closed and measures again. Both processes need an open-file limit above the client
//!   count: the bench raises it, and says so when it cannot.

mod connections;
mod relay;
mod storm;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_benches::server_process;

/// The sections, in the order a full run takes them.
const SECTIONS: &[&str] = &["relay", "storm", "connections"];

/// The members per topic in the connections section.
const GROUP: usize = 10;

/// What the command line asks for.
struct Options {
    /// Sections to run; empty: all of them.
    sections: Vec<String>,
    /// Clients in the connections section, if `--clients` says.
    clients: Option<usize>,
    /// How long the connections section keeps its connections after measuring, to measure again.
    hold: Duration,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self { sections: Vec::new(), clients: None, hold: Duration::ZERO };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--clients" => {
                    let count = args.next().context("--clients needs a number")?;
                    let clients: usize = count.parse().with_context(|| format!("--clients {count:?}"))?;
                    options.clients = Some(clients);
                    if clients == 0 || !clients.is_multiple_of(GROUP) {
                        bail!("--clients must be a positive multiple of {GROUP} (the topic size)");
                    }
                }
                "--hold" => {
                    let seconds = args.next().context("--hold needs a number of seconds")?;
                    let seconds: u64 = seconds.parse().with_context(|| format!("--hold {seconds:?}"))?;
                    options.hold = Duration::from_secs(seconds);
                }
                // The flags cargo adds (`--bench`) and the `--` separator.
                flag if flag.starts_with("--") => {}
                section if SECTIONS.contains(&section) => options.sections.push(arg),
                unknown => bail!("unknown section {unknown:?}: expected one of {}", SECTIONS.join(", ")),
            }
        }
        Ok(options)
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|wanted| wanted == section)
    }
}

fn main() -> Result<()> {
    if server_process::serve_if_asked()? {
        return Ok(());
    }
    let options = Options::parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    for &section in SECTIONS.iter().filter(|section| options.wants(section)) {
        runtime.block_on(run(section, &options))?;
    }
    println!("\n(whole run: {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one section.
async fn run(section: &str, options: &Options) -> Result<()> {
    match section {
        "relay" => relay::run().await,
        "storm" => storm::run().await,
        "connections" => connections::run(options.clients, options.hold).await,
        other => bail!("section {other:?} is listed but has no code"),
    }
}
