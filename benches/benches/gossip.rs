//! Gossip across an MMST swarm of 100 in-process peers on the in-memory transport (5 ms one-way
//! per link): delivery latency (post to each other peer's subscriber, p50 and p99) and duplicate
//! copies per message, for DXOS's flooding and for mesh's tree mode running side by side over the
//! same connections, so both see the same swarm.
//!
//! `cargo bench -p mesh-benches --bench gossip [-- --messages K]` (release). Each mode first sends
//! a few warm-up messages (tree mode prunes its links into a tree on them); then K messages, each
//! from the next peer in turn, each posted once every peer delivered the one before.
//!
//! Then blob sync: a 256 MiB blob fetched over one Teleport connection on TCP loopback (verified
//! piece by piece), against the same bytes through a bare TCP connection, in the same run.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use mesh::TeleportProtocol;
use mesh_extensions::{
    blobs::{self, Blobs},
    gossip::{Gossip, GossipConfig, GossipMode, GossipStats},
};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::Any;
use mesh_signal::MemoryNetwork;
use mesh_swarm::{NetworkManager, SwarmConfig, SwarmHandle, topology::Mmst};
use mesh_teleport::{Params, Teleport};
use mesh_transport::memory::{Conditions, MemoryTransportFactory, Shape};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const PEERS: usize = 100;
const MESSAGES: usize = 100;
const WARM_UP: usize = 5;
const LINK_LATENCY: Duration = Duration::from_millis(5);
const PATIENCE: Duration = Duration::from_secs(60);
/// The blob moved in the throughput figures.
const BLOB_BYTES: usize = 256 << 20;

struct Peer {
    flood: Gossip,
    tree: Gossip,
    _manager: NetworkManager,
    _swarm: SwarmHandle,
}

/// One delivery: which message reached which peer, when.
type Delivery = (PublicKey, usize, Instant);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut messages = MESSAGES;
    let mut rest = args.iter().filter(|arg| *arg != "--bench");
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--messages" => {
                messages = rest.next().context("--messages needs a number")?.parse().context("--messages")?
            }
            other => bail!("unknown argument {other:?}: expected --messages K"),
        }
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(messages))
}

async fn run(messages: usize) -> Result<()> {
    let started = Instant::now();
    let peers = swarm().await?;
    println!(
        "MMST swarm of {PEERS} peers, links {} ms one-way: ring formed in {:.1} s",
        LINK_LATENCY.as_millis(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>22}",
        "mode", "messages", "p50 ms", "p99 ms", "duplicates per message"
    );
    let mut figures = Vec::new();
    for (name, pick) in [("flooding", flood as fn(&Peer) -> &Gossip), ("tree", tree)] {
        let gossips: Vec<&Gossip> = peers.iter().map(pick).collect();
        measure(&gossips, WARM_UP).await?;
        let before = duplicates(&gossips);
        let latencies = measure(&gossips, messages).await?;
        let per_message = (duplicates(&gossips) - before) as f64 / messages as f64;
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        println!("{name:<10} {messages:>9} {:>9.2} {:>9.2} {per_message:>22.1}", ms(p50), ms(p99));
        figures.push((p50, p99, per_message));
    }
    let ((flood_p50, flood_p99, flood_dups), (tree_p50, tree_p99, tree_dups)) = (figures[0], figures[1]);
    println!(
        "tree / flooding: p50 {:.2}, p99 {:.2}, duplicates {:.3}",
        ms(tree_p50) / ms(flood_p50),
        ms(tree_p99) / ms(flood_p99),
        tree_dups / flood_dups.max(f64::MIN_POSITIVE)
    );
    drop(peers);
    blob_throughput().await
}

/// Blob sync over TCP loopback against bare TCP, best of three each.
async fn blob_throughput() -> Result<()> {
    let data: Vec<u8> =
        (0..BLOB_BYTES).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1]).collect();
    let mut raw = Duration::MAX;
    let mut blob = Duration::MAX;
    for _ in 0..3 {
        raw = raw.min(raw_tcp(&data).await?);
        blob = blob.min(blob_fetch(&data).await?);
    }
    let rate = |d: Duration| BLOB_BYTES as f64 / d.as_secs_f64() / 1e6;
    println!("{:<26} {:>9}", "256 MiB over TCP loopback", "MB/s");
    println!("{:<26} {:>9.0}", "bare TCP", rate(raw));
    println!("{:<26} {:>9.0}", "blob sync (verified)", rate(blob));
    println!("blob sync / bare TCP: {:.2}", rate(blob) / rate(raw));
    Ok(())
}

async fn tcp_pair() -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    Ok((dialled?, accepted?.0))
}

async fn raw_tcp(data: &[u8]) -> Result<Duration> {
    let (mut writer, mut reader) = tcp_pair().await?;
    let started = Instant::now();
    let payload = data.to_vec();
    let writing = tokio::spawn(async move { writer.write_all(&payload).await });
    let mut received = vec![0; data.len()];
    reader.read_exact(&mut received).await?;
    writing.await??;
    Ok(started.elapsed())
}

