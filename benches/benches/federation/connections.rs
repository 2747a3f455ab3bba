//! The connections section: how much one server process holds per idle connection.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use mesh_benches::{
    proc_stats,
    server_process::{Profile, ServerProcess},
    signal_load::{Fleet, Layout, Mode},
    signal_wire::Wire,
};

use crate::GROUP;

/// The clients unless `--clients` says otherwise (or the open-file limit allows fewer), and the
/// baseline's.
const CONNECTIONS: usize = 100_000;
const BASELINE: usize = 10_000;
/// The server's connection limit above the clients: room for the fleet and nothing much more, so
/// the limit still means something.
const HEADROOM: usize = 100;
/// Open files this process needs beyond one per client: stdio, the runtime's, the server's pipes.
const SPARE_FILES: u64 = 256;
/// Longest wait for the swarm events of the last joins to reach every client.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// The target for the server's memory per idle connection.
const TARGET_KIB: f64 = 16.0;

/// What holding one fleet of idle connections cost the server.
struct Held {
    clients: usize,
    /// The server's RSS once listening, and with every connection open and settled, KiB.
    idle_kib: u64,
    loaded_kib: u64,
    /// The server's open files before and after.
    idle_fds: usize,
    loaded_fds: usize,
    /// From the first connect to the last client's inbox open.
    open_time: Duration,
    /// From then until every client had heard of every other member of its topic.
    settle_time: Duration,
    /// The server's RSS after holding the connections a while longer, KiB.
    held_kib: Option<u64>,
}

impl Held {
    /// The server's RSS growth per connection, KiB.
    fn per_connection_kib(&self) -> f64 {
        self.loaded_kib.saturating_sub(self.idle_kib) as f64 / self.clients as f64
    }
}

