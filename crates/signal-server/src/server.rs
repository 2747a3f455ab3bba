//! The listener: accepts TCP connections (optionally TLS), routes each HTTP request, and runs one
//! task per WebSocket connection until shutdown.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpSocket, TcpStream},
    time::{timeout, timeout_at},
};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::protocol::{Role, WebSocketConfig},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    AuthPolicy, Config, Stats,
    federation::{self, Outbox},
    http::{self, Route, SIGNAL_PATH},
    hub::Hub,
    metrics::Metrics,
};

/// WebSocket read buffer per connection: small, since signal frames are small and idle
/// connections are many.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes of frames gathered before the WebSocket writes to the socket even without a flush. The
/// connection flushes when it has nothing else ready, so this only bounds a batch.
const WRITE_BUFFER: usize = 8 * 1024;
/// Pending connections the kernel may hold before `accept`.
const BACKLOG: u32 = 4096;
/// Pause after an accept error (such as running out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// [`Config::public_url`] is not a `ws://` or `wss://` URL with a host.
    #[error("public URL {0:?} is not a ws:// or wss:// URL with a host")]
    PublicUrl(String),
}

/// State shared by every connection task.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The authority of [`Config::public_url`], which authentication signatures cover.
    authority: Option<Arc<str>>,
    /// Cancelled by [`Server::abort`]: connections drop their sockets without a close frame.
    pub(crate) aborted: CancellationToken,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    open_sockets: AtomicUsize,
    /// Sockets in their TLS or HTTP handshake, which [`crate::Limits::max_handshakes`] caps.
    handshakes: AtomicUsize,
    next_id: AtomicU64,
}

/// A socket's place among those in their handshake, given back when dropped.
struct HandshakeSlot(Arc<Shared>);

