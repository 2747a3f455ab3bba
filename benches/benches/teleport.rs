//! Teleport throughput over TCP loopback, printed as figures and ratios against raw TCP measured
//! in the same run, and against the DXOS JS Teleport (`tests/teleport-interop`, needs
//! `cargo xtask test` to have installed its npm packages once); and over `tcp+noise` against
//! plain TCP.
//!
//! `cargo bench -p mesh-benches --bench teleport [-- tcp|noise ...]` (release; both without
//! arguments). Figures:
//! - tcp: raw TCP: one socket, 64 KiB writes;
//! - tcp: mesh Teleport: one stream channel over one socket, 64 KiB writes;
//! - tcp: DXOS JS Teleport: two JS Teleports in one Node process over loopback, and JS sending
//!   to us;
//! - tcp: fairness: eight streams writing at once, each one's share while all eight were busy;
//! - noise: Teleport (one stream channel, 64 KiB writes) over the streams of two connected
//!   transports, the plain TCP transport's and the `tcp+noise` transport's, and the ratio
//!   noise / plain; and the time from opening two transports to both streams being up, which
//!   for noise includes the handshake.
//!
//! Runs that are compared alternate and are compared best to best and median to median, so load
//! from other processes on the machine skews both alike.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Stream, Teleport};
use mesh_transport::noise::NoiseTcpTransportFactory;
use mesh_transport::tcp::TcpTransportFactory;
use mesh_transport::{ByteStream, SignalSink, TransportFactory, TransportOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WRITE: usize = 64 << 10;
const TOTAL: usize = 512 << 20;
const JS_TOTAL: usize = 64 << 20;
const ROUNDS: usize = 5;
/// Connections set up per transport for the setup times.
const SETUPS: usize = 50;

/// Opens `count` streams named `s0`, `s1`, … and hands them over.
struct Streams {
    count: usize,
    opened: mpsc::Sender<Vec<Stream>>,
}

#[async_trait]
impl Extension for Streams {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let streams = (0..self.count)
            .map(|i| ctx.create_stream(&format!("s{i}"), Some("application/octet-stream")))
            .collect::<Result<Vec<_>, _>>()?;
        let _ = self.opened.send(streams).await;
        Ok(())
    }
}

async fn tcp_pair() -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

async fn write_all<W: AsyncWriteExt + Unpin>(mut writer: W, total: usize) -> Result<W> {
    let chunk = vec![0x5au8; WRITE];
    let mut left = total;
    while left > 0 {
        let n = left.min(WRITE);
        writer.write_all(&chunk[..n]).await?;
        left -= n;
    }
    writer.flush().await?;
    Ok(writer)
}

async fn read_exactly<R: AsyncReadExt + Unpin>(
    mut reader: R,
    total: usize,
    counter: Option<Arc<AtomicU64>>,
) -> Result<R> {
    let mut buf = vec![0u8; WRITE];
    let mut left = total;
    while left > 0 {
        let n = reader.read(&mut buf[..left.min(WRITE)]).await?;
        if n == 0 {
            bail!("stream ended {left} bytes early");
        }
        left -= n;
        if let Some(counter) = &counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    Ok(reader)
}

fn mbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

async fn raw_tcp() -> Result<f64> {
    let (client, server) = tcp_pair().await?;
    let start = Instant::now();
    let writer = tokio::spawn(write_all(client, TOTAL));
    read_exactly(server, TOTAL, None).await?;
    writer.await??;
    Ok(mbps(TOTAL, start.elapsed()))
}

async fn teleport_pair(streams: usize) -> Result<(Teleport, Teleport, Vec<Stream>, Vec<Stream>)> {
    let (client, server) = tcp_pair().await?;
    teleport_pair_over(client, server, streams).await
}

/// Two Teleports over the ends of one connection, with `streams` stream channels open.
async fn teleport_pair_over<IO>(
    client: IO,
    server: IO,
    streams: usize,
) -> Result<(Teleport, Teleport, Vec<Stream>, Vec<Stream>)>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ka, kb) = (PublicKey::random(), PublicKey::random());
    let a = Teleport::new(client, Params::new(true, ka, kb));
    let b = Teleport::new(server, Params::new(false, kb, ka));
    let (tx_a, mut rx_a) = mpsc::channel(1);
    let (tx_b, mut rx_b) = mpsc::channel(1);
    a.add_extension("bench", Streams { count: streams, opened: tx_a })?;
    b.add_extension("bench", Streams { count: streams, opened: tx_b })?;
    let sa = rx_a.recv().await.context("a's extension")?;
    let sb = rx_b.recv().await.context("b's extension")?;
    Ok((a, b, sa, sb))
}

