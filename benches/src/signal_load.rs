//! The signal load generator: a fleet of raw tokio-tungstenite WebSocket clients in topics of
//! `group` members. Each client joins its topic and opens its inbox (or registers with the bare
//! relay), then, when a rate is set, sends directed messages to random other members of its topic
//! open-loop: on a fixed schedule, never waiting for replies. Receivers count what arrives and,
//! while recording, the latency from each message's send timestamp.
//!
//! Clients bind to several loopback source addresses (127.0.0.1, 127.0.0.2, …) so that a hundred
//! thousand connections never run out of ephemeral ports (about 28,000 per source address).
//! Idle clients keep their connections alive with DXOS's `__ping__`, so a fleet outlives the
//! server's idle timeout.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{
    SinkExt, StreamExt, TryStreamExt,
    stream::{SplitSink, SplitStream},
};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{Notify, watch},
    task::JoinSet,
    time::timeout,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message as WsMessage, protocol::WebSocketConfig},
};

use crate::signal_wire::{FIRST_SEND_ID, Incoming, KEEP_ALIVE, KEY_LEN, Wire};

/// Loopback source addresses the clients spread over.
const SOURCE_ADDRESSES: usize = 16;
/// Connections being set up at once.
const CONNECT_CONCURRENCY: usize = 256;
/// Time allowed for one client to connect, join and open its inbox.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Client read buffer: relayed frames are small, and the idle fleet has ten thousand clients.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// A sender this far behind its schedule (after a stall) skips ahead rather than bursting.
const MAX_LAG: Duration = Duration::from_millis(200);
/// How often an idle client sends `__ping__`: the DXOS 0.8.3 client's interval (and the mesh
/// client's default), well within the server's idle timeout.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<TcpStream>;

/// How many clients, in topics of how many.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Clients in the fleet.
    pub clients: usize,
    /// Members per topic; `clients` must be a multiple of it.
    pub group: usize,
}

impl Layout {
    fn topic_of(self, client: usize) -> usize {
        client / self.group
    }
}

/// The key of client `index`.
fn peer_key(index: usize) -> Bytes {
    let mut key = [0xa5; KEY_LEN];
    key[..8].copy_from_slice(&(index as u64).to_le_bytes());
    Bytes::copy_from_slice(&key)
}

/// The key of topic `index`.
fn topic_key(index: usize) -> Bytes {
    let mut key = [0x70; KEY_LEN];
    key[..8].copy_from_slice(&(index as u64).to_le_bytes());
    Bytes::copy_from_slice(&key)
}

/// What the fleet counted since it connected, and the latencies recorded while recording.
#[derive(Debug)]
pub struct Counters {
    /// Messages written by senders.
    pub sent: AtomicU64,
    /// Messages relayed to a receiver.
    pub delivered: AtomicU64,
    /// SendMessage replies received (mesh only).
    pub replies: AtomicU64,
    /// Error responses received (such as `RATE_LIMIT_EXCEEDED`).
    pub refused: AtomicU64,
    /// Swarm events received (mesh only).
    pub swarm_events: AtomicU64,
    /// Connections that ended while the fleet held them: the server closed them or they failed.
    pub closed: AtomicU64,
    /// The swarm events that tell every client of every other member of its topic.
    events_expected: u64,
    /// Notified when `swarm_events` reaches `events_expected`.
    events_complete: Notify,
    recording: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
}

impl Counters {
    fn new(wire: Wire, layout: Layout) -> Self {
        let events_expected = match wire {
            // Each member hears PeerAvailable once for every other member, whichever joined first.
            Wire::Mesh => (layout.clients * (layout.group - 1)) as u64,
            Wire::Bare => 0,
        };
        Self {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            swarm_events: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            events_expected,
            events_complete: Notify::new(),
            recording: AtomicBool::new(false),
            latencies_us: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, incoming: Incoming, start: Instant) {
        match incoming {
            Incoming::Delivered { sent_ns } => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if self.recording.load(Ordering::Relaxed) {
                    let now_ns = start.elapsed().as_nanos() as u64;
                    let micros = u32::try_from(now_ns.saturating_sub(sent_ns) / 1_000).unwrap_or(u32::MAX);
                    self.latencies_us.lock().unwrap_or_else(PoisonError::into_inner).push(micros);
                }
            }
            Incoming::Reply => {
                self.replies.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Refused => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::SwarmEvent => {
                if self.swarm_events.fetch_add(1, Ordering::Relaxed) + 1 == self.events_expected {
                    // A permit, should nobody wait yet.
                    self.events_complete.notify_one();
                }
            }
            Incoming::Ready | Incoming::Other => {}
        }
    }
}

/// Whether clients send, or only hold their connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every client runs a sender, paced by [`Fleet::set_rate`].
    Senders,
    /// Clients only join, open their inbox, read and send `__ping__` every
    /// [`KEEP_ALIVE_INTERVAL`], as idle DXOS clients do.
    Idle,
}

