//! Signal server throughput, latency and memory, against a bare tokio-tungstenite relay measured
//! in the same run (issue 3).
//!
//! `cargo bench -p mesh-benches --bench signal` (or `cargo xtask bench signal`); append
//! `-- throughput` or `-- memory` to run one part. Each server runs in a child process (this
//! binary with `--serve mesh|bare`); the load generator runs here.
//! - saturation: 1,000 clients in topics of 10 send directed messages open-loop; the offered rate
//!   rises in steps until delivery falls behind, and the best sustained rate (messages delivered
//!   per second, capped at those sent in the same window) is reported. Both servers run side by
//!   side and take turns at each step, so background load on a shared machine hits both alike,
//!   and each ramps again from its best once the ramp ends; a step during which other work took
//!   more than 0.3 cores is repeated (a few times at most), and every step prints those cores;
//! - latency: the same clients at half of that rate, p50 and p99 from send to delivery (the
//!   median of five rounds, the servers again taking turns), the same at a light 20,000 msgs/s,
//!   where the machine has CPU to spare, and single rounds at 40,000, 60,000 and 80,000 msgs/s
//!   for the highest rate that keeps p99 under 10 ms;
//! - memory: 10,000 clients, each joined to a topic with its inbox open (bare: registered), sit
//!   idle; the server's RSS growth is divided by the connection count.

use std::time::{Duration, Instant};

use anyhow::Result;
use mesh_benches::{
    proc_stats,
    server_process::{self, ServerProcess},
    signal_load::{Fleet, Layout, Mode},
    signal_wire::Wire,
};

const LOAD: Layout = Layout { clients: 1_000, group: 10 };
const IDLE: Layout = Layout { clients: 10_000, group: 10 };

/// The first offered rate of the ramp, and the factor between steps.
const FIRST_RATE: f64 = 25_000.0;
const RATE_STEP: f64 = 1.3;
/// After the ramp, each server ramps again from its best rate for up to this many steps (until it
/// falls behind twice).
const CONFIRM_STEPS: usize = 4;
/// A step during which other work kept more than this many cores busy is repeated, at most
/// [`REPEATS`] times per server.
const BUSY_ELSEWHERE: f64 = 0.3;
const REPEATS: usize = 4;
/// A ramp never goes past this, whatever the servers manage.
const MAX_RATE: f64 = 2_000_000.0;
/// A step counts as saturated when less than this share of the offered rate is delivered; the
/// ramp stops after two saturated steps.
const KEEPS_UP: f64 = 0.9;
/// Time at each step before measuring, and measuring.
const SETTLE: Duration = Duration::from_millis(700);
const MEASURE: Duration = Duration::from_millis(1_500);
/// Latency at half load: rounds taken in turn by the two servers (the median round is reported,
/// so a burst of other work on a shared machine spoils one round, not the figure), each settling
/// and then recording.
const LATENCY_ROUNDS: usize = 5;
const LATENCY_SETTLE: Duration = Duration::from_millis(500);
const LATENCY_RUN: Duration = Duration::from_millis(1_500);
/// A light load, where neither the server nor the load generator is short of CPU, and its rounds:
/// latency there is the servers' own rather than queueing for the machine.
const LIGHT_RATE: f64 = 20_000.0;
const LIGHT_ROUNDS: usize = 3;
/// Further rates tried once each, to find the highest at which p99 stays under [`P99_TARGET_MS`].
const SWEEP_RATES: [f64; 3] = [40_000.0, 60_000.0, 80_000.0];
const P99_TARGET_MS: f64 = 10.0;
/// Longest wait for in-flight messages to drain after pausing.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest wait for the idle fleet's swarm events to arrive, before reading RSS.
const IDLE_SETTLE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    if server_process::serve_if_asked()? {
        return Ok(());
    }
    let open_files = proc_stats::raise_open_file_limit()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(open_files))
}

