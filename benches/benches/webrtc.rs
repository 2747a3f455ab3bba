//! WebRTC: setup time in a swarm, data-channel throughput through the transport against the bare
//! engine in the same run, and what 1,000 open/close cycles leave behind.
//!
//! `cargo bench -p mesh-benches --bench webrtc [-- setup|throughput|cycles ...]` (release; all
//! three without arguments), on loopback:
//! - setup: two mesh peers join a fresh topic through an in-process signal server; from the
//!   first peer hearing that the second is available to both having the connection up (data
//!   channel open, Teleport running), over 50 pairs after 2 warm-ups; p50, p99, max;
//! - throughput: 256 MiB one way over one data channel, through the transport's byte stream (64
//!   KiB writes) and through a bare webrtc peer connection and data channel (64 KiB messages,
//!   the same runtime, socket buffers and 1 MiB send-buffer bound), alternating, 3 rounds each;
//!   best and median, and the ratio transport / bare;
//! - cycles: two transports connect, carry 64 KiB each way and close, 1,000 times; the
//!   process's resident memory, open file descriptors and live tokio tasks, sampled along;
//! - swarm-cycles: the same for two mesh peers, one of which joins the other's swarm and leaves
//!   it again 1,000 times (signalling, swarm, Teleport and transport together).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use mesh::{Node, topology::FullyConnected};
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::Struct;
use mesh_signal::Event as SignalEvent;
use mesh_swarm::Event;
use mesh_transport::{
    SignalSink, Transport, TransportFactory, TransportOptions,
    webrtc::{BufferedRuntime, WebRtcTransportFactory},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use webrtc::{
    data_channel::{DataChannel, DataChannelEvent},
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
        RTCPeerConnectionIceEvent,
    },
};

const PATIENCE: Duration = Duration::from_secs(30);
const PAIRS: usize = 50;
const WARM_UP: usize = 2;
const MESSAGE: usize = 64 << 10;
const TOTAL: usize = 256 << 20;
const ROUNDS: usize = 3;
const CYCLES: usize = 1000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|arg| arg == name);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        if wants("setup") {
            setup().await?;
        }
        if wants("throughput") {
            throughput().await?;
        }
        if wants("cycles") {
            cycles().await?;
        }
        if wants("swarm-cycles") {
            swarm_cycles().await?;
        }
        Ok(())
    })
}

// --- setup