/// A connected fleet of clients. Dropping it closes every connection.
pub struct Fleet {
    layout: Layout,
    counters: Arc<Counters>,
    /// Each client's interval between sends; `None` pauses them.
    pace: watch::Sender<Option<Duration>>,
    /// Every client's tasks: dropping them closes the connections.
    _tasks: JoinSet<()>,
}

impl Fleet {
    /// Connects `layout.clients` clients to the server at `addr` (`url` for the handshake), and
    /// returns once every one of them has joined and opened its inbox. Each client starts
    /// working (reading, and sending or keeping alive) as soon as it is ready, so the first ones
    /// outlive the server's idle timeout however long the rest take.
    pub async fn connect(
        wire: Wire,
        addr: SocketAddr,
        url: &str,
        layout: Layout,
        mode: Mode,
    ) -> Result<Self> {
        Self::connect_spread(wire, &[(addr, url.to_owned())], layout, mode).await
    }

    /// Connects the fleet to several servers, client `c` to server `c % servers.len()`; with more
    /// than one, senders send only to the members of their topic on other servers, so every
    /// message crosses between servers.
    pub async fn connect_spread(
        wire: Wire,
        servers: &[(SocketAddr, String)],
        layout: Layout,
        mode: Mode,
    ) -> Result<Self> {
        if servers.is_empty() {
            bail!("a fleet needs a server");
        }
        if layout.group < 2 || !layout.clients.is_multiple_of(layout.group) {
            bail!("{} clients cannot form topics of {}", layout.clients, layout.group);
        }
        let start = Instant::now();
        let counters = Arc::new(Counters::new(wire, layout));
        let (pace, _) = watch::channel(None);
        let mut tasks = JoinSet::new();
        let mut opening = futures::stream::iter(0..layout.clients)
            .map(|client| {
                let counters = counters.clone();
                let (addr, url) = &servers[client % servers.len()];
                async move {
                    let socket =
                        timeout(SETUP_TIMEOUT, open(wire, *addr, url, layout, client, &counters, start))
                            .await
                            .with_context(|| format!("client {client} did not get ready in time"))??;
                    Ok::<_, anyhow::Error>((client, socket))
                }
            })
            .buffer_unordered(CONNECT_CONCURRENCY);
        while let Some((client, socket)) = opening.try_next().await? {
            match mode {
                Mode::Senders => {
                    let (sink, source) = socket.split();
                    tasks.spawn(receive(wire, source, counters.clone(), start));
                    let servers = servers.len();
                    let sender = Sender { wire, layout, client, servers, counters: counters.clone(), start };
                    tasks.spawn(sender.run(sink, pace.subscribe()));
                }
                Mode::Idle => {
                    // Spread the keep-alives over the interval so they don't arrive in step.
                    let phase = KEEP_ALIVE_INTERVAL.mul_f64(XorShift::new(client as u64).unit());
                    tasks.spawn(idle(wire, socket, counters.clone(), start, phase));
                }
            }
        }
        // Its closure borrows `counters`, which the fleet takes.
        drop(opening);
        Ok(Self { layout, counters, pace, _tasks: tasks })
    }

    /// Waits (at most `limit`) until every client has heard of every other member of its topic,
    /// so that the server has nothing left to deliver. Immediate for the bare relay, which has no
    /// topics.
    pub async fn wait_settled(&self, limit: Duration) -> Result<()> {
        let counters = &self.counters;
        if counters.swarm_events.load(Ordering::Relaxed) >= counters.events_expected {
            return Ok(());
        }
        timeout(limit, counters.events_complete.notified()).await.with_context(|| {
            format!(
                "swarm events still missing after {limit:?}: {} of {} arrived",
                counters.swarm_events.load(Ordering::Relaxed),
                counters.events_expected
            )
        })
    }

    /// What the fleet has counted.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Makes the whole fleet offer `per_second` messages per second, spread evenly over clients.
    pub fn set_rate(&self, per_second: f64) {
        let interval = Duration::from_secs_f64(self.layout.clients as f64 / per_second);
        self.pace.send_replace(Some(interval));
    }

    /// Stops sending.
    pub fn pause(&self) {
        self.pace.send_replace(None);
    }

