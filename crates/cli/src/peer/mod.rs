//! `mesh peer`: join a swarm and stay in it. Lines typed on stdin are gossiped to every peer of
//! the swarm (on any topology, each peer prints each line once); lines from others are printed,
//! and so is who comes online and goes offline (presence). With `--json`, every event is one JSON
//! object per line, so scripts and other programs can drive a peer.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use mesh::TeleportProtocol;
use mesh_extensions::{
    auth::{Authenticator, PartyPolicy},
    blobs::{self, BlobHash, Blobs},
    gossip::{self, Gossip, GossipConfig, GossipExtension},
    presence::{Presence, PresenceConfig, PresenceEvent},
};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey, SecretKey};
use mesh_proto::Any;
use mesh_signal::{ClientConfig, Event as SignalEvent, Manager, Signal};
use mesh_swarm::{
    Event as SwarmEvent, NetworkManager, SwarmConfig,
    topology::{FullyConnected, Mmst, Star, Topology},
};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::transport::{ReachArgs, TransportChoice};

mod share;

/// The gossip channel lines travel on.
const CHAT: &str = "mesh.chat";
/// The payload type of a line: its UTF-8 bytes.
const LINE_TYPE: &str = "mesh.chat.Line";

/// Options of `mesh peer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Signal server URL (ws:// or wss://); repeat for several servers.
    #[arg(long = "signal", required = true)]
    signals: Vec<String>,
    /// The swarm's topic (64 hex characters).
    #[arg(long, conflicts_with = "party", required_unless_present = "party")]
    topic: Option<DiscoveryKey>,
    /// A party key (64 hex characters); the topic is its discovery key.
    #[arg(long)]
    party: Option<PublicKey>,
    /// This peer's admission to the party (`KEY.admission`, from `mesh join`). With it, the
    /// swarm is members-only: every connection proves the remote's key and admission before
    /// lines, presence or blobs flow on it.
    #[arg(long, requires = "key")]
    admission: Option<PathBuf>,
    /// This peer's secret key file (from `mesh keygen`); a new key is made when absent.
    #[arg(long)]
    key: Option<PathBuf>,
    /// How to connect to other peers (memory only reaches peers inside one process: see
    /// `mesh demo --transport memory`).
    #[arg(long, value_enum, default_value_t = TransportChoice::Tcp)]
    transport: TransportChoice,
    #[command(flatten)]
    reach: ReachArgs,
    /// full, star:CENTRE_HEX, or mmst.
    #[arg(long, default_value = "full", value_parser = TopologySpec::parse)]
    topology: TopologySpec,
    /// Print every event as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// A file to share with the swarm as a blob (its hash is printed).
    #[arg(long)]
    share: Option<PathBuf>,
    /// A blob to fetch from the peers that hold it (its hash), written to --out.
    #[arg(long, requires = "out")]
    fetch: Option<BlobHash>,
    /// Where --fetch writes the blob.
    #[arg(long, requires = "fetch")]
    out: Option<PathBuf>,
    /// Seconds between presence announces.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    presence_interval: f64,
    /// Seconds without an announce after which a peer counts as offline (more than the interval).
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    presence_timeout: f64,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e6 => Ok(seconds),
        _ => Err(format!("{text:?}: expected a number of seconds above 0")),
    }
}

/// Where the peer's output goes: plain lines or JSON objects.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn event(self, event: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{event}");
        } else {
            println!("{}", text());
        }
    }
}

impl Args {
    /// What clap cannot check on its own, as a usage error.
    pub(crate) fn usage_error(&self) -> Option<String> {
        if self.transport == TransportChoice::Memory {
            return Some(
                "--transport memory only connects peers inside one process, and `mesh peer` is one peer: \
                 use tcp, tcp+noise or webrtc (or `mesh demo --transport memory`)"
                    .to_owned(),
            );
        }
        (self.presence_timeout <= self.presence_interval)
            .then(|| "--presence-timeout must be longer than --presence-interval".to_owned())
    }
}

/// A `--topology` value, parsed while the arguments are, so a bad one is a usage error.
#[derive(Debug, Clone, Copy)]
enum TopologySpec {
    Full,
    Star(PublicKey),
    Mmst,
}