async fn run(open_files: u64) -> Result<()> {
    let started = Instant::now();
    // `cargo bench ... -- memory` (or `throughput`) runs one part only.
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let wants = |part: &str| args.is_empty() || args.iter().any(|arg| arg == part);
    println!(
        "signal bench: {} clients in topics of {}, open-loop directed messages; {} idle clients for memory",
        LOAD.clients, LOAD.group, IDLE.clients
    );
    println!("mesh server limits: {}", server_process::Profile::Load.describe());
    println!(
        "bare relay: tokio-tungstenite, register + forward, no replies, 4 KiB read buffer, queue 256; \
         open-file limit {open_files}; {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let throughput = if wants("throughput") { Some(throughput().await?) } else { None };
    let memory = if wants("memory") {
        Some((idle_memory(Wire::Mesh).await?, idle_memory(Wire::Bare).await?))
    } else {
        None
    };
    print_table(throughput.as_ref(), memory);
    println!("\n(whole run: {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// What the throughput and latency runs measured for one server.
#[derive(Debug, Default)]
struct Figures {
    /// Best delivered rate over the ramp, msgs/s.
    saturation: f64,
    /// Server CPU time per delivered message at that step, µs.
    server_cpu_us: f64,
    /// The half-load rate and its latencies.
    half_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Latencies at [`LIGHT_RATE`].
    light_p50_ms: f64,
    light_p99_ms: f64,
    /// The highest of [`LIGHT_RATE`] and [`SWEEP_RATES`] whose p99 was under [`P99_TARGET_MS`].
    fast_rate: f64,
    /// Error responses over the whole run (such as rate limiting): should be 0.
    refused: u64,
}

fn name(wire: Wire) -> &'static str {
    match wire {
        Wire::Mesh => "mesh",
        Wire::Bare => "bare",
    }
}

/// Figures at one step of the ramp.
struct Step {
    delivered: f64,
    sent: f64,
    server_cores: f64,
    bench_cores: f64,
    /// Cores busy with everything else on the machine.
    other_cores: f64,
}

async fn measure_step(fleet: &Fleet, server: &ServerProcess) -> Result<Step> {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = fleet.counters();
    let me = std::process::id();
    let (delivered, sent) = (counters.delivered.load(Relaxed), counters.sent.load(Relaxed));
    let server_cpu = proc_stats::cpu_time(server.pid())?;
    let (bench_cpu, machine_cpu) = (proc_stats::cpu_time(me)?, proc_stats::machine_busy()?);
    let began = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let seconds = began.elapsed().as_secs_f64();
    let cores = |before: Duration, after: Duration| after.saturating_sub(before).as_secs_f64() / seconds;
    let server_cores = cores(server_cpu, proc_stats::cpu_time(server.pid())?);
    let bench_cores = cores(bench_cpu, proc_stats::cpu_time(me)?);
    let machine_cores = cores(machine_cpu, proc_stats::machine_busy()?);
    Ok(Step {
        delivered: (counters.delivered.load(Relaxed) - delivered) as f64 / seconds,
        sent: (counters.sent.load(Relaxed) - sent) as f64 / seconds,
        server_cores,
        bench_cores,
        other_cores: (machine_cores - server_cores - bench_cores).max(0.0),
    })
}

/// One server under load: its process, its clients, and what was measured so far.
struct Subject {
    wire: Wire,
    server: ServerProcess,
    fleet: Fleet,
    figures: Figures,
    /// Consecutive ramp steps at which it fell behind.
    behind: u32,
    /// p50 and p99 latency of each half-load round, ms.
    rounds: Vec<(f64, f64)>,
    /// The same at [`LIGHT_RATE`].
    light_rounds: Vec<(f64, f64)>,
    /// Rate and p99 latency of each sweep round.
    sweep: Vec<(f64, f64)>,
    /// Steps that may still be repeated because other work disturbed them.
    repeats_left: usize,
}

impl Subject {
    async fn start(wire: Wire) -> Result<Self> {
        let server = ServerProcess::spawn(wire)?;
        let fleet = Fleet::connect(wire, server.addr(), server.url(), LOAD, Mode::Senders).await?;
        Ok(Self {
            wire,
            server,
            fleet,
            figures: Figures::default(),
            behind: 0,
            rounds: Vec::new(),
            light_rounds: Vec::new(),
            sweep: Vec::new(),
            repeats_left: REPEATS,
        })
    }

    fn ramping(&self) -> bool {
        self.behind < 2
    }

    /// Offers `rate` for one step, then pauses and lets in-flight messages drain.
    async fn step(&mut self, rate: f64) -> Result<()> {
        let step = loop {
            self.fleet.set_rate(rate);
            tokio::time::sleep(SETTLE).await;
            let step = measure_step(&self.fleet, &self.server).await?;
            self.fleet.pause();
            let repeat = step.other_cores > BUSY_ELSEWHERE && self.repeats_left > 0;
            println!(
                "  {}  offered {rate:>7.0}/s  sent {:>7.0}/s  delivered {:>7.0}/s  cores busy: server {:.2}, \
                 load generator {:.2}, other work {:.2}{}",
                name(self.wire),
                step.sent,
                step.delivered,
                step.server_cores,
                step.bench_cores,
                step.other_cores,
                if repeat { "  (repeated)" } else { "" }
            );
            if !repeat {
                break step;
            }
            self.repeats_left -= 1;
            self.fleet.wait_quiet(DRAIN).await;
        };
        // Deliveries beyond what was sent in the window are a backlog from before it draining,
        // so the sustained rate is the smaller of the two.
        let sustained = step.delivered.min(step.sent);
        if sustained > self.figures.saturation {
            self.figures.saturation = sustained;
            self.figures.server_cpu_us = step.server_cores * 1e6 / step.delivered.max(1.0);
        }
        self.behind = if sustained < KEEPS_UP * rate { self.behind + 1 } else { 0 };
        self.fleet.wait_quiet(DRAIN).await;
        Ok(())
    }

    /// Offers `rate` for one round and returns the p50 and p99 latency, ms.
    async fn latency_round(&mut self, rate: f64, label: &str) -> (f64, f64) {
        self.fleet.set_rate(rate);
        tokio::time::sleep(LATENCY_SETTLE).await;
        self.fleet.start_recording();
        tokio::time::sleep(LATENCY_RUN).await;
        let latencies = self.fleet.stop_recording();
        self.fleet.pause();
        let percentile = |p: f64| -> f64 {
            let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(index).map_or(f64::NAN, |&micros| f64::from(micros) / 1_000.0)
        };
        let (p50, p99) = (percentile(0.50), percentile(0.99));
        println!(
            "  {}  {label} {rate:.0}/s: {} messages, p50 {p50:.2} ms, p99 {p99:.2} ms",
            name(self.wire),
            latencies.len(),
        );
        self.fleet.wait_quiet(DRAIN).await;
        (p50, p99)
    }

    /// The figures, with the median latencies over the rounds.
    fn finish(mut self) -> Figures {
        let figures = &mut self.figures;
        figures.half_rate = figures.saturation / 2.0;
        (figures.p50_ms, figures.p99_ms) = medians(&self.rounds);
        (figures.light_p50_ms, figures.light_p99_ms) = medians(&self.light_rounds);
        figures.fast_rate = std::iter::once((LIGHT_RATE, figures.light_p99_ms))
            .chain(self.sweep.iter().copied())
            .filter(|&(_, p99)| p99 < P99_TARGET_MS)
            .map(|(rate, _)| rate)
            .fold(0.0, f64::max);
        figures.refused = self.fleet.counters().refused.load(std::sync::atomic::Ordering::Relaxed);
        self.figures
    }
}

/// The median p50 and the median p99 of some rounds.
fn medians(rounds: &[(f64, f64)]) -> (f64, f64) {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    (
        median(rounds.iter().map(|round| round.0).collect()),
        median(rounds.iter().map(|round| round.1).collect()),
    )
}

/// Ramps both servers step by step, alternating between them at each step so that both see the
/// same background load on a shared machine, then measures each at half its saturation rate.
async fn throughput() -> Result<(Figures, Figures)> {
    let mut mesh = Subject::start(Wire::Mesh).await?;
    let mut bare = Subject::start(Wire::Bare).await?;
    println!(
        "\n{} clients per server connected, joined and listening; ramping the offered rate",
        LOAD.clients
    );
    let mut rate = FIRST_RATE;
    while (mesh.ramping() || bare.ramping()) && rate <= MAX_RATE {
        for subject in [&mut mesh, &mut bare] {
            if subject.ramping() {
                subject.step(rate).await?;
            }
        }
        rate *= RATE_STEP;
    }
    // Other work only ever lowers a step's figure: give each server more steps, in turns, from
    // its best so far.
    println!("  ramping again from each server's best so far:");
    mesh.behind = 0;
    bare.behind = 0;
    for _ in 0..CONFIRM_STEPS {
        for subject in [&mut mesh, &mut bare] {
            if subject.ramping() {
                let rate = subject.figures.saturation * RATE_STEP;
                subject.step(rate).await?;
            }
        }
    }
    for round in 1..=LATENCY_ROUNDS {
        for subject in [&mut mesh, &mut bare] {
            let half = subject.figures.saturation / 2.0;
            let latencies = subject.latency_round(half, &format!("half load, round {round},")).await;
            subject.rounds.push(latencies);
        }
    }
    for round in 1..=LIGHT_ROUNDS {
        for subject in [&mut mesh, &mut bare] {
            let latencies = subject.latency_round(LIGHT_RATE, &format!("light load, round {round},")).await;
            subject.light_rounds.push(latencies);
        }
    }
    for rate in SWEEP_RATES {
        for subject in [&mut mesh, &mut bare] {
            let (_, p99) = subject.latency_round(rate, "sweep,").await;
            subject.sweep.push((rate, p99));
        }
    }
    Ok((mesh.finish(), bare.finish()))
}

/// Server RSS growth per idle connection, in KiB.
async fn idle_memory(wire: Wire) -> Result<f64> {
    let server = ServerProcess::spawn(wire)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proc_stats::rss_kib(server.pid())?;
    let fleet = Fleet::connect(wire, server.addr(), server.url(), IDLE, Mode::Idle).await?;
    fleet.wait_settled(IDLE_SETTLE).await?;
    let after = proc_stats::rss_kib(server.pid())?;
    let per_connection = after.saturating_sub(before) as f64 / IDLE.clients as f64;
    println!(
        "\n{}: {} idle connections: server RSS {before} KiB -> {after} KiB, {per_connection:.1} KiB each",
        name(wire),
        IDLE.clients
    );
    drop(fleet);
    Ok(per_connection)
}

fn print_table(throughput: Option<&(Figures, Figures)>, memory: Option<(f64, f64)>) {
    let verdict = |met: bool| if met { "yes" } else { "NO" };
    println!(
        "\n{:<40} {:>10} {:>11} {:>10}   {:<26} met",
        "figure", "mesh", "bare relay", "mesh/bare", "target"
    );
    let row = |figure: &str, mesh: f64, bare: f64, decimals: usize, target: &str, met: &str| {
        println!(
            "{figure:<40} {mesh:>10.decimals$} {bare:>11.decimals$} {:>10.2}   {target:<26} {met}",
            mesh / bare
        );
    };
    if let Some((mesh, bare)) = throughput {
        let ratio = mesh.saturation / bare.saturation;
        let met = format!("{} / {}", verdict(mesh.saturation >= 100_000.0), verdict(ratio >= 0.7));
        row(
            "relayed msgs/s at saturation",
            mesh.saturation,
            bare.saturation,
            0,
            ">= 100000; >= 0.7 x bare",
            &met,
        );
        row("half-load rate, msgs/s", mesh.half_rate, bare.half_rate, 0, "", "");
        row("latency p50 at half load, ms", mesh.p50_ms, bare.p50_ms, 2, "", "");
        row(
            "latency p99 at half load, ms",
            mesh.p99_ms,
            bare.p99_ms,
            2,
            "< 10 ms",
            verdict(mesh.p99_ms < 10.0),
        );
        let light = |percentile: &str| format!("latency {percentile} at {LIGHT_RATE:.0} msgs/s, ms");
        row(&light("p50"), mesh.light_p50_ms, bare.light_p50_ms, 2, "", "");
        row(&light("p99"), mesh.light_p99_ms, bare.light_p99_ms, 2, "", "");
        row("highest swept rate with p99 < 10 ms", mesh.fast_rate, bare.fast_rate, 0, "", "");
        row("server CPU per relayed msg at peak, us", mesh.server_cpu_us, bare.server_cpu_us, 1, "", "");
        println!("{:<40} {:>10} {:>11}", "error responses (e.g. rate limited)", mesh.refused, bare.refused);
    }
    if let Some((mesh, bare)) = memory {
        row("server RSS per idle connection, KiB", mesh, bare, 1, "<= 16 KiB", verdict(mesh <= 16.0));
    }
}
