//! A client of one signal server over WebSocket.

mod backoff;
pub(crate) mod core;
mod driver;
mod tls;

use std::time::Duration;

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use self::core::Timeouts;
use self::driver::{Command, Driver};
use crate::{Event, Signal, SignalError, SignalMessage};

/// Commands waiting for the client's task at most; callers wait beyond it.
const COMMAND_QUEUE: usize = 256;

/// How a [`Client`] connects and how patient it is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `ws://` or `wss://` URL of the signal endpoint, e.g. `ws://127.0.0.1:4000/.well-known/dx/signal`.
    pub url: String,
    /// PEM certificates to trust besides the system's roots (a private CA or a self-signed server).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Keys to prove to the server after every connect (mesh's authenticated signaling), before
    /// any join or inbox is opened.
    pub identities: Vec<Keypair>,
    /// Request timeouts.
    pub timeouts: Timeouts,
    /// First reconnect delay; it doubles on each failure.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Interval of the `__ping__` text keep-alive, which DXOS 0.8.3 servers expect.
    pub ping_interval: Duration,
    /// Interval of WebSocket Ping frames, which the server answers with a Pong: on a quiet
    /// connection they are what shows the server is still there.
    pub heartbeat_interval: Duration,
    /// A connection with no frame from the server (a Pong or anything else) for this long is
    /// lost: the server stopped answering although the TCP connection looks up (half-open). It
    /// should be a few heartbeats long.
    pub read_timeout: Duration,
    /// Time allowed for each write to the server; a write that takes longer loses the connection
    /// (a server that stopped reading would otherwise hold the client's task).
    pub write_timeout: Duration,
    /// Time allowed to connect (TCP, TLS and the WebSocket handshake).
    pub connect_timeout: Duration,
    /// Largest frame accepted from the server.
    pub max_frame_size: usize,
    /// Events buffered for each receiver of [`Signal::events`].
    pub event_capacity: usize,
    /// Peers remembered per joined topic at most (see [`Signal::members`]); announcements of
    /// further peers are dropped, so a server cannot grow the client's memory without bound.
    pub max_peers_per_topic: usize,
}

impl ClientConfig {
    /// The defaults of the DXOS 0.8.3 client for `url`, plus heartbeats that find a half-open
    /// server within 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            extra_ca_pem: None,
            identities: Vec::new(),
            timeouts: Timeouts::default(),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(4),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_frame_size: 1 << 20,
            event_capacity: 1024,
            max_peers_per_topic: 10_000,
        }
    }

    /// The same settings with `identity` among the keys proven to the server.
    pub fn with_identity(mut self, identity: Keypair) -> Self {
        self.identities.push(identity);
        self
    }

    /// Sets [`ClientConfig::extra_ca_pem`].
    pub fn with_extra_ca_pem(mut self, pem: Option<Vec<u8>>) -> Self {
        self.extra_ca_pem = pem;
        self
    }

    /// Sets [`ClientConfig::timeouts`].
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets [`ClientConfig::heartbeat_interval`].
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets [`ClientConfig::read_timeout`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::event_capacity`].
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }
}

/// A client of one signal server. It keeps the joins and inboxes it was asked for and restores
/// them after every reconnect. Cloning gives another handle to the same connection; the connection
/// closes when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    url: String,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a client of `url` with the default settings, on the current tokio runtime.
    pub fn connect(url: impl Into<String>) -> Result<Self, SignalError> {
        Self::with_config(ClientConfig::new(url))
    }

    /// Starts a client with `config`, on the current tokio runtime.
    pub fn with_config(config: ClientConfig) -> Result<Self, SignalError> {
        let host = mesh_proto::auth::authority(&config.url)
            .ok_or_else(|| SignalError::InvalidUrl(config.url.clone()))?;
        let core = self::core::Core::new(
            config.timeouts,
            host.to_owned(),
            config.identities.clone(),
            config.max_peers_per_topic,
        );
        let tls = tls::client_config(config.extra_ca_pem.as_deref())?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(config.event_capacity);
        let url = config.url.clone();
        // The task ends when the last handle is dropped: its command channel closes.
        tokio::spawn(Driver::new(config, tls, core, commands, events.clone()).run());
        Ok(Self { url, commands: commands_tx, events })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn command(&self, command: Command) -> Result<(), SignalError> {
        self.commands.send(command).await.map_err(|_| SignalError::Closed)
    }
}

#[async_trait]
impl Signal for Client {
    async fn join(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.command(Command::Join(topic, peer)).await
    }

    async fn leave(&self, topic: DiscoveryKey, peer: PublicKey) -> Result<(), SignalError> {
        self.command(Command::Leave(topic, peer)).await
    }

    async fn subscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.command(Command::Subscribe(peer)).await
    }

    async fn unsubscribe(&self, peer: PublicKey) -> Result<(), SignalError> {
        self.command(Command::Unsubscribe(peer)).await
    }

    /// Once the message is queued (the first poll, unless 256 commands are already waiting) the
    /// client's task owns it: dropping this future stops the wait for the server's reply, not the
    /// send.
    async fn send(&self, message: SignalMessage) -> Result<(), SignalError> {
        let (reply, result) = oneshot::channel();
        self.command(Command::Send(message, reply)).await?;
        result.await.map_err(|_| SignalError::Closed)?
    }

    async fn members(&self, topic: DiscoveryKey) -> Result<Vec<PublicKey>, SignalError> {
        let (reply, result) = oneshot::channel();
        self.command(Command::Members(topic, reply)).await?;
        result.await.map_err(|_| SignalError::Closed)
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