impl TopologySpec {
    fn parse(spec: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            None if spec == "full" => Ok(Self::Full),
            None if spec == "mmst" => Ok(Self::Mmst),
            Some(("star", centre)) => {
                centre.parse().map(Self::Star).map_err(|err| format!("the star's centre key: {err}"))
            }
            _ => Err(format!("unknown topology {spec:?}: expected full, star:CENTRE_HEX or mmst")),
        }
    }

    /// The topology for the peer `own` (MMST seeds its choices with the key).
    fn build(self, own: PublicKey) -> Box<dyn Topology> {
        match self {
            Self::Full => Box::new(FullyConnected),
            Self::Star(centre) => Box::new(Star::new(centre)),
            Self::Mmst => {
                let mut seed = [0u8; 8];
                seed.copy_from_slice(&own.as_bytes()[..8]);
                Box::new(Mmst::new(u64::from_le_bytes(seed)))
            }
        }
    }
}

pub(crate) fn keypair(path: Option<&PathBuf>) -> Result<Keypair> {
    let Some(path) = path else { return Ok(Keypair::generate()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret: SecretKey =
        text.trim().parse().with_context(|| format!("{} holds no secret key", path.display()))?;
    Ok(Keypair::from_secret(&secret))
}

/// Gossip on one connection, reporting when it opens (from then on lines reach the peer) and
/// closes. Reports carry the connection's session: a restarted peer's new connection can open
/// while its old one is still closing.
struct Reported {
    gossip: GossipExtension,
    out: Out,
    /// The remote and session, once open.
    open: std::sync::Mutex<Option<(PublicKey, PublicKey)>>,
}

impl Reported {
    fn closed(&self) {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some((remote, session)) = open {
            self.out.event(
                json!({"event": "closed", "peer": remote.to_hex(), "session": session.to_hex()}),
                || format!("* a connection to {} closed", remote.short()),
            );
        }
    }
}

#[async_trait]
impl Extension for Reported {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let (remote, session) = (ctx.remote_peer(), ctx.session());
        self.gossip.on_open(ctx).await?;
        *self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((remote, session));
        self.out.event(
            json!({"event": "connected", "peer": remote.to_hex(), "session": session.to_hex()}),
            || format!("* connected to {}", remote.short()),
        );
        Ok(())
    }

    async fn on_close(&self, error: Option<String>) {
        self.gossip.on_close(error).await;
        self.closed();
    }

    async fn on_abort(&self, error: Option<String>) {
        self.gossip.on_abort(error).await;
        self.closed();
    }
}

fn print_line(out: Out, line: &gossip::Announcement) {
    if line.payload.type_url != LINE_TYPE {
        return;
    }
    let (author, text) = (line.origin, String::from_utf8_lossy(&line.payload.value));
    out.event(json!({"event": "message", "author": author.to_hex(), "payload": text}), || {
        format!("<{}> {text}", author.short())
    });
}

fn print_presence(out: Out, event: PresenceEvent) {
    match event {
        PresenceEvent::Online(info) => {
            let connections: Vec<String> = info.connections.iter().map(PublicKey::to_hex).collect();
            out.event(
                json!({"event": "online", "peer": info.peer.to_hex(), "connections": connections}),
                || format!("* {} is online", info.peer.short()),
            );
        }
        PresenceEvent::Offline(peer) => {
            out.event(json!({"event": "offline", "peer": peer.to_hex()}), || {
                format!("* {} went offline", peer.short())
            });
        }
        _ => {}
    }
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let pair = keypair(args.key.as_ref())?;
    let own = pair.public();
    let admission = args.admission.as_deref().map(crate::invite::read_admission).transpose()?;
    let party = match (&admission, args.party) {
        (Some(admission), Some(party)) if admission.party() != Some(party) => {
            bail!(
                "the admission is to party {}, not to --party {party}",
                admission.party().map_or(String::new(), |p| p.to_hex())
            )
        }
        (Some(admission), _) => admission.party(),
        (None, party) => party,
    };
    let topic = match (args.topic, party) {
        (Some(topic), _) => topic,
        (None, Some(party)) => DiscoveryKey::from_party(&party),
        (None, None) => bail!("give --topic or --party"),
    };
    let auth = match (admission, party) {
        (Some(admission), Some(party)) => Some(Arc::new(
            Authenticator::new(pair.clone()).with_policy(PartyPolicy::new(party)).with_admission(admission),
        )),
        _ => None,
    };
    let topology = args.topology.build(own);
    let out = Out { json: args.json };

    // The peer proves its key to every server: one that requires it refuses unproven peers, one
    // with authentication off (or without mesh's) answers so and the client carries on.
    let configs = args.signals.iter().map(|url| ClientConfig::new(url.clone()).with_identity(pair.clone()));
    let signal: Arc<dyn Signal> = Arc::new(Manager::with_configs(configs)?);
    let manager = NetworkManager::new(
        own,
        signal.clone(),
        args.transport.factory(&args.reach, &pair)?,
        SwarmConfig::default(),
    )
    .await
    .context("opening the inbox")?;
    let gossip = Gossip::new(own, GossipConfig::default());
    let mut lines = gossip.subscribe(CHAT);
    let presence = Presence::spawn(
        gossip.clone(),
        PresenceConfig::default().with_timing(
            Duration::from_secs_f64(args.presence_interval),
            Duration::from_secs_f64(args.presence_timeout),
        ),
    );
    let mut presence_events = presence.events();
    let blob_store = Blobs::default();
    let (for_connections, for_blobs) = (gossip.clone(), blob_store.clone());
    // In a members-only swarm, the extensions wait until the remote proved itself.
    let protocol = TeleportProtocol::authenticated(auth, move |teleport| {
        let reported = Reported { gossip: for_connections.extension(), out, open: Default::default() };
        // Constant names without '/': adding them cannot fail.
        let _ = teleport.add_extension(gossip::EXTENSION, reported);
        let _ = teleport.add_extension(blobs::EXTENSION, for_blobs.extension());
    });
    let mut fetching = match (args.fetch, args.out.clone()) {
        (Some(hash), Some(path)) => Some(Box::pin(share::fetch(blob_store.clone(), hash, path, out))),
        _ => None,
    };
    let mut signal_events = signal.events();
    let swarm = manager.join(topic, topology, Arc::new(protocol)).await.context("joining the swarm")?;
    let mut swarm_events = swarm.events();
    out.event(json!({"event": "ready", "peer": own.to_hex(), "topic": topic.to_hex()}), || {
        format!("peer {own} in swarm {topic}; type lines to send them")
    });
    if let Some(path) = &args.share {
        share::share(&blob_store, path, out).await?;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line.context("reading stdin")? {
                Some(line) => {
                    gossip.post(CHAT, Any { type_url: LINE_TYPE.into(), value: line.into_bytes() });
                }
                None => break,
            },
            Some(line) = lines.recv() => print_line(out, &line),
            done = async { fetching.as_mut().expect("guarded").await }, if fetching.is_some() => {
                fetching = None;
                done?;
            }
            Ok(event) = presence_events.recv() => print_presence(out, event),
            event = signal_events.recv() => match event {
                Ok(SignalEvent::PeerAvailable { topic: t, peer, .. }) if t == topic => {
                    out.event(json!({"event": "peer-available", "peer": peer.to_hex()}), || format!("* {} is in the swarm", peer.short()));
                }
                Ok(SignalEvent::PeerLeft { topic: t, peer }) if t == topic => {
                    out.event(json!({"event": "peer-left", "peer": peer.to_hex()}), || format!("* {} left the swarm", peer.short()));
                }
                _ => {}
            },
            event = swarm_events.recv() => {
                if let Ok(SwarmEvent::Disconnected { peer, reason }) = event {
                    out.event(json!({"event": "disconnected", "peer": peer.to_hex(), "reason": reason.to_string()}), || {
                        format!("* disconnected from {} ({reason})", peer.short())
                    });
                }
            }
        }
    }
    swarm.leave().await.context("leaving the swarm")?;
    Ok(())
}