async fn mesh_teleport() -> Result<f64> {
    one_stream(teleport_pair(1).await?).await
}

/// Sends [`TOTAL`] bytes through the first stream channel of a pair and destroys the pair.
async fn one_stream((a, b, mut sa, mut sb): (Teleport, Teleport, Vec<Stream>, Vec<Stream>)) -> Result<f64> {
    let (tx, rx) = (sa.remove(0), sb.remove(0));
    let start = Instant::now();
    let writer = tokio::spawn(write_all(tx, TOTAL));
    read_exactly(rx, TOTAL, None).await?;
    let elapsed = start.elapsed();
    writer.await??;
    a.destroy();
    b.destroy();
    Ok(mbps(TOTAL, elapsed))
}

/// Eight streams at once; returns the aggregate MB/s and each stream's share of the bytes received
/// until the first stream finished (all eight were busy until then).
async fn fairness() -> Result<(f64, Vec<f64>)> {
    const N: usize = 8;
    let per_stream = TOTAL / N;
    let (a, b, sa, sb) = teleport_pair(N).await?;
    let counters: Vec<Arc<AtomicU64>> = (0..N).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let first_done = Arc::new(AtomicBool::new(false));
    let (snap_tx, mut snap_rx) = mpsc::channel::<Vec<u64>>(1);
    let start = Instant::now();
    let writers: Vec<_> = sa.into_iter().map(|s| tokio::spawn(write_all(s, per_stream))).collect();
    let readers: Vec<_> = sb
        .into_iter()
        .zip(&counters)
        .map(|(s, counter)| {
            let counter = counter.clone();
            let counters = counters.clone();
            let first_done = first_done.clone();
            let snap_tx = snap_tx.clone();
            tokio::spawn(async move {
                let s = read_exactly(s, per_stream, Some(counter)).await?;
                if !first_done.swap(true, Ordering::SeqCst) {
                    let snapshot = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                    let _ = snap_tx.send(snapshot).await;
                }
                anyhow::Ok(s)
            })
        })
        .collect();
    for reader in readers {
        reader.await??;
    }
    let elapsed = start.elapsed();
    for writer in writers {
        writer.await??;
    }
    let snapshot = snap_rx.recv().await.context("snapshot")?;
    let sum: u64 = snapshot.iter().sum();
    let shares = snapshot.iter().map(|&c| c as f64 / sum as f64 * N as f64).collect();
    a.destroy();
    b.destroy();
    Ok((mbps(TOTAL, elapsed), shares))
}

fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/teleport-interop");
    dir.join("node_modules/@dxos/teleport").exists().then_some(dir)
}

/// Two DXOS Teleports in one Node process over loopback.
async fn js_pair(dir: &PathBuf) -> Result<f64> {
    let output = tokio::process::Command::new("node")
        .current_dir(dir)
        .args(["interop.mjs", "--mode", "bench-js-pair", "--bytes", &JS_TOTAL.to_string()])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.contains("js-pair")).context("no figure from node")?;
    let mbps = line.split("\"mbps\":").nth(1).and_then(|v| v.trim_end_matches('}').parse().ok());
    mbps.context("unreadable figure from node")
}