async fn blob_fetch(data: &[u8]) -> Result<Duration> {
    let (holder, fetcher) = (Blobs::default(), Blobs::default());
    let hash = holder.add(data.to_vec());
    let (a_io, b_io) = tcp_pair().await?;
    let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
    let a = Teleport::new(a_io, Params::new(true, a_key, b_key));
    let b = Teleport::new(b_io, Params::new(false, b_key, a_key));
    let started = Instant::now();
    a.add_extension(blobs::EXTENSION, holder.extension())?;
    b.add_extension(blobs::EXTENSION, fetcher.extension())?;
    let blob = tokio::time::timeout(PATIENCE, fetcher.fetch(hash))
        .await
        .context("the blob fetch took too long")??;
    let elapsed = started.elapsed();
    if blob.len() != data.len() as u64 {
        bail!("fetched {} bytes of {}", blob.len(), data.len());
    }
    a.close().await;
    Ok(elapsed)
}

fn flood(peer: &Peer) -> &Gossip {
    &peer.flood
}

fn tree(peer: &Peer) -> &Gossip {
    &peer.tree
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn duplicates(gossips: &[&Gossip]) -> u64 {
    gossips.iter().map(|g| g.stats()).map(|stats: GossipStats| stats.duplicates).sum()
}

/// Posts `count` messages in turn and returns every delivery's latency, sorted.
async fn measure(gossips: &[&Gossip], count: usize) -> Result<Vec<Duration>> {
    let channel = format!("bench-{}", rand_suffix());
    let (delivered, mut deliveries) = mpsc::unbounded_channel::<Delivery>();
    let mut readers = tokio::task::JoinSet::new();
    for gossip in gossips {
        let mut subscription = gossip.subscribe(&channel);
        let (delivered, own) = (delivered.clone(), gossip.local_peer());
        readers.spawn(async move {
            while let Some(message) = subscription.recv().await {
                let index = usize::from_be_bytes(message.payload.value[..8].try_into().unwrap_or_default());
                if delivered.send((own, index, Instant::now())).is_err() {
                    return;
                }
            }
        });
    }
    let mut latencies = Vec::with_capacity(count * (gossips.len() - 1));
    for index in 0..count {
        let origin = gossips[index % gossips.len()];
        let payload = Any { type_url: "mesh.bench.Index".into(), value: index.to_be_bytes().to_vec() };
        let posted = Instant::now();
        origin.post(&channel, payload);
        let mut waiting: BTreeSet<PublicKey> =
            gossips.iter().map(|g| g.local_peer()).filter(|k| *k != origin.local_peer()).collect();
        tokio::time::timeout(PATIENCE, async {
            while !waiting.is_empty() {
                let Some((peer, got, at)) = deliveries.recv().await else { return };
                if got == index && waiting.remove(&peer) {
                    latencies.push(at - posted);
                }
            }
        })
        .await
        .with_context(|| format!("message {index} reached only some peers"))?;
    }
    latencies.sort();
    Ok(latencies)
}

fn rand_suffix() -> String {
    PublicKey::random().short()
}

/// The swarm, once every ring link is up (the swarm is then connected; MMST keeps ring links).
async fn swarm() -> Result<Vec<Peer>> {
    let network = MemoryNetwork::new();
    let shape = Shape { latency: LINK_LATENCY, bandwidth: None };
    let transports = Arc::new(MemoryTransportFactory::new(Conditions { shape, loss: 0.0 }, 7));
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut peers = Vec::new();
    for index in 0..PEERS {
        let own = Keypair::generate().public();
        let flood = Gossip::new(own, GossipConfig::default());
        let tree = Gossip::new(
            own,
            GossipConfig::default().with_name("mesh.bench.tree").with_mode(GossipMode::Tree),
        );
        let mut watch = flood.watch_peers();
        let changed = changed.clone();
        tokio::spawn(async move { while watch.changed().await.is_ok() && changed.send(()).is_ok() {} });
        let (for_flood, for_tree) = (flood.clone(), tree.clone());
        let protocol = TeleportProtocol::new(move |teleport| {
            let _ = for_flood.attach(teleport);
            let _ = for_tree.attach(teleport);
        });
        let manager =
            NetworkManager::new(own, Arc::new(network.client()), transports.clone(), SwarmConfig::default())
                .await?;
        let swarm = manager.join(topic, Box::new(Mmst::new(index as u64)), Arc::new(protocol)).await?;
        peers.push(Peer { flood, tree, _manager: manager, _swarm: swarm });
    }
    let mut sorted: Vec<PublicKey> = peers.iter().map(|p| p.flood.local_peer()).collect();
    sorted.sort();
    let ring: BTreeSet<(PublicKey, PublicKey)> =
        (0..sorted.len()).map(|i| edge(sorted[i], sorted[(i + 1) % sorted.len()])).collect();
    tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let links: BTreeSet<_> = peers
                .iter()
                .flat_map(|p| p.flood.peers().into_iter().map(|remote| edge(p.flood.local_peer(), remote)))
                .collect();
            let tree_links: HashMap<PublicKey, Vec<PublicKey>> =
                peers.iter().map(|p| (p.tree.local_peer(), p.tree.peers())).collect();
            let tree_ready = ring.iter().all(|(a, b)| tree_links[a].contains(b));
            if ring.is_subset(&links) && tree_ready {
                return;
            }
            changes.recv().await;
        }
    })
    .await
    .context("the MMST ring did not form")?;
    Ok(peers)
}

fn edge(a: PublicKey, b: PublicKey) -> (PublicKey, PublicKey) {
    (a.min(b), a.max(b))
}