async fn setup() -> Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let mut times = Vec::with_capacity(PAIRS);
    for round in 0..WARM_UP + PAIRS {
        let elapsed = one_setup(&server.url()).await.with_context(|| format!("pair {round}"))?;
        if round >= WARM_UP {
            times.push(elapsed);
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "webrtc setup, peer available -> connection up ({PAIRS} pairs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

async fn node(url: &str) -> Result<Node> {
    Ok(Node::builder()
        .signal([url.to_owned()])
        .transport(Arc::new(WebRtcTransportFactory::loopback()))
        .spawn()
        .await?)
}

async fn connected_to(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    peer: mesh_keys::PublicKey,
) -> Result<Instant> {
    loop {
        if let Event::Connected { peer: remote, .. } = events.recv().await?
            && remote == peer
        {
            return Ok(Instant::now());
        }
    }
}

/// One pair: the time from `a` hearing that `b` is available to both having the connection up.
async fn one_setup(url: &str) -> Result<Duration> {
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (a, b) = (node(url).await?, node(url).await?);
    let mut signals = a.signaling().events();
    let swarm_a = a.join(topic, FullyConnected).await?;
    let mut a_events = swarm_a.events();
    let b_key = b.peer();
    let available = async {
        loop {
            if let SignalEvent::PeerAvailable { peer, .. } = signals.recv().await?
                && peer == b_key
            {
                return anyhow::Ok(Instant::now());
            }
        }
    };
    let (available, swarm_b) =
        tokio::join!(tokio::time::timeout(PATIENCE, available), b.join(topic, FullyConnected));
    let available = available.context("b never became available to a")??;
    let swarm_b = swarm_b?;
    let mut b_events = swarm_b.events();
    let (at_a, at_b) = tokio::time::timeout(
        PATIENCE,
        futures::future::try_join(connected_to(&mut a_events, b_key), connected_to(&mut b_events, a.peer())),
    )
    .await
    .context("the pair never connected")??;
    let elapsed = at_a.max(at_b).saturating_duration_since(available);
    swarm_a.leave().await?;
    swarm_b.leave().await?;
    Ok(elapsed)
}

// --- a pair of transports

/// Both ends of one WebRTC connection attempt, their signals forwarded to each other.
fn transport_pair(factory: &WebRtcTransportFactory) -> (Arc<dyn Transport>, Arc<dyn Transport>) {
    let (alice, bob) = (Keypair::generate().public(), Keypair::generate().public());
    let topic = DiscoveryKey::from_party(&alice);
    let session = Keypair::generate().public();
    let (a_sink, a_signals) = SignalSink::channel();
    let (b_sink, b_signals) = SignalSink::channel();
    let side = |own, remote, initiator, signals| {
        factory.create(TransportOptions { own, remote, topic, initiator, session, signals, link: None })
    };
    let (a, b) = (side(alice, bob, true, a_sink), side(bob, alice, false, b_sink));
    tokio::spawn(forward(a_signals, Arc::downgrade(&b)));
    tokio::spawn(forward(b_signals, Arc::downgrade(&a)));
    (a, b)
}

/// Holds the receiving transport weakly: each transport holds the sink of the other's forwarder,
/// and strong references both ways would keep both pairs alive for ever.
async fn forward(mut signals: mpsc::Receiver<Struct>, to: std::sync::Weak<dyn Transport>) {
    while let Some(signal) = signals.recv().await {
        let Some(to) = to.upgrade() else { return };
        if to.signal(signal).await.is_err() {
            return;
        }
    }
}

async fn connect(
    a: &Arc<dyn Transport>,
    b: &Arc<dyn Transport>,
) -> Result<(mesh_transport::ByteStream, mesh_transport::ByteStream)> {
    a.open().await?;
    b.open().await?;
    let (x, y) = tokio::time::timeout(PATIENCE, async { tokio::join!(a.connected(), b.connected()) })
        .await
        .context("the transports never connected")?;
    Ok((x?, y?))
}

// --- throughput

async fn throughput() -> Result<()> {
    let mut transport = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        bare.push(bare_round().await?);
        transport.push(transport_round().await?);
    }
    let summary = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        (rates[rates.len() - 1], rates[rates.len() / 2])
    };
    let (bare_best, bare_median) = summary(&mut bare);
    let (ours_best, ours_median) = summary(&mut transport);
    println!(
        "webrtc throughput, {} MiB one way, {} KiB messages, {ROUNDS} rounds each:",
        TOTAL >> 20,
        MESSAGE >> 10
    );
    println!("  bare engine      best {bare_best:7.1} MB/s   median {bare_median:7.1} MB/s");
    println!("  mesh transport   best {ours_best:7.1} MB/s   median {ours_median:7.1} MB/s");
    println!(
        "  transport / bare best {:.2}   median {:.2}",
        ours_best / bare_best,
        ours_median / bare_median
    );
    Ok(())
}

