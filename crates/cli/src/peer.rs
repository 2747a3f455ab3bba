//! `mesh peer`: join a swarm and stay in it. Lines typed on stdin go to every connected peer;
//! lines from others are printed. With `--json`, every event is one JSON object per line, so
//! scripts and other programs can drive a peer.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey, SecretKey};
use mesh_signal::{ClientConfig, Event as SignalEvent, Manager, Signal};
use mesh_swarm::{
    Event as SwarmEvent, NetworkManager, SwarmConfig,
    topology::{FullyConnected, Mmst, Star, Topology},
};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Port, TeleportProtocol};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::transport::{ReachArgs, TransportChoice};

/// The chat extension's name on the wire.
const CHAT: &str = "mesh.chat";

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
        (self.transport == TransportChoice::Memory).then(|| {
            "--transport memory only connects peers inside one process, and `mesh peer` is one peer: \
             use tcp or webrtc (or `mesh demo --transport memory`)"
                .to_owned()
        })
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

fn keypair(path: Option<&PathBuf>) -> Result<Keypair> {
    let Some(path) = path else { return Ok(Keypair::generate()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret: SecretKey =
        text.trim().parse().with_context(|| format!("{} holds no secret key", path.display()))?;
    Ok(Keypair::from_secret(&secret))
}

/// The chat port of every open connection, by the connection's session. A restarted peer's new
/// connection can open while its old one is still closing, so state is per connection, never per
/// remote key: the old connection ending must not take the new one's port with it.
type Ports = Arc<Mutex<HashMap<PublicKey, Arc<Port>>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned lock still holds valid ports.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens port "lines" on each connection and prints what arrives on it.
struct Chat {
    ports: Ports,
    out: Out,
}

#[async_trait]
impl Extension for Chat {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let (remote, session) = (ctx.remote_peer(), ctx.session());
        let port = Arc::new(ctx.create_port("lines", Some("text/plain"))?);
        lock(&self.ports).insert(session, port.clone());
        let (ports, out) = (self.ports.clone(), self.out);
        // Reported here rather than when the transport is up: from now on lines reach this peer.
        out.event(
            json!({"event": "connected", "peer": remote.to_hex(), "session": session.to_hex()}),
            || format!("* connected to {}", remote.short()),
        );
        // Ends with the connection: the port yields `None` once it is closed.
        tokio::spawn(async move {
            while let Some(line) = port.recv().await {
                let text = String::from_utf8_lossy(&line).into_owned();
                out.event(json!({"event": "message", "author": remote.to_hex(), "payload": text}), || {
                    format!("<{}> {text}", remote.short())
                });
            }
            lock(&ports).remove(&session);
            out.event(
                json!({"event": "closed", "peer": remote.to_hex(), "session": session.to_hex()}),
                || format!("* a connection to {} closed", remote.short()),
            );
        });
        Ok(())
    }
}

/// Sends `line` on every open connection without waiting for any one of them: a peer that does
/// not read misses lines rather than holding up the others.
fn send_to_all(ports: &Ports, line: &str) {
    for (session, port) in lock(ports).iter() {
        if let Err(err) = port.try_send(Bytes::from(line.to_owned())) {
            tracing::warn!(session = %session.short(), %err, "line not sent on this connection");
        }
    }
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let pair = keypair(args.key.as_ref())?;
    let own = pair.public();
    let topic = match (args.topic, args.party) {
        (Some(topic), _) => topic,
        (None, Some(party)) => DiscoveryKey::from_party(&party),
        (None, None) => bail!("give --topic or --party"),
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
        args.transport.factory(&args.reach, &pair),
        SwarmConfig::default(),
    )
    .await
    .context("opening the inbox")?;
    let ports: Ports = Arc::default();
    let chat_ports = ports.clone();
    let protocol = TeleportProtocol::new(move |teleport| {
        // A constant name without '/': adding it cannot fail.
        let _ = teleport.add_extension(CHAT, Chat { ports: chat_ports.clone(), out });
    });
    let mut signal_events = signal.events();
    let swarm = manager.join(topic, topology, Arc::new(protocol)).await.context("joining the swarm")?;
    let mut swarm_events = swarm.events();
    out.event(json!({"event": "ready", "peer": own.to_hex(), "topic": topic.to_hex()}), || {
        format!("peer {own} in swarm {topic}; type lines to send them")
    });

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line.context("reading stdin")? {
                Some(line) => send_to_all(&ports, &line),
                None => break,
            },
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
