//! The relay section: directed messages between clients of two federated servers, against the
//! same fleet on one server, in the same run.
//!
//! 1,000 clients in topics of 10 send directed messages open-loop at fixed offered rates. Alone:
//! every client on one server, recipients anywhere in the topic. Federated: two servers on one NATS
//! server, client `c` on server `c % 2`, recipients only on the other server, so every message goes
//! client → server → NATS → server → client. The setups take turns at each rate.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Result;
use mesh_benches::{
    nats_process::NatsProcess,
    proc_stats,
    server_process::{Profile, ServerProcess},
    signal_load::{Fleet, Layout, Mode},
    signal_wire::Wire,
};

const LAYOUT: Layout = Layout { clients: 1_000, group: 10 };
/// Offered rates, messages per second over the whole fleet.
const RATES: &[f64] = &[5_000.0, 10_000.0, 20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0, 120_000.0];
/// Time at each rate before measuring, and measuring.
const SETTLE: Duration = Duration::from_millis(700);
const MEASURE: Duration = Duration::from_millis(2_000);
/// A rate counts as kept up with when at least this share of what was sent arrived.
const KEEPS_UP: f64 = 0.95;

/// One setup's result at one offered rate.
#[derive(Debug, Clone, Copy)]
struct Step {
    delivered_per_second: f64,
    share: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU the servers (and NATS) used per second of the step.
    server_cores: f64,
}

/// A fleet and its servers' process ids (NATS included).
struct Setup {
    fleet: Fleet,
    pids: Vec<u32>,
}

pub(crate) async fn run() -> Result<()> {
    println!(
        "\nfederation relay: {} clients in topics of {}, directed messages open-loop; alone: one server; \
         federated: two servers and a NATS server, every message crossing between the servers",
        LAYOUT.clients, LAYOUT.group
    );
    let profile = Profile::Load;
    println!("mesh server limits: {}", profile.describe());
    let alone_server = ServerProcess::spawn_with(Wire::Mesh, profile)?;
    let nats = NatsProcess::spawn()?;
    let first = ServerProcess::spawn_federated(profile, nats.url())?;
    let second = ServerProcess::spawn_federated(profile, nats.url())?;
    let alone = Setup {
        fleet: Fleet::connect(Wire::Mesh, alone_server.addr(), alone_server.url(), LAYOUT, Mode::Senders)
            .await?,
        pids: vec![alone_server.pid()],
    };
    let servers = [(first.addr(), first.url().to_owned()), (second.addr(), second.url().to_owned())];
    let federated = Setup {
        fleet: Fleet::connect_spread(Wire::Mesh, &servers, LAYOUT, Mode::Senders).await?,
        pids: vec![first.pid(), second.pid(), nats.pid()],
    };
    // The federated fleet's recipients join on the other server: its members must have met before
    // anyone sends, or the first messages go to peers the servers have not heard of yet.
    alone.fleet.wait_settled(Duration::from_secs(30)).await?;
    federated.fleet.wait_settled(Duration::from_secs(30)).await?;

    println!(
        "\n{:>10} | {:>12} {:>6} {:>8} {:>8} {:>6} | {:>12} {:>6} {:>8} {:>8} {:>6} | {:>6}",
        "offered/s",
        "alone msg/s",
        "share",
        "p50 ms",
        "p99 ms",
        "cores",
        "fed. msg/s",
        "share",
        "p50 ms",
        "p99 ms",
        "cores",
        "ratio"
    );
    let mut best = [0.0f64; 2];
    let mut p99_at_best = [0.0f64; 2];
    for &rate in RATES {
        let mut steps = Vec::new();
        for (index, setup) in [&alone, &federated].into_iter().enumerate() {
            let step = step(setup, rate).await?;
            if step.share >= KEEPS_UP && step.delivered_per_second > best[index] {
                best[index] = step.delivered_per_second;
                p99_at_best[index] = step.p99_ms;
            }
            steps.push(step);
        }
        let (a, f) = (steps[0], steps[1]);
        println!(
            "{rate:>10.0} | {:>12.0} {:>6.2} {:>8.2} {:>8.2} {:>6.2} | {:>12.0} {:>6.2} {:>8.2} {:>8.2} {:>6.2} | {:>6.2}",
            a.delivered_per_second,
            a.share,
            a.p50_ms,
            a.p99_ms,
            a.server_cores,
            f.delivered_per_second,
            f.share,
            f.p50_ms,
            f.p99_ms,
            f.server_cores,
            f.delivered_per_second / a.delivered_per_second
        );
    }
    println!(
        "highest rate kept up with (>= {:.0}% delivered): alone {:.0} msg/s (p99 {:.2} ms), federated {:.0} msg/s \
         (p99 {:.2} ms); ratio federated/alone {:.2}",
        KEEPS_UP * 100.0,
        best[0],
        p99_at_best[0],
        best[1],
        p99_at_best[1],
        best[1] / best[0].max(1.0)
    );
    println!(
        "  ({} cores; every process shares them: the load generator, the servers and NATS)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    Ok(())
}

/// Offers `rate` to one setup, then measures what arrives and how late.
async fn step(setup: &Setup, rate: f64) -> Result<Step> {
    let fleet = &setup.fleet;
    fleet.set_rate(rate);
    tokio::time::sleep(SETTLE).await;
    let counters = fleet.counters();
    let (sent, delivered) =
        (counters.sent.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
    let cpu = cpu_of(&setup.pids)?;
    let began = Instant::now();
    fleet.start_recording();
    tokio::time::sleep(MEASURE).await;
    let latencies = fleet.stop_recording();
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_of(&setup.pids)? - cpu;
    let sent = counters.sent.load(Ordering::Relaxed) - sent;
    let delivered = counters.delivered.load(Ordering::Relaxed) - delivered;
    fleet.pause();
    fleet.wait_quiet(Duration::from_secs(5)).await;
    let percentile = |share: f64| {
        let at = ((latencies.len() as f64 * share) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(at).map_or(f64::NAN, |micros| f64::from(*micros) / 1_000.0)
    };
    Ok(Step {
        delivered_per_second: delivered as f64 / elapsed,
        share: delivered as f64 / sent.max(1) as f64,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
        server_cores: cpu.as_secs_f64() / elapsed,
    })
}

fn cpu_of(pids: &[u32]) -> Result<Duration> {
    pids.iter().map(|pid| proc_stats::cpu_time(*pid)).sum()
}