fn rate(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

async fn transport_round() -> Result<f64> {
    let (a, b) = transport_pair(&WebRtcTransportFactory::loopback());
    let (mut x, mut y) = connect(&a, &b).await?;
    let chunk = vec![0x5a_u8; MESSAGE];
    let started = Instant::now();
    let send = async {
        for _ in 0..TOTAL / MESSAGE {
            x.write_all(&chunk).await?;
        }
        anyhow::Ok(())
    };
    let receive = async {
        let mut buf = vec![0u8; MESSAGE];
        let mut received = 0;
        while received < TOTAL {
            let n = y.read(&mut buf).await?;
            if n == 0 {
                bail!("the stream ended after {received} bytes");
            }
            received += n;
        }
        anyhow::Ok(())
    };
    tokio::try_join!(send, receive)?;
    let elapsed = started.elapsed();
    a.close().await;
    b.close().await;
    Ok(rate(TOTAL, elapsed))
}

/// Forwards a bare peer connection's local candidates and the channels the remote opens.
struct Forward {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Forward {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.candidates.send(candidate);
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channels.send(channel);
    }
}

/// A bare peer connection, its runtime, its local candidates and the channels the remote opens.
struct BarePeer {
    peer: Arc<dyn PeerConnection>,
    runtime: Arc<BufferedRuntime>,
    candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

async fn bare_peer() -> Result<BarePeer> {
    let (candidates, candidates_out) = mpsc::unbounded_channel();
    let (channels, channels_out) = mpsc::unbounded_channel();
    let runtime = Arc::new(BufferedRuntime::default());
    let peer = PeerConnectionBuilder::new()
        .with_handler(Arc::new(Forward { candidates, channels }))
        .with_setting_engine(
            webrtc::peer_connection::SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_runtime(runtime.clone())
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .with_data_channel_send_buffer_limit(1 << 20)
        .build()
        .await?;
    Ok(BarePeer { peer: Arc::new(peer), runtime, candidates: candidates_out, channels: channels_out })
}

/// 256 MiB over a bare webrtc data channel, 64 KiB messages.
async fn bare_round() -> Result<f64> {
    let BarePeer { peer: offerer, runtime: offerer_runtime, candidates: mut offerer_candidates, .. } =
        bare_peer().await?;
    let BarePeer {
        peer: answerer,
        runtime: answerer_runtime,
        candidates: mut answerer_candidates,
        channels: mut answerer_channels,
    } = bare_peer().await?;
    let sending = offerer.create_data_channel("bench", None).await?;
    let offer = offerer.create_offer(None).await?;
    offerer.set_local_description(offer.clone()).await?;
    answerer.set_remote_description(offer).await?;
    let answer = answerer.create_answer(None).await?;
    answerer.set_local_description(answer.clone()).await?;
    offerer.set_remote_description(answer).await?;
    // Both descriptions are set: candidates go straight in, each waking its driver.
    let trickle = {
        let (offerer, answerer) = (offerer.clone(), answerer.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(candidate) = offerer_candidates.recv() => {
                        let _ = answerer.add_ice_candidate(candidate).await;
                        answerer_runtime.kick();
                    }
                    Some(candidate) = answerer_candidates.recv() => {
                        let _ = offerer.add_ice_candidate(candidate).await;
                        offerer_runtime.kick();
                    }
                    else => return,
                }
            }
        })
    };
    loop {
        match tokio::time::timeout(PATIENCE, sending.poll()).await.context("the bare channel never opened")? {
            Some(DataChannelEvent::OnOpen) => break,
            Some(_) => {}
            None => bail!("the bare channel closed before it opened"),
        }
    }
    let receiving = tokio::time::timeout(PATIENCE, answerer_channels.recv())
        .await
        .context("the answerer never saw the channel")?
        .context("the answerer closed")?;
    let started = Instant::now();
    let send = async {
        let chunk = BytesMut::from(&vec![0x5a_u8; MESSAGE][..]);
        for _ in 0..TOTAL / MESSAGE {
            sending.send(chunk.clone()).await?;
        }
        anyhow::Ok(())
    };
    let receive = async {
        let mut received = 0;
        while received < TOTAL {
            match receiving.poll().await {
                Some(DataChannelEvent::OnMessage(message)) => received += message.data.len(),
                Some(_) => {}
                None => bail!("the bare channel ended after {received} bytes"),
            }
        }
        anyhow::Ok(())
    };
    tokio::try_join!(send, receive)?;
    let elapsed = started.elapsed();
    trickle.abort();
    offerer.close().await?;
    answerer.close().await?;
    Ok(rate(TOTAL, elapsed))
}

// --- cycles

