//! Swarm formation time: from the moment N peers start joining one topic to the moment every peer
//! has heard a hello from every other over Teleport, for mesh peers in this process and for DXOS
//! 0.8.3 JS peers in one Node process (`tests/swarm-interop/bench-swarm.mjs`, needs
//! `cargo xtask test` to have installed its npm packages once), both through mesh's signal server
//! running in this process and the TCP transport over loopback.
//!
//! `cargo bench -p mesh-benches --bench swarm [-- --rounds K]` (release). Each round uses a fresh
//! topic and fresh peers; the peers' signal connections are up and settled for 500 ms before the
//! joins start, on both sides, and each Node process first forms a two-peer warm-up swarm so the
//! measured joins run JIT-compiled code. The mesh peers run once on the main multi-threaded runtime (with
//! the server) and once on a current-thread runtime of their own, the closer match to Node's one
//! event loop. Figures are the median and the minimum over the rounds, the Node process's CPU
//! time per round, and the signal messages the server relayed per peer until the swarm formed.
//!
//! Links between mesh peers are plain TCP in the main table, like DXOS's; one more set of
//! multi-worker rounds per size uses authenticated links (each end proves its key before
//! Teleport starts, as `mesh peer` does), reported as its own row and as a ratio to plain.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh::TeleportProtocol;
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_signal::Client;
use mesh_signal_server::{Config, RateLimit, Server};
use mesh_swarm::{NetworkManager, SwarmConfig, SwarmHandle, topology::FullyConnected};
use mesh_teleport::hello::{self, Hello};
use mesh_transport::tcp::TcpTransportFactory;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// Swarm sizes measured.
const SIZES: [usize; 3] = [2, 8, 32];
/// Rounds per size unless `--rounds` says otherwise.
const ROUNDS: usize = 5;
/// Time the peers' signal connections get to settle before the joins start (both sides).
const SETTLE: Duration = Duration::from_millis(500);
/// A round that has not formed by then fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// One round's figures.
struct Round {
    /// Start of the joins to the last hello.
    elapsed: Duration,
    /// Messages the signal server relayed during the round, per peer.
    relayed_per_peer: f64,
    /// CPU time the peers' process spent over the same interval, when known: the Node process, or
    /// this process (which also runs the signal server) for mesh peers.
    cpu: Option<Duration>,
}

fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&Keypair::generate().public())
}