impl HandshakeSlot {
    /// Takes a place, unless they are all taken.
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        let taken = shared.handshakes.fetch_add(1, Ordering::Relaxed);
        let slot = Self(shared.clone());
        (taken < shared.config.limits.max_handshakes).then_some(slot)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running signal server. Dropping it stops accepting and closes every connection.
pub struct Server {
    local_addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The federation task, when federated: [`Server::abort`] kills it first, as a crash would.
    federation: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds the listening socket and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let authority = match &config.public_url {
            Some(url) => Some(Arc::from(
                mesh_proto::auth::authority(url).ok_or_else(|| StartError::PublicUrl(url.clone()))?,
            )),
            None => None,
        };
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let listener =
            bind(config.listen).map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let metrics = Arc::new(Metrics::new());
        if config.auth != AuthPolicy::Off && authority.is_none() {
            warn!(
                "authentication without a public URL: signatures cover the Host header clients send, \
                 so a server that relays a client's challenge to this one can replay its signature; \
                 set the public URL (mesh signal --public-url) to bind signatures to this server"
            );
        }
        let federation = config.federation.clone().map(|federation| {
            let (outbox, relays) = Outbox::new(federation.duplicate_window, metrics.clone());
            (federation, outbox, relays)
        });
        let outbox = federation.as_ref().map(|(_, outbox, _)| outbox.clone());
        let hub = Arc::new(Hub::new(metrics.clone(), &config.limits, outbox));
        let max_members = config.limits.max_topic_members;
        let shared = Arc::new(Shared {
            hub: hub.clone(),
            metrics,
            authority,
            config,
            aborted: CancellationToken::new(),
            open_sockets: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut server = Self {
            local_addr,
            tls: tls.is_some(),
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            federation: None,
        };
        if let Some((config, outbox, relays)) = federation {
            let parts = federation::Parts {
                config,
                hub,
                outbox,
                relays,
                metrics: shared.metrics.clone(),
                max_members,
            };
            server.federation = Some(tracker.spawn(federation::run(parts, shutdown.clone())));
        }
        tracker.spawn(accept_loop(listener, tls, shared, shutdown, tracker.clone()));
        info!(addr = %local_addr, "signal server listening");
        Ok(server)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL of the signal endpoint.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{SIGNAL_PATH}", self.local_addr)
    }

    /// The current metrics.
    pub fn stats(&self) -> Stats {
        self.shared.metrics.snapshot()
    }

    /// The metrics in the Prometheus text format, as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Stops accepting, closes every connection (WebSocket close 1001) and waits up to `deadline`
    /// for the connection tasks to finish. Returns whether they all did.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let finished = timeout(deadline, self.tracker.wait()).await.is_ok();
        if finished {
            info!("signal server stopped");
        } else {
            warn!("signal server stopped with connections still closing");
        }
        finished
    }
}

impl Server {
    /// Stops at once, as if the process died: every socket is closed without a WebSocket close
    /// frame, so clients see their connection drop. For tests of client recovery.
    pub async fn abort(mut self) {
        // A federated server goes silent before its clients drop, so the others learn of the
        // crash only from its silence.
        if let Some(federation) = self.federation.take() {
            federation.abort();
            let _ = federation.await;
        }
        self.shared.aborted.cancel();
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted server must get its port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = HandshakeSlot::take(&shared) else {
                    debug!(%peer, "too many handshakes; closing");
                    shared.metrics.connections_rejected.inc();
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (shared, shutdown, tls) = (shared.clone(), shutdown.clone(), tls.clone());
                tracker.spawn(async move {
                    let open = shared.open_sockets.fetch_add(1, Ordering::Relaxed) + 1;
                    serve_socket(stream, peer, tls, &shared, shutdown, open, slot).await;
                    shared.open_sockets.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(err) => {
                warn!(%err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_socket(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
    open: usize,
    slot: HandshakeSlot,
) {
    // A token per connection: polling a token locks its node, and a node each keeps connections
    // from contending for one lock.
    let shutdown = shutdown.child_token();
    // The TLS and HTTP handshakes share one deadline, and shutdown does not wait for them.
    let deadline = tokio::time::Instant::now() + shared.config.limits.handshake_timeout;
    match tls {
        None => serve(stream, peer, shared, shutdown, open, deadline, slot).await,
        // Boxed: a TLS connection's state is much larger than a plain one's, and every plain
        // connection's task would otherwise reserve room for it.
        Some(acceptor) => {
            Box::pin(async {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = timeout_at(deadline, acceptor.accept(stream)) => accepted,
                };
                match accepted {
                    Ok(Ok(stream)) => serve(stream, peer, shared, shutdown, open, deadline, slot).await,
                    Ok(Err(err)) => debug!(%peer, %err, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            })
            .await
        }
    }
}

/// Answers the HTTP request on `stream`; runs the connection if it is a WebSocket upgrade.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
    open: usize,
    deadline: tokio::time::Instant,
    slot: HandshakeSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upgraded = tokio::select! {
        () = shutdown.cancelled() => return,
        upgraded = timeout_at(deadline, answer(stream, peer, shared, open)) => upgraded,
    };
    drop(slot);
    match upgraded {
        Ok(Some((ws, host))) => {
            let authority = shared.authority.clone().unwrap_or_else(|| Arc::from(host));
            crate::connection::run(ws, shared.clone(), authority, shutdown).await;
        }
        Ok(None) => {}
        Err(_) => debug!(%peer, "HTTP handshake timed out"),
    }
}

/// Reads the request head and answers it; for a WebSocket upgrade, returns the WebSocket and the
/// `Host` header instead.
async fn answer<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    open: usize,
) -> Option<(WebSocketStream<S>, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.config.limits;
    let head = match http::read_head(&mut stream).await {
        Ok(head) => head,
        Err(err) => {
            debug!(%peer, %err, "bad HTTP request");
            shared.metrics.frames_rejected.inc();
            let _ = http::respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n").await;
            return None;
        }
    };
    let text = "text/plain; charset=utf-8";
    let answered = match head.route {
        Route::Upgrade { key, host } => {
            if open > limits.max_connections {
                shared.metrics.connections_rejected.inc();
                http::respond(&mut stream, "503 Service Unavailable", text, "connection limit reached\n")
                    .await
            } else if let Err(err) = http::switch_protocols(&mut stream, &key).await {
                Err(err)
            } else {
                let max_write_buffer = limits.max_frame_size * 4;
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    // tungstenite needs the limit above the batch size.
                    .write_buffer_size(WRITE_BUFFER.min(max_write_buffer / 2))
                    .max_write_buffer_size(max_write_buffer)
                    .max_message_size(Some(limits.max_frame_size))
                    .max_frame_size(Some(limits.max_frame_size));
                let ws =
                    WebSocketStream::from_partially_read(stream, head.rest, Role::Server, Some(config)).await;
                return Some((ws, host));
            }
        }
        Route::Ready => http::respond(&mut stream, "200 OK", text, "mesh signal server ready\n").await,
        Route::Metrics => {
            let body = shared.metrics.render();
            http::respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body).await
        }
        Route::NotFound => http::respond(&mut stream, "404 Not Found", text, "not found\n").await,
        Route::MethodNotAllowed => {
            http::respond(&mut stream, "405 Method Not Allowed", text, "GET only\n").await
        }
        Route::BadRequest => {
            http::respond(&mut stream, "400 Bad Request", text, "bad WebSocket upgrade\n").await
        }
    };
    if let Err(err) = answered {
        debug!(%peer, %err, "writing HTTP response failed");
    }
    None
}
