//! `mesh demo`: an embedded signal server and N peers on loopback form a swarm over real sockets,
//! exchange a message round and a bulk transfer, and report what they measured.

mod extension;
mod progress;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use mesh::TeleportProtocol;
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_signal::Client;
use mesh_signal_server::{Config, Limits, RateLimit, Server};
use mesh_swarm::{NetworkManager, SwarmConfig, topology::FullyConnected};
use mesh_transport::{TransportFactory, webrtc::WebRtcTransportFactory};
use tokio::{io::AsyncWriteExt, sync::mpsc};

use self::{
    extension::{Demo, Links, NAME, Report, lock},
    progress::Progress,
};
use crate::transport::{ReachArgs, TransportChoice};

/// Options of `mesh demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Peers in the swarm.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=64))]
    peers: u16,
    /// How the peers connect.
    #[arg(long, value_enum, default_value_t = TransportChoice::Tcp)]
    transport: TransportChoice,
    /// MiB sent in the bulk transfer between two peers.
    #[arg(long, default_value_t = 32)]
    bulk_mib: u64,
    /// Seconds each phase may take before the demo gives up.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let limit = Duration::from_secs(args.timeout);
    // The demo's own peers are the only clients: let all of them join and talk at once.
    let unlimited = RateLimit { per_second: 10_000.0, burst: 10_000 };
    let defaults = Limits::default();
    let limits = Limits {
        rate_limit: unlimited,
        join_rate_per_topic: unlimited,
        max_topic_members: defaults.max_topic_members.max(usize::from(args.peers)),
        ..defaults
    };
    let server =
        Server::start(Config::default().with_limits(limits)).await.context("starting the signal server")?;
    println!("signal server   {}", server.url());
    let shared: Arc<dyn TransportFactory> = match args.transport {
        // Everything is on loopback: one socket each, no interface scan.
        TransportChoice::Webrtc => Arc::new(WebRtcTransportFactory::loopback()),
        other => other.factory(&ReachArgs::default(), &Keypair::generate())?,
    };

    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let links: Links = Arc::default();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let peers = usize::from(args.peers);
    println!(
        "swarm           {peers} peers, fully connected, {} transport, topic {}",
        args.transport.name(),
        topic.short()
    );

    // Formation: every ordered pair has its channels open.
    let started = Instant::now();
    let mut keys = Vec::new();
    let mut swarms = Vec::new();
    for _ in 0..peers {
        let pair = Keypair::generate();
        let key = pair.public();
        let transports = match args.transport {
            // Each peer authenticates its TCP links (or signs its Noise key) with its own key.
            TransportChoice::Tcp | TransportChoice::TcpNoise => {
                args.transport.factory(&ReachArgs::default(), &pair)?
            }
            // Memory pipes meet inside one factory.
            TransportChoice::Webrtc | TransportChoice::Memory => shared.clone(),
        };
        let client = Client::connect(server.url())?;
        let manager = NetworkManager::new(key, Arc::new(client), transports, SwarmConfig::default()).await?;
        let (links, reports) = (links.clone(), reports_tx.clone());
        let protocol = TeleportProtocol::new(move |teleport| {
            let demo = Demo { links: links.clone(), reports: reports.clone() };
            // The name is a constant without '/', so adding it cannot fail.
            let _ = teleport.add_extension(NAME, demo);
        });
        swarms.push(manager.join(topic, Box::new(FullyConnected), Arc::new(protocol)).await?);
        keys.push(key);
    }
    let pairs = peers * (peers - 1);
    let progress = Progress::new(pairs as u64, "connections");
    let mut linked = BTreeSet::new();
    let formed = tokio::time::timeout(limit, async {
        while linked.len() < pairs {
            if let Some(Report::Linked { local, remote }) = reports.recv().await {
                linked.insert((local, remote));
                progress.set(linked.len() as u64);
            }
        }
    })
    .await;
    progress.finish();
    if formed.is_err() {
        bail!("the swarm did not form within {} s: {} of {pairs} connections", args.timeout, linked.len());
    }
    let formation = started.elapsed();
    println!("swarm formed    {pairs} connections (each way) in {formation:.1?}");

    // A message round: every peer pings every other and times the answer.
    let round_started = Instant::now();
    let mut sent_at = HashMap::new();
    let ports: Vec<_> = {
        let links = lock(&links);
        links.iter().map(|(pair, (port, _))| (*pair, port.clone())).collect()
    };
    for ((local, remote), port) in ports {
        sent_at.insert((local, remote), Instant::now());
        port.send(Bytes::from_static(b"ping 1")).await.context("sending a ping")?;
    }
    let mut round_trips = Vec::new();
    let answered = tokio::time::timeout(limit, async {
        while round_trips.len() < pairs {
            if let Some(Report::Pong { local, remote, round: 1 }) = reports.recv().await
                && let Some(at) = sent_at.remove(&(local, remote))
            {
                round_trips.push(at.elapsed());
            }
        }
    })
    .await;
    if answered.is_err() {
        bail!("only {} of {pairs} pings were answered within {} s", round_trips.len(), args.timeout);
    }
    round_trips.sort();
    let percentile = |p: usize| round_trips[(round_trips.len() * p / 100).min(round_trips.len() - 1)];
    println!(
        "message round   {pairs} pings answered in {:.1?}; round trip p50 {:.2?}, p99 {:.2?}",
        round_started.elapsed(),
        percentile(50),
        percentile(99)
    );

    // A bulk transfer between the first two peers.
    let bytes = args.bulk_mib * 1024 * 1024;
    let (from, to) = (keys[0], keys[1]);
    let writer =
        lock(&links).get(&(from, to)).map(|(_, writer)| writer.clone()).context("no link to send on")?;
    let transfer_started = Instant::now();
    let send = tokio::spawn(async move {
        let mut writer = writer.lock().await;
        writer.write_u64(bytes).await?;
        let chunk = vec![0x5au8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            writer.write_all(&chunk[..take]).await?;
            left -= take as u64;
        }
        writer.flush().await
    });
    let received = tokio::time::timeout(limit, async {
        loop {
            if let Some(Report::Bulk { local, remote, bytes: got }) = reports.recv().await
                && (local, remote) == (to, from)
            {
                return got;
            }
        }
    })
    .await;
    send.await.context("the bulk sender stopped")?.context("writing the bulk transfer")?;
    let Ok(got) = received else { bail!("the bulk transfer did not arrive within {} s", args.timeout) };
    if got != bytes {
        bail!("the bulk transfer arrived with {got} of {bytes} bytes");
    }
    let seconds = transfer_started.elapsed().as_secs_f64();
    println!(
        "bulk transfer   {} MiB from {} to {} in {seconds:.2} s: {:.0} MB/s",
        args.bulk_mib,
        from.short(),
        to.short(),
        bytes as f64 / seconds / 1e6
    );

    let stats = server.stats();
    println!(
        "signal server   {} connections, {} messages relayed ({:.1} per peer)",
        stats.connections,
        stats.messages_relayed,
        stats.messages_relayed as f64 / peers as f64
    );
    for swarm in swarms {
        let _ = swarm.leave().await;
    }
    server.shutdown(Duration::from_secs(2)).await;
    println!("demo passed");
    Ok(())
}