/// Waits until the server holds at least `count` connections.
async fn wait_connections(server: &Server, count: u64) -> Result<()> {
    tokio::time::timeout(PATIENCE, async {
        while server.stats().connections < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .with_context(|| format!("{count} signal connections never came up"))
}

/// Waits until the server holds at most `count` connections (the previous round's peers gone).
async fn wait_drained(server: &Server, count: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while server.stats().connections > count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// How mesh peers' TCP links are made.
#[derive(Clone, Copy)]
enum Links {
    /// As DXOS's: the first connection is taken.
    Plain,
    /// Each end proves its key first (mesh's link authentication).
    Authenticated,
}

/// N mesh peers, each with its own signal client, join one topic at once.
async fn rust_round(server: &Server, n: usize, links: Links) -> Result<Round> {
    let url = server.url();
    let base = server.stats().connections;
    let mut managers = Vec::with_capacity(n);
    for _ in 0..n {
        let client = Client::connect(url.as_str())?;
        let pair = Keypair::generate();
        let manager = NetworkManager::new(
            pair.public(),
            Arc::new(client),
            Arc::new(match links {
                Links::Plain => TcpTransportFactory::default(),
                Links::Authenticated => TcpTransportFactory::default().with_identity(pair),
            }),
            SwarmConfig::default(),
        )
        .await?;
        managers.push(manager);
    }
    wait_connections(server, base + n as u64).await?;
    tokio::time::sleep(SETTLE).await;

    let topic = topic();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let relayed_before = server.stats().messages_relayed;
    let cpu_before = mesh_benches::proc_stats::cpu_time(std::process::id()).ok();
    let start = Instant::now();
    let joins: Vec<_> = managers
        .iter()
        .map(|manager| {
            let manager = manager.clone();
            let heard = heard_tx.clone();
            tokio::spawn(async move {
                let protocol = TeleportProtocol::new(move |teleport| {
                    let hello = Hello::new(teleport.local_peer(), heard.clone());
                    teleport.add_extension(hello::NAME, hello).expect("a valid extension name");
                });
                manager.join(topic, Box::new(FullyConnected), Arc::new(protocol)).await
            })
        })
        .collect();
    let expected = n * (n - 1);
    let mut seen = HashSet::with_capacity(expected);
    let formed = tokio::time::timeout(PATIENCE, async {
        while seen.len() < expected {
            match heard.recv().await {
                Some(pair) => {
                    seen.insert(pair);
                }
                None => break,
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    let relayed = server.stats().messages_relayed - relayed_before;
    let cpu_after = mesh_benches::proc_stats::cpu_time(std::process::id()).ok();
    if formed.is_err() {
        bail!("{n} mesh peers: only {} of {expected} hellos after {PATIENCE:?}", seen.len());
    }

    let mut swarms: Vec<SwarmHandle> = Vec::with_capacity(n);
    for join in joins {
        swarms.push(join.await??);
    }
    for swarm in swarms {
        let _ = swarm.leave().await;
    }
    drop(managers);
    wait_drained(server, base).await;
    let cpu = cpu_before.zip(cpu_after).map(|(before, after)| after.saturating_sub(before));
    Ok(Round { elapsed, relayed_per_peer: relayed as f64 / n as f64, cpu })
}

/// [`rust_round`] with the peers on a current-thread runtime of their own (the server stays on the
/// main runtime), as the DXOS peers share Node's one event loop. Dropping the runtime afterwards
/// ends whatever the peers left behind.
fn rust_round_one_thread(server: &Server, n: usize) -> Result<Round> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(rust_round(server, n, Links::Plain))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the single-threaded round panicked"))?
    })
}

fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/swarm-interop");
    dir.join("node_modules/@dxos/network-manager").exists().then_some(dir)
}

/// The same with N DXOS peers in one Node process; `Err` carries what went wrong.
async fn js_round(server: &Server, dir: &PathBuf, n: usize) -> Result<Round> {
    let base = server.stats().connections;
    let mut node = tokio::process::Command::new("node")
        .current_dir(dir)
        .args(["bench-swarm.mjs", &server.url(), &topic().to_hex(), &n.to_string()])
        .arg(PATIENCE.as_millis().to_string())
        .env("LOG_FILTER", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut lines = tokio::io::BufReader::new(node.stdout.take().context("stdout")?).lines();
    // The script says `{"event":"start"}` just before its joins (after its warm-up swarm).
    let mut relayed_before = None;
    let line = tokio::time::timeout(PATIENCE * 2, async {
        loop {
            match lines.next_line().await? {
                Some(line) if line.contains("\"start\"") => {
                    relayed_before = Some(server.stats().messages_relayed);
                }
                other => return std::io::Result::Ok(other),
            }
        }
    })
    .await
    .context("no figure from node in time")??;
    // Taken when the figure arrives, before the JS peers tear down.
    let relayed = server.stats().messages_relayed - relayed_before.unwrap_or(0);
    let Some(line) = line else {
        let output = node.wait_with_output().await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!("node exited ({}) without a figure: {}", output.status, tail.join(" | "));
    };
    let field = |name: &str| -> Option<f64> {
        let rest = line.split(&format!("\"{name}\":")).nth(1)?;
        rest.split([',', '}']).next()?.parse().ok()
    };
    if line.contains("\"error\"") {
        bail!("{n} DXOS peers: {line}");
    }
    let ms = field("ms").with_context(|| format!("unreadable figure from node: {line}"))?;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.wait()).await;
    let _ = node.kill().await;
    wait_drained(server, base).await;
    Ok(Round {
        elapsed: Duration::from_secs_f64(ms / 1e3),
        relayed_per_peer: relayed as f64 / n as f64,
        cpu: field("cpu_ms").map(|cpu| Duration::from_secs_f64(cpu / 1e3)),
    })
}

/// Median and minimum in milliseconds, and the median of the relayed messages per peer.
struct Summary {
    median_ms: f64,
    min_ms: f64,
    relayed_per_peer: f64,
}

fn summarize(rounds: &[Round]) -> Summary {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let ms: Vec<f64> = rounds.iter().map(|r| r.elapsed.as_secs_f64() * 1e3).collect();
    Summary {
        median_ms: median(ms.clone()),
        min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        relayed_per_peer: median(rounds.iter().map(|r| r.relayed_per_peer).collect()),
    }
}

fn rounds_text(rounds: &[Round]) -> String {
    let round = |r: &Round| match r.cpu {
        Some(cpu) => format!("{:.0} (cpu {:.0})", r.elapsed.as_secs_f64() * 1e3, cpu.as_secs_f64() * 1e3),
        None => format!("{:.0}", r.elapsed.as_secs_f64() * 1e3),
    };
    rounds.iter().map(round).collect::<Vec<_>>().join(" ")
}

fn parse_rounds() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--rounds") {
        Some(i) => {
            let rounds: usize = args.get(i + 1).context("--rounds needs a number")?.parse()?;
            if rounds == 0 {
                bail!("--rounds must be at least 1");
            }
            Ok(rounds)
        }
        None => Ok(ROUNDS),
    }
}

fn main() -> Result<()> {
    let rounds = parse_rounds()?;
    let open_files = mesh_benches::proc_stats::raise_open_file_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut config = Config::default();
        config.limits.rate_limit = RateLimit { per_second: 1e6, burst: 1_000_000 };
        let server = Server::start(config).await?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "swarm formation over TCP loopback: start of joins -> every peer heard a Teleport hello from every other"
        );
        println!(
            "{rounds} rounds per size (fresh topic and peers each), one in-process mesh signal server for both sides \
             (rate limit raised to 1e6/s for the run), {SETTLE:?} settle after signal connect, tokio {threads} workers, \
             open files {open_files}; one Node process per DXOS round, warmed up by a 2-peer swarm first"
        );
        println!(
            "both sides keep the same fixed delays: the higher key waits 100 ms before initiating \
             (mesh SwarmConfig::initiation_delay, DXOS INITIATION_DELAY)"
        );
        let js_dir = interop_dir();
        if js_dir.is_none() {
            println!("DXOS JS peers: skipped (run `cargo xtask test` once to install tests/swarm-interop)");
        }

        let mut rows = Vec::new();
        for n in SIZES {
            let mut rust = Vec::with_capacity(rounds);
            let mut single = Vec::with_capacity(rounds);
            let mut authenticated = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                rust.push(rust_round(&server, n, Links::Plain).await?);
                // This blocks the thread that drives `block_on`, not a worker: the server keeps running.
                single.push(rust_round_one_thread(&server, n)?);
                authenticated.push(rust_round(&server, n, Links::Authenticated).await?);
            }
            println!("N={n:>2} mesh rounds, {threads} workers (ms, process CPU ms incl. server): {}", rounds_text(&rust));
            println!("N={n:>2} mesh rounds, 1 thread (ms, process CPU ms incl. server):  {}", rounds_text(&single));
            println!(
                "N={n:>2} mesh rounds, {threads} workers, authenticated links (ms, CPU ms): {}",
                rounds_text(&authenticated)
            );
            let js = match &js_dir {
                Some(dir) => {
                    let mut js = Vec::with_capacity(rounds);
                    let mut failure = None;
                    for _ in 0..rounds {
                        match js_round(&server, dir, n).await {
                            Ok(round) => js.push(round),
                            Err(error) => {
                                failure = Some(format!("{error:#}"));
                                break;
                            }
                        }
                    }
                    println!("N={n:>2} DXOS rounds (ms, Node CPU ms): {}", rounds_text(&js));
                    if let Some(failure) = &failure {
                        println!("N={n:>2} DXOS failed after {} good rounds: {failure}", js.len());
                    }
                    (!js.is_empty()).then(|| summarize(&js))
                }
                None => None,
            };
            rows.push((n, summarize(&single), summarize(&rust), summarize(&authenticated), js));
        }

        let stats = server.stats();
        println!();
        println!(
            "{:>3} | {:>18} | {:>18} | {:>18} | {:>13} | {:>13}",
            "N",
            "mesh 1 thread ms",
            format!("mesh {threads} workers ms"),
            "DXOS (Node) ms",
            "DXOS/mesh",
            "signal msgs/peer"
        );
        println!(
            "{:>3} | {:>18} | {:>18} | {:>18} | {:>13} | {:>13}",
            "", "median / min", "median / min", "median / min", "1 thr | multi", "mesh | DXOS"
        );
        let pair = |s: &Summary| format!("{:.0} / {:.0}", s.median_ms, s.min_ms);
        for (n, single, rust, _, js) in &rows {
            let (js_text, ratio, js_relayed) = match js {
                Some(js) => (
                    pair(js),
                    format!("{:.1}x | {:.1}x", js.median_ms / single.median_ms, js.median_ms / rust.median_ms),
                    format!("{:.1}", js.relayed_per_peer),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!(
                "{n:>3} | {:>18} | {:>18} | {:>18} | {:>13} | {:>13}",
                pair(single),
                pair(rust),
                js_text,
                ratio,
                format!("{:.1} | {js_relayed}", rust.relayed_per_peer),
            );
        }
        println!(
            "(ratios are median to median; signal msgs/peer = the server's messages_relayed from the start of the joins \
             to formation / N, median of the multi-worker mesh rounds and of the DXOS rounds)"
        );
        println!();
        println!("authenticated links ({threads} workers), median / min ms, and median against plain links:");
        for (n, _, plain, authenticated, _) in &rows {
            println!(
                "{n:>3} | {:>18} | {:.2}x plain",
                pair(authenticated),
                authenticated.median_ms / plain.median_ms
            );
        }
        println!(
            "server totals: rate_limited {}, messages_dropped {}, frames_rejected {}",
            stats.rate_limited, stats.messages_dropped, stats.frames_rejected
        );
        server.shutdown(Duration::from_secs(2)).await;
        anyhow::Ok(())
    })
}