pub(crate) async fn run(clients: Option<usize>, hold_for: Duration) -> Result<()> {
    let clients = match clients {
        Some(clients) => clients,
        None => {
            // As many as the hard limit allows, when a process may not raise it here.
            let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
            let fits = (hard.saturating_sub(SPARE_FILES + HEADROOM as u64) as usize) / GROUP * GROUP;
            if fits < CONNECTIONS && rlimit::setrlimit(rlimit::Resource::NOFILE, hard + 1, hard + 1).is_err()
            {
                println!(
                    "federation connections: the open-file hard limit here is {hard} and cannot be raised, so \
                     {fits} clients instead of {CONNECTIONS} (raise it to run all; see the error with --clients {CONNECTIONS})"
                );
                fits
            } else {
                CONNECTIONS
            }
        }
    };
    let open_files = proc_stats::ensure_open_file_limit(clients as u64 + SPARE_FILES).with_context(|| {
        format!(
            "{clients} connections need that many open files here and in the server; `--clients N` runs fewer"
        )
    })?;
    let profile = Profile::Deployed { max_connections: clients.max(BASELINE) + HEADROOM };
    println!(
        "federation connections: {clients} idle clients (baseline {BASELINE}) in topics of {GROUP}, each joined with \
         its inbox open and sending __ping__ every 10 s; each count on a fresh server process"
    );
    println!("mesh server limits: {}", profile.describe());
    println!(
        "open-file limit {open_files} (server and clients); {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let baseline = hold(Layout { clients: BASELINE, group: GROUP }, profile, hold_for).await?;
    let full = hold(Layout { clients, group: GROUP }, profile, hold_for).await?;

    let (per_baseline, per_full) = (baseline.per_connection_kib(), full.per_connection_kib());
    let verdict = |met: bool| if met { "yes" } else { "NO" };
    println!(
        "\n{:<44} {:>12} {:>12} {:>10}   {:<10} met",
        "figure",
        format!("{BASELINE} conns"),
        format!("{clients} conns"),
        "ratio",
        "target"
    );
    println!(
        "{:<44} {per_baseline:>12.2} {per_full:>12.2} {:>10.2}   {:<10} {}",
        "server RSS growth per connection, KiB",
        per_full / per_baseline,
        format!("<= {TARGET_KIB} KiB"),
        verdict(per_full <= TARGET_KIB),
    );
    let row =
        |figure: &str, baseline: String, full: String| println!("{figure:<44} {baseline:>12} {full:>12}");
    row("server RSS idle (before), KiB", baseline.idle_kib.to_string(), full.idle_kib.to_string());
    row(
        "server RSS with connections (after), KiB",
        baseline.loaded_kib.to_string(),
        full.loaded_kib.to_string(),
    );
    row("server open files (after)", baseline.loaded_fds.to_string(), full.loaded_fds.to_string());
    let seconds = |time: Duration| format!("{:.1}", time.as_secs_f64());
    row("time to open every connection, s", seconds(baseline.open_time), seconds(full.open_time));
    row("then until swarm events settled, s", seconds(baseline.settle_time), seconds(full.settle_time));
    if let (Some(baseline_kib), Some(full_kib)) = (baseline.held_kib, full.held_kib) {
        let figure = format!("server RSS after {} s more, KiB", hold_for.as_secs());
        row(&figure, baseline_kib.to_string(), full_kib.to_string());
    }
    Ok(())
}

/// Opens `layout.clients` idle clients to a fresh server and measures what the server holds.
/// With a `hold_for`, keeps them that much longer and measures again.
async fn hold(layout: Layout, profile: Profile, hold_for: Duration) -> Result<Held> {
    let server = ServerProcess::spawn_with(Wire::Mesh, profile)?;
    // The server prints its address once it listens: it is idle from here.
    let (idle_kib, idle_fds) = (proc_stats::rss_kib(server.pid())?, proc_stats::open_fds(server.pid())?);
    let began = Instant::now();
    let fleet = Fleet::connect(Wire::Mesh, server.addr(), server.url(), layout, Mode::Idle).await?;
    let open_time = began.elapsed();
    fleet.wait_settled(SETTLE_LIMIT).await?;
    let settle_time = began.elapsed() - open_time;
    let (loaded_kib, loaded_fds) = (proc_stats::rss_kib(server.pid())?, proc_stats::open_fds(server.pid())?);
    let all_open = || {
        let closed = fleet.counters().closed.load(Ordering::Relaxed);
        if closed > 0 {
            bail!(
                "{closed} of {} connections closed before the measurement: keep-alive failed?",
                layout.clients
            );
        }
        Ok(())
    };
    all_open()?;
    let mut held = Held {
        clients: layout.clients,
        idle_kib,
        loaded_kib,
        idle_fds,
        loaded_fds,
        open_time,
        settle_time,
        held_kib: None,
    };
    println!(
        "\n{} connections: opened in {:.1} s ({:.0}/s), swarm events settled {:.1} s later; server RSS {} KiB idle \
         -> {} KiB ({:.2} KiB per connection), open files {} -> {}",
        layout.clients,
        held.open_time.as_secs_f64(),
        layout.clients as f64 / held.open_time.as_secs_f64(),
        held.settle_time.as_secs_f64(),
        held.idle_kib,
        held.loaded_kib,
        held.per_connection_kib(),
        held.idle_fds,
        held.loaded_fds,
    );
    if !hold_for.is_zero() {
        // Nothing to wait for here: the point is to let time pass.
        tokio::time::sleep(hold_for).await;
        all_open()?;
        let held_kib = proc_stats::rss_kib(server.pid())?;
        println!(
            "  after {} s more, every connection still open: server RSS {held_kib} KiB ({:.2} KiB per connection)",
            hold_for.as_secs(),
            held_kib.saturating_sub(held.idle_kib) as f64 / layout.clients as f64
        );
        held.held_kib = Some(held_kib);
    }
    // The clients close first, so the server sees them go as it would in service.
    drop(fleet);
    drop(server);
    Ok(held)
}
