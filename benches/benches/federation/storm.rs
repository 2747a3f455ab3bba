//! The storm section: thousands of clients joining one topic at once, each introduced to a
//! bounded view of it.
//!
//! 10,000 clients connect, join one topic and open their inbox as fast as the server takes them
//! (no join rate limit) on a server introducing through a view of 48 (everyone-to-everyone below
//! 300 members, the simulator's default model). Measured: the time until every client was
//! introduced (its join answered, with the members it meets), and the server's CPU time and RSS
//! growth. The baseline, in the same run: 2,000 clients with the view and without it (DXOS's
//! everyone-to-everyone), each on a fresh server.

use std::time::{Duration, Instant};

use anyhow::Result;
use mesh_benches::{
    proc_stats,
    server_process::{Profile, ServerProcess},
    signal_load::{Fleet, Layout, Mode},
    signal_wire::Wire,
};

const STORM: usize = 10_000;
const BASELINE: usize = 2_000;
const VIEW: usize = 48;

/// What one storm cost.
struct Storm {
    clients: usize,
    introduced: Duration,
    cpu: Duration,
    rss_growth_kib: u64,
    /// Swarm events the clients received by the time all were introduced.
    events: u64,
}

pub(crate) async fn run() -> Result<()> {
    println!(
        "\nfederation storm: clients join one topic at once, each with its inbox open; the server introduces \
         through a view of {VIEW}; each storm on a fresh server process"
    );
    println!("mesh server limits: {}", Profile::Storm { members: STORM, view: Some(VIEW) }.describe());
    let baseline_all = storm(BASELINE, None).await?;
    let baseline_view = storm(BASELINE, Some(VIEW)).await?;
    let full = storm(STORM, Some(VIEW)).await?;
    println!(
        "\n{:<34} {:>14} {:>14} {:>14}",
        "",
        format!("{BASELINE}, everyone"),
        format!("{BASELINE}, view {VIEW}"),
        format!("{STORM}, view {VIEW}")
    );
    let row = |figure: &str, value: &dyn Fn(&Storm) -> String| {
        println!(
            "{figure:<34} {:>14} {:>14} {:>14}",
            value(&baseline_all),
            value(&baseline_view),
            value(&full)
        )
    };
    row("all introduced after, s", &|s| format!("{:.2}", s.introduced.as_secs_f64()));
    row("joins per second", &|s| format!("{:.0}", s.clients as f64 / s.introduced.as_secs_f64()));
    row("server CPU, s", &|s| format!("{:.2}", s.cpu.as_secs_f64()));
    row("server CPU per join, µs", &|s| format!("{:.0}", s.cpu.as_secs_f64() * 1e6 / s.clients as f64));
    row("server RSS growth, KiB", &|s| s.rss_growth_kib.to_string());
    row("swarm events to clients by then", &|s| s.events.to_string());
    row("swarm events per join", &|s| format!("{:.1}", s.events as f64 / s.clients as f64));
    println!(
        "CPU per join, {BASELINE} clients: view / everyone = {:.2}; {STORM} / {BASELINE} clients with the view = {:.2}",
        per_join(&baseline_view) / per_join(&baseline_all),
        per_join(&full) / per_join(&baseline_view)
    );
    Ok(())
}

fn per_join(storm: &Storm) -> f64 {
    storm.cpu.as_secs_f64() / storm.clients as f64
}

/// Runs one storm of `clients` on a fresh server introducing through `view`.
async fn storm(clients: usize, view: Option<usize>) -> Result<Storm> {
    proc_stats::ensure_open_file_limit(clients as u64 + 256)?;
    let server = ServerProcess::spawn_with(Wire::Mesh, Profile::Storm { members: clients, view })?;
    let (rss, cpu) = (proc_stats::rss_kib(server.pid())?, proc_stats::cpu_time(server.pid())?);
    let began = Instant::now();
    let layout = Layout { clients, group: clients };
    // Every client's join is answered with the members it meets: once all are, all are introduced.
    let fleet = Fleet::connect(Wire::Mesh, server.addr(), server.url(), layout, Mode::Idle).await?;
    let introduced = began.elapsed();
    let cpu = proc_stats::cpu_time(server.pid())? - cpu;
    let rss_growth_kib = proc_stats::rss_kib(server.pid())?.saturating_sub(rss);
    let events = fleet.counters().swarm_events.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "  {clients} clients, {}: all introduced in {:.2} s, server CPU {:.2} s, RSS +{rss_growth_kib} KiB, \
         {events} swarm events",
        view.map_or("everyone meets everyone".into(), |view| format!("view {view}")),
        introduced.as_secs_f64(),
        cpu.as_secs_f64()
    );
    drop(fleet);
    // Let the server see its clients go before it is killed, as in service.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Storm { clients, introduced, cpu, rss_growth_kib, events })
}