fn open_fds() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Resident memory (KiB), open file descriptors and live tokio tasks, sampled after some cycles.
struct Samples {
    started: Instant,
    first: Option<(u64, usize, usize)>,
    last: (u64, usize, usize),
}

impl Samples {
    fn new(title: &str) -> Self {
        println!("{title}");
        println!("  {:>6}  {:>10}  {:>8}  {:>10}", "cycles", "RSS KiB", "open fds", "live tasks");
        Self { started: Instant::now(), first: None, last: (0, 0, 0) }
    }

    /// Samples after cycles 10, 250, 500, ...
    async fn after(&mut self, cycle: usize) -> Result<()> {
        if cycle != 10 && !cycle.is_multiple_of(250) {
            return Ok(());
        }
        // Let tasks that end after a close (webrtc's drivers) finish before the sample.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss = mesh_benches::proc_stats::rss_kib(std::process::id())?;
        let (fds, tasks) = (open_fds()?, tokio::runtime::Handle::current().metrics().num_alive_tasks());
        println!("  {cycle:>6}  {rss:>10}  {fds:>8}  {tasks:>10}");
        self.first.get_or_insert((rss, fds, tasks));
        self.last = (rss, fds, tasks);
        Ok(())
    }

    fn report(self) {
        let (first, last) = (self.first.unwrap_or(self.last), self.last);
        println!(
            "  {CYCLES} cycles in {:.1} s; from cycle 10 to {CYCLES}: RSS {:+} KiB, fds {:+}, tasks {:+}",
            self.started.elapsed().as_secs_f64(),
            last.0 as i64 - first.0 as i64,
            last.1 as i64 - first.1 as i64,
            last.2 as i64 - first.2 as i64
        );
    }
}

async fn cycles() -> Result<()> {
    let mut samples =
        Samples::new("webrtc open/close cycles: two transports connect, carry 64 KiB each way, close");
    let factory = WebRtcTransportFactory::loopback();
    for cycle in 1..=CYCLES {
        one_cycle(&factory).await.with_context(|| format!("cycle {cycle}"))?;
        samples.after(cycle).await?;
    }
    samples.report();
    Ok(())
}

async fn swarm_cycles() -> Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let (a, b) = (node(&server.url()).await?, node(&server.url()).await?);
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let swarm_a = a.join(topic, FullyConnected).await?;
    let mut a_events = swarm_a.events();
    let mut samples = Samples::new(
        "webrtc swarm cycles: a mesh peer joins another's swarm over WebRTC (Teleport up), then leaves it",
    );
    for cycle in 1..=CYCLES {
        let swarm_b = b.join(topic, FullyConnected).await?;
        let mut b_events = swarm_b.events();
        tokio::time::timeout(
            PATIENCE,
            futures::future::try_join(
                connected_to(&mut a_events, b.peer()),
                connected_to(&mut b_events, a.peer()),
            ),
        )
        .await
        .with_context(|| format!("cycle {cycle} never connected"))??;
        swarm_b.leave().await?;
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Event::Disconnected { peer, .. } = a_events.recv().await?
                    && peer == b.peer()
                {
                    return anyhow::Ok(());
                }
            }
        })
        .await
        .with_context(|| format!("cycle {cycle}: a never saw b leave"))??;
        samples.after(cycle).await?;
    }
    samples.report();
    Ok(())
}

async fn one_cycle(factory: &WebRtcTransportFactory) -> Result<()> {
    let (a, b) = transport_pair(factory);
    let (mut x, mut y) = connect(&a, &b).await?;
    let data = vec![7u8; 64 << 10];
    let (mut at_x, mut at_y) = (vec![0u8; data.len()], vec![0u8; data.len()]);
    // 64 KiB fits the send buffers, so both writes complete before anything is read.
    x.write_all(&data).await?;
    y.write_all(&data).await?;
    tokio::try_join!(x.read_exact(&mut at_y), y.read_exact(&mut at_x))?;
    drop((x, y));
    a.close().await;
    b.close().await;
    Ok(())
}
