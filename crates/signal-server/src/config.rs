//! Server settings: where to listen, the limits that bound every resource, and the auth policy.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Who may join as, read the inbox of, or send as a peer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPolicy {
    /// No authentication: the DXOS 0.8.3 behaviour. Any session may use any key.
    #[default]
    Off,
    /// Sessions may prove their keys. A key held by an authenticated session cannot be used by an
    /// unauthenticated one, and an authenticated session can only send as its own keys. DXOS
    /// clients keep working with keys nobody has authenticated.
    Optional,
    /// Every join, inbox and send needs a key the session has proven.
    Required,
}

impl std::str::FromStr for AuthPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("unknown auth policy {other:?}: expected off, optional or required")),
        }
    }
}

/// A token bucket: `per_second` requests on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// How a large topic introduces its members: each newcomer meets a bounded sample instead of
/// every member (see `mesh_signal::view`, which the simulator runs too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntroductionView {
    /// Members a newcomer is introduced to, about; each introduction goes both ways.
    pub view: usize,
    /// Topics with fewer members than this introduce everyone to everyone, as DXOS does.
    pub everyone_up_to: usize,
    /// Seeds the samples; `None` draws a seed when the server starts. The same seed and the same
    /// joins and leaves give the same introductions.
    pub seed: Option<u64>,
}

impl IntroductionView {
    /// A view of `view` members, for topics of at least `everyone_up_to`.
    pub fn new(view: usize, everyone_up_to: usize) -> Self {
        Self { view, everyone_up_to, seed: None }
    }

    /// Sets [`IntroductionView::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// The limits that keep one client, or many, from exhausting the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message accepted, in bytes; larger ones close the connection.
    pub max_frame_size: usize,
    /// Open WebSocket connections; further ones are answered 503.
    pub max_connections: usize,
    /// Open Join streams per connection.
    pub max_joins_per_connection: usize,
    /// Open inbox (ReceiveMessages) streams per connection.
    pub max_inboxes_per_connection: usize,
    /// Open inbox streams for one peer key, over all connections; more are answered
    /// `LIMIT_EXCEEDED`. Every message to the key is copied to each of them, so this bounds what
    /// one `SendMessage` costs. (With auth off anyone may fill a key's inboxes, as anyone may
    /// read them; proving the key withdraws the inboxes unproven sessions opened.)
    pub max_inboxes_per_peer: usize,
    /// Requests per connection, answered `RATE_LIMIT_EXCEEDED` beyond it. Every request takes
    /// from it, and so do the `dxos.rpc` frames that are not requests (`open`, `stream_close`).
    pub rate_limit: RateLimit,
    /// Joins into one topic, from all connections together; joins beyond it are answered
    /// `RATE_LIMIT_EXCEEDED` (clients retry). Each join costs work and a swarm event for every
    /// member, so this bounds what anyone who knows a topic can make its members do.
    pub join_rate_per_topic: RateLimit,
    /// Joins per connection, answered `RATE_LIMIT_EXCEEDED` beyond it. The burst lets a client
    /// rejoin all its topics at once after a reconnect.
    pub join_rate_per_connection: RateLimit,
    /// Join streams in one topic (a peer joined from two connections counts twice); joins beyond
    /// it are answered `LIMIT_EXCEEDED`. The swarm events waiting for one member stream are
    /// bounded by twice this many, however fast the topic changes.
    pub max_topic_members: usize,
    /// Peer keys one connection may prove with `Authenticate`; more are answered `LIMIT_EXCEEDED`.
    pub max_proven_keys_per_connection: usize,
    /// A connection that sends nothing (not even `__ping__`) for this long is closed.
    pub idle_timeout: Duration,
    /// How long one write to a client may stall (its socket full because it does not read)
    /// before the connection is closed. Capped at `idle_timeout`, so a client that never reads
    /// is gone within the idle timeout at the latest.
    pub write_timeout: Duration,
    /// Time allowed for the TLS and HTTP handshakes together.
    pub handshake_timeout: Duration,
    /// Sockets in their TLS or HTTP handshake at once (plain HTTP requests included); sockets
    /// accepted beyond it are closed at once. With `handshake_timeout`, this bounds what clients
    /// that connect and never finish a request can hold.
    pub max_handshakes: usize,
    /// Relayed messages queued to one connection; more are dropped (the reliable messenger
    /// resends). Swarm events do not queue here: they are coalesced per stream and peer.
    pub send_queue: usize,
    /// Introduce newcomers to large topics through a bounded view; `None` (the default) tells
    /// every member about every other, as DXOS's server does. A join costs O(view) events
    /// instead of O(members), and a member hears of about twice the view rather than everyone.
    pub introduction_view: Option<IntroductionView>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_connections: 20_000,
            max_joins_per_connection: 64,
            max_inboxes_per_connection: 16,
            max_inboxes_per_peer: 16,
            rate_limit: RateLimit { per_second: 200.0, burst: 400 },
            join_rate_per_topic: RateLimit { per_second: 50.0, burst: 250 },
            join_rate_per_connection: RateLimit { per_second: 10.0, burst: 64 },
            max_topic_members: 1_000,
            max_proven_keys_per_connection: 16,
            idle_timeout: Duration::from_secs(40),
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1_024,
            send_queue: 256,
            introduction_view: None,
        }
    }
}

/// A certificate chain and private key, both PEM files, for serving `wss://`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Resource limits.
    pub limits: Limits,
    /// Authentication policy.
    pub auth: AuthPolicy,
    /// Terminate TLS with these files instead of serving plain `ws://`.
    pub tls: Option<TlsFiles>,
    /// The URL clients reach this server at (`wss://signal.example.com/.well-known/dx/signal`).
    /// Authentication signatures cover its authority (`host[:port]`), so a server that relays a
    /// client's challenge to this one cannot replay the signature. Without it, signatures cover
    /// the client's `Host` header, which a relaying server controls: the server warns at start
    /// when authentication is on and this is unset.
    pub public_url: Option<String>,
    /// Serve one set of topics and inboxes with other servers through NATS; `None` serves alone.
    pub federation: Option<crate::Federation>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            auth: AuthPolicy::default(),
            tls: None,
            public_url: None,
            federation: None,
        }
    }
}

impl Config {
    /// Sets [`Config::listen`].
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets [`Config::limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`Config::auth`].
    pub fn with_auth(mut self, auth: AuthPolicy) -> Self {
        self.auth = auth;
        self
    }

    /// Sets [`Config::tls`].
    pub fn with_tls(mut self, tls: Option<TlsFiles>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`Config::federation`].
    pub fn with_federation(mut self, federation: Option<crate::Federation>) -> Self {
        self.federation = federation;
        self
    }

    /// Sets [`Config::public_url`].
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url;
        self
    }
}