    /// Waits until no message has arrived for a while (at most `limit`), after a pause.
    pub async fn wait_quiet(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.counters.delivered.load(Ordering::Relaxed);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.counters.delivered.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Starts recording the latency of every delivered message.
    pub fn start_recording(&self) {
        self.latencies().clear();
        self.counters.recording.store(true, Ordering::Relaxed);
    }

    /// Stops recording and returns the latencies recorded, in microseconds, sorted.
    pub fn stop_recording(&self) -> Vec<u32> {
        self.counters.recording.store(false, Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *self.latencies());
        latencies.sort_unstable();
        latencies
    }

    fn latencies(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.counters.latencies_us.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens client `client`: connects from its loopback source address, then joins its topic and
/// opens its inbox, and waits for the server to confirm both. Swarm events that arrive meanwhile
/// are counted.
async fn open(
    wire: Wire,
    addr: SocketAddr,
    url: &str,
    layout: Layout,
    client: usize,
    counters: &Counters,
    start: Instant,
) -> Result<Socket> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (client % SOURCE_ADDRESSES) as u8);
    let socket = TcpSocket::new_v4().context("creating a client socket")?;
    socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding a client to {source}"))?;
    let stream = socket.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake")?;

    let frames = wire.setup_frames(&topic_key(layout.topic_of(client)), &peer_key(client));
    let expected = frames.len();
    for frame in frames {
        ws.feed(WsMessage::Binary(frame.into())).await.context("sending setup")?;
    }
    ws.flush().await.context("sending setup")?;
    let mut ready = 0;
    while ready < expected {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(frame))) => match wire.parse(frame) {
                Incoming::Ready => ready += 1,
                Incoming::Refused => bail!("the server refused client {client}'s setup"),
                other => counters.record(other, start),
            },
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err).context("reading setup replies"),
            None => bail!("the server closed client {client} during setup"),
        }
    }
    Ok(ws)
}

/// Reads everything the server sends one client.
async fn receive(wire: Wire, mut source: SplitStream<Socket>, counters: Arc<Counters>, start: Instant) {
    while let Some(Ok(message)) = source.next().await {
        if let WsMessage::Binary(frame) = message {
            counters.record(wire.parse(frame), start);
        }
    }
    counters.closed.fetch_add(1, Ordering::Relaxed);
}

/// Runs one idle client: reads everything the server sends, and sends `__ping__` every
/// [`KEEP_ALIVE_INTERVAL`], first after `phase`.
async fn idle(wire: Wire, mut socket: Socket, counters: Arc<Counters>, start: Instant, phase: Duration) {
    let first = tokio::time::Instant::now() + phase;
    let mut keep_alive = tokio::time::interval_at(first, KEEP_ALIVE_INTERVAL);
    // After a stall, one ping is enough: a burst would only load the server.
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(WsMessage::Binary(frame))) => counters.record(wire.parse(frame), start),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = keep_alive.tick() => {
                if socket.send(WsMessage::Text(KEEP_ALIVE.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    counters.closed.fetch_add(1, Ordering::Relaxed);
}

/// One client's sending side.
struct Sender {
    wire: Wire,
    layout: Layout,
    client: usize,
    /// How many servers the fleet is spread over.
    servers: usize,
    counters: Arc<Counters>,
    start: Instant,
}

impl Sender {
    async fn run(self, mut sink: SplitSink<Socket, WsMessage>, mut pace: watch::Receiver<Option<Duration>>) {
        let author = peer_key(self.client);
        // The other members of the topic (on other servers, when there are several).
        let first_member = self.layout.topic_of(self.client) * self.layout.group;
        let elsewhere =
            |member: usize| self.servers == 1 || member % self.servers != self.client % self.servers;
        let others: Vec<Bytes> = (first_member..first_member + self.layout.group)
            .filter(|&member| member != self.client && elsewhere(member))
            .map(peer_key)
            .collect();
        let mut rng = XorShift::new(self.client as u64);
        let mut id = FIRST_SEND_ID;
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let Some(interval) = *pace.borrow_and_update() else {
                if pace.changed().await.is_err() {
                    return;
                }
                continue;
            };
            // Spread the clients' first sends over one interval so they don't fire in step.
            let mut next = tokio::time::Instant::now() + interval.mul_f64(rng.unit());
            loop {
                sleep.as_mut().reset(next);
                tokio::select! {
                    biased;
                    changed = pace.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    () = &mut sleep => {}
                }
                let recipient = &others[rng.below(others.len() as u64) as usize];
                let sent_ns = self.start.elapsed().as_nanos() as u64;
                let frame = self.wire.send_frame(id, &author, recipient, sent_ns);
                id = id.checked_add(1).unwrap_or(FIRST_SEND_ID);
                if sink.send(WsMessage::Binary(frame.into())).await.is_err() {
                    return;
                }
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                next += interval;
                let now = tokio::time::Instant::now();
                if now > next + MAX_LAG {
                    next = now;
                }
            }
        }
    }
}

/// A small deterministic generator (xorshift64*): the bench needs spread, not quality.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