/// DXOS's Teleport sending to ours over loopback.
async fn js_to_mesh(dir: &PathBuf) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let local = PublicKey::random();
    let mut node = tokio::process::Command::new("node")
        .current_dir(dir)
        .args(["interop.mjs", "--mode", "bench-send", "--port", &port.to_string(), "--peer", &local.to_hex()])
        .args(["--bytes", &JS_TOTAL.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(node.stdout.take().context("stdout")?).lines();
    let (socket, _) = listener.accept().await?;
    socket.set_nodelay(true)?;
    let teleport = Teleport::new(socket, Params::new(true, local, PublicKey::random()));
    let (tx, mut rx) = mpsc::channel(1);
    teleport.add_extension("mesh.interop", JsBench { opened: tx })?;
    // The RPC peer stays alive (held here) until the figure is taken.
    let (stream, _rpc) = rx.recv().await.context("extension")?;
    // Wait for the first byte, then time the rest.
    let mut stream = stream;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    let start = Instant::now();
    read_exactly(stream, JS_TOTAL - 1, None).await?;
    let elapsed = start.elapsed();
    while let Some(line) = lines.next_line().await? {
        if line.contains("\"sent\"") {
            break;
        }
    }
    teleport.destroy();
    let _ = node.kill().await;
    Ok(mbps(JS_TOTAL - 1, elapsed))
}

/// The Rust half of `interop.mjs`'s extension: its RPC port is opened (DXOS waits for the RPC
/// handshake) and its `bulk` stream handed over.
struct JsBench {
    opened: mpsc::Sender<(Stream, mesh_teleport::rpc::RpcPeer)>,
}

#[async_trait]
impl Extension for JsBench {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("rpc", Some(mesh_teleport::muxer::RPC_CONTENT_TYPE))?;
        let rpc = mesh_teleport::rpc::RpcPeer::new(port, mesh_teleport::rpc::NoHandler, Default::default());
        let bulk = ctx.create_stream("bulk", Some("application/octet-stream"))?;
        rpc.open().await?;
        let _ = self.opened.send((bulk, rpc)).await;
        Ok(())
    }
}

/// Prints the rounds of a baseline and a figure measured alternately with it, the best and median
/// of each, and the figure's ratios to the baseline against `target`; returns the figure's best.
fn compare((base_name, base): (&str, &[f64]), (name, figures): (&str, &[f64]), target: f64) -> f64 {
    let rounds = |figures: &[f64]| figures.iter().map(|f| format!("{f:.0}")).collect::<Vec<_>>().join(" ");
    println!("rounds ({base_name} | {name}, MB/s): {} | {}", rounds(base), rounds(figures));
    let (base_best, base_median, figure_best, figure_median) =
        (best(base), median(base), best(figures), median(figures));
    println!("{:26} {base_best:8.0} MB/s (median {base_median:.0})", format!("{base_name}:"));
    println!(
        "{:26} {figure_best:8.0} MB/s (median {figure_median:.0})   = {:.2} x {base_name} best to best, {:.2} median to median (target >= {target:.2})",
        format!("{name}:"),
        figure_best / base_best,
        figure_median / base_median
    );
    figure_best
}

fn best(figures: &[f64]) -> f64 {
    figures.iter().copied().fold(0.0, f64::max)
}

fn median(figures: &[f64]) -> f64 {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Makes the transports of one peer.
type Factory = fn(&Keypair) -> Box<dyn TransportFactory>;

fn plain_tcp(_: &Keypair) -> Box<dyn TransportFactory> {
    Box::new(TcpTransportFactory::default())
}

fn noise_tcp(identity: &Keypair) -> Box<dyn TransportFactory> {
    Box::new(NoiseTcpTransportFactory::new(identity.clone()))
}

/// Opens two transports of two fresh peers on loopback, passes the initiator's port signal to
/// the other side and waits for both streams (as the swarm would, without signaling's hops).
async fn transport_pair(factory: Factory) -> Result<(ByteStream, ByteStream)> {
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let (topic, session) = (DiscoveryKey::from_party(&alice.public()), PublicKey::random());
    let (a_sink, mut a_signals) = SignalSink::channel();
    let (b_sink, _b_signals) = SignalSink::channel();
    let side = |identity: &Keypair, remote: &Keypair, initiator, signals| {
        let (own, remote) = (identity.public(), remote.public());
        factory(identity).create(TransportOptions {
            own,
            remote,
            topic,
            initiator,
            session,
            signals,
            link: None,
        })
    };
    let a = side(&alice, &bob, true, a_sink);
    let b = side(&bob, &alice, false, b_sink);
    a.open().await?;
    b.open().await?;
    b.signal(a_signals.recv().await.context("the initiator's port signal")?).await?;
    Ok(tokio::try_join!(a.connected(), b.connected())?)
}

/// Plain TCP transport and `tcp+noise`: Teleport throughput, alternating, and setup times.
async fn noise() -> Result<()> {
    println!(
        "teleport over the tcp and tcp+noise transports on loopback, {} MiB per run, 64 KiB writes, {ROUNDS} rounds",
        TOTAL >> 20
    );
    let (mut plain, mut noise) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (factory, figures) in [(plain_tcp as Factory, &mut plain), (noise_tcp, &mut noise)] {
            let (x, y) = transport_pair(factory).await?;
            figures.push(one_stream(teleport_pair_over(x, y, 1).await?).await?);
        }
    }
    compare(("teleport over tcp", &plain), ("teleport over tcp+noise", &noise), 0.8);

    for (name, factory) in [("tcp", plain_tcp as Factory), ("tcp+noise", noise_tcp)] {
        let mut times = Vec::with_capacity(SETUPS);
        for _ in 0..SETUPS {
            let start = Instant::now();
            let streams = transport_pair(factory).await?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            drop(streams);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "setup, open to both streams up, {name:9}: p50 {:.2} ms, max {:.2} ms ({SETUPS} connections)",
            times[SETUPS / 2],
            times[SETUPS - 1]
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|arg| arg == name);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        if wants("tcp") {
            tcp().await?;
        }
        if wants("noise") {
            noise().await?;
        }
        anyhow::Ok(())
    })
}

/// Raw TCP, mesh Teleport over it, eight streams' fairness, and DXOS's JS Teleport.
async fn tcp() -> Result<()> {
    println!(
        "teleport throughput over TCP loopback, {} MiB per run, 64 KiB writes, {ROUNDS} rounds",
        TOTAL >> 20
    );
    let mut raw = Vec::new();
    let mut mesh = Vec::new();
    for _ in 0..ROUNDS {
        raw.push(raw_tcp().await?);
        mesh.push(mesh_teleport().await?);
    }
    let mesh = compare(("raw TCP", &raw), ("mesh Teleport (1 stream)", &mesh), 0.7);

    let (aggregate, shares) = fairness().await?;
    println!("mesh Teleport (8 streams): {aggregate:8.0} MB/s   = {:.2} x one stream", aggregate / mesh);
    let shares_text: Vec<String> = shares.iter().map(|s| format!("{s:.3}")).collect();
    let worst = shares.iter().map(|s| (s - 1.0).abs()).fold(0.0, f64::max);
    println!(
        "fairness: each stream's share / equal share while all 8 were busy: [{}]; worst deviation {:.1}% (target <= 20%)",
        shares_text.join(", "),
        worst * 100.0
    );

    match interop_dir() {
        Some(dir) => {
            let js = js_pair(&dir).await?;
            let js_mesh = js_to_mesh(&dir).await?;
            println!(
                "DXOS JS Teleport (JS<->JS, {} MiB): {js:8.0} MB/s   mesh = {:.1} x JS (target >= 10)",
                JS_TOTAL >> 20,
                mesh / js
            );
            println!("DXOS JS Teleport -> mesh ({} MiB):  {js_mesh:8.0} MB/s", JS_TOTAL >> 20);
        }
        None => println!(
            "DXOS JS Teleport: skipped (run `cargo xtask test` once to install tests/teleport-interop)"
        ),
    }
    Ok(())
}
