//! The task behind a [`Client`](super::Client): connects, reconnects with backoff, keeps the
//! connection alive and checks that the server is still there, and runs the [`Core`] on real
//! frames and time.
//!
//! Liveness: every `heartbeat_interval` the task sends a WebSocket Ping, which the server answers
//! with a Pong, and every `ping_interval` DXOS's `__ping__` text. A connection with no frame from
//! the server for `read_timeout` is lost, as is one where a write takes longer than
//! `write_timeout`: a server that stopped answering while its TCP connection stays up (half-open)
//! is found within `read_timeout`, then the client reconnects as after any other loss.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Instant};

use futures::{Future, SinkExt, StreamExt};
use mesh_keys::{DiscoveryKey, PublicKey};
use tokio::{
    net::TcpStream,
    sync::{broadcast, mpsc, oneshot},
    time::{Instant as TokioInstant, sleep_until, timeout},
};
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config,
    tungstenite::{Message as WsMessage, protocol::WebSocketConfig},
};
use tracing::{debug, info};

use super::{
    ClientConfig,
    backoff::Backoff,
    core::{Core, Output, SendToken},
};
use crate::{ConnectionState, Event, SignalError, SignalMessage};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;

/// What a [`Client`](super::Client) asks of its task.
pub(crate) enum Command {
    Join(DiscoveryKey, PublicKey),
    Leave(DiscoveryKey, PublicKey),
    Subscribe(PublicKey),
    Unsubscribe(PublicKey),
    Send(SignalMessage, oneshot::Sender<Result<(), SignalError>>),
    Members(DiscoveryKey, oneshot::Sender<Vec<PublicKey>>),
}

/// An open connection and its clocks.
struct Link {
    socket: Socket,
    /// When the server's last frame arrived.
    last_input: TokioInstant,
    heartbeat_at: TokioInstant,
    ping_at: TokioInstant,
}

impl Link {
    fn read_deadline(&self, config: &ClientConfig) -> TokioInstant {
        self.last_input + config.read_timeout
    }

    fn next_timer(&self, config: &ClientConfig) -> TokioInstant {
        self.read_deadline(config).min(self.heartbeat_at).min(self.ping_at)
    }
}

/// Why a connection was given up.
#[derive(Debug)]
enum Loss {
    /// The socket failed or closed, or the server sent what is not an `RpcMessage`.
    Socket(String),
    /// No frame from the server within the read timeout.
    Silent,
    /// A write did not finish within the write timeout.
    WriteStalled,
}

pub(crate) struct Driver {
    config: ClientConfig,
    tls: Arc<rustls::ClientConfig>,
    core: Core,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    replies: HashMap<SendToken, oneshot::Sender<Result<(), SignalError>>>,
    next_token: SendToken,
}

impl Driver {
    pub(crate) fn new(
        config: ClientConfig,
        tls: Arc<rustls::ClientConfig>,
        core: Core,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Self { config, tls, core, commands, events, replies: HashMap::new(), next_token: 0 }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max, rand::random());
        let mut link: Option<Link> = None;
        let mut connecting: Option<Connecting> = Some(self.connect());
        let mut reconnect_at: Option<TokioInstant> = None;
        self.status(ConnectionState::Connecting);

        loop {
            // Send what the core produced; a failed or stalled write loses the connection.
            if let Some(open) = link.as_mut()
                && let Err(loss) = self.write_out(&mut open.socket).await
            {
                link = None;
                self.lost(loss, &mut reconnect_at, &mut backoff);
            }
            self.deliver_outputs();

            let link_timer = link.as_ref().map(|open| open.next_timer(&self.config));
            let deadline = [self.core.poll_timeout().map(TokioInstant::from_std), reconnect_at, link_timer]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                // Frames first: a frame already waiting proves the server alive before the read
                // deadline is looked at.
                biased;
                frame = async { link.as_mut().expect("guarded by the branch condition").socket.next().await },
                    if link.is_some() =>
                {
                    let loss = match frame {
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            self.core.handle_frame(now(), &bytes).err().map(|err| Loss::Socket(err.to_string()))
                        }
                        Some(Ok(WsMessage::Close(_))) | None => Some(Loss::Socket("closed by the server".into())),
                        Some(Err(err)) => Some(Loss::Socket(err.to_string())),
                        // Pongs, the server's Pings (tungstenite answers them) and text.
                        Some(Ok(_)) => None,
                    };
                    match loss {
                        Some(loss) => {
                            link = None;
                            self.lost(loss, &mut reconnect_at, &mut backoff);
                        }
                        None => {
                            if let Some(open) = link.as_mut() {
                                open.last_input = TokioInstant::now();
                            }
                        }
                    }
                }
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = TokioInstant::now();
                    if reconnect_at.is_some_and(|at| at <= now) {
                        reconnect_at = None;
                        connecting = Some(self.connect());
                    }
                    if let Some(open) = link.as_mut()
                        && let Err(loss) = self.keep_alive(open, now).await
                    {
                        link = None;
                        self.lost(loss, &mut reconnect_at, &mut backoff);
                    }
                    self.core.handle_timeout(now.into_std());
                }
                connected = async { connecting.as_mut().expect("guarded by the branch condition").await },
                    if connecting.is_some() =>
                {
                    connecting = None;
                    match connected {
                        Ok(socket) => {
                            info!(url = %self.config.url, "connected");
                            let now = TokioInstant::now();
                            link = Some(Link {
                                socket,
                                last_input: now,
                                heartbeat_at: now + self.config.heartbeat_interval,
                                ping_at: now + self.config.ping_interval,
                            });
                            backoff.reset();
                            self.core.on_connected(now.into_std());
                            self.status(ConnectionState::Connected);
                        }
                        Err(err) => {
                            debug!(url = %self.config.url, %err, "connect failed");
                            self.lost(Loss::Socket(err), &mut reconnect_at, &mut backoff);
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    None => break,
                    Some(command) => self.command(command),
                },
            }
        }

        if let Some(mut open) = link {
            let _ = timeout(std::time::Duration::from_secs(1), open.socket.close(None)).await;
        }
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(SignalError::Closed));
        }
        self.status(ConnectionState::Closed);
    }

    fn command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Join(topic, peer) => self.core.join(now, topic, peer),
            Command::Leave(topic, peer) => self.core.leave(topic, peer),
            Command::Subscribe(peer) => self.core.subscribe(now, peer),
            Command::Unsubscribe(peer) => self.core.unsubscribe(peer),
            Command::Send(message, reply) => {
                self.next_token += 1;
                self.replies.insert(self.next_token, reply);
                self.core.send(now, self.next_token, &message);
            }
            Command::Members(topic, reply) => {
                let _ = reply.send(self.core.members(topic));
            }
        }
    }

    /// Checks the read deadline and sends the keep-alives that are due.
    async fn keep_alive(&mut self, link: &mut Link, now: TokioInstant) -> Result<(), Loss> {
        if link.read_deadline(&self.config) <= now {
            return Err(Loss::Silent);
        }
        if link.heartbeat_at <= now {
            link.heartbeat_at = now + self.config.heartbeat_interval;
            self.write(&mut link.socket, WsMessage::Ping(Default::default())).await?;
        }
        if link.ping_at <= now {
            link.ping_at = now + self.config.ping_interval;
            // The 0.8.3 keep-alive: a text frame the server ignores.
            self.write(&mut link.socket, WsMessage::Text("__ping__".into())).await?;
        }
        Ok(())
    }

    /// Writes the frames the core produced.
    async fn write_out(&mut self, socket: &mut Socket) -> Result<(), Loss> {
        let mut frames = Vec::new();
        while let Some(frame) = self.core.poll_transmit() {
            frames.push(WsMessage::Binary(frame.into()));
        }
        if frames.is_empty() {
            return Ok(());
        }
        let write = async {
            for frame in frames {
                socket.feed(frame).await?;
            }
            socket.flush().await
        };
        match timeout(self.config.write_timeout, write).await {
            Ok(result) => result.map_err(|err| Loss::Socket(err.to_string())),
            Err(_) => Err(Loss::WriteStalled),
        }
    }

    async fn write(&self, socket: &mut Socket, message: WsMessage) -> Result<(), Loss> {
        match timeout(self.config.write_timeout, socket.send(message)).await {
            Ok(result) => result.map_err(|err| Loss::Socket(err.to_string())),
            Err(_) => Err(Loss::WriteStalled),
        }
    }

    /// Hands the core's events to the subscribers and send results to their callers.
    fn deliver_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Event(event) => {
                    let _ = self.events.send(event);
                }
                Output::SendResult(token, result) => {
                    if let Some(reply) = self.replies.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }

    fn connect(&self) -> Connecting {
        let url = self.config.url.clone();
        let connector = Connector::Rustls(self.tls.clone());
        let limit = self.config.connect_timeout;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(self.config.max_frame_size))
            .max_frame_size(Some(self.config.max_frame_size));
        Box::pin(async move {
            match timeout(limit, connect_async_tls_with_config(url, Some(ws_config), true, Some(connector)))
                .await
            {
                Ok(Ok((ws, _response))) => Ok(ws),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("connect timed out".into()),
            }
        })
    }

    /// The connection is gone: the core reports the departures of its views before the state
    /// change, so a merge of several sources sees them in order, then a reconnect is scheduled.
    fn lost(&mut self, loss: Loss, reconnect_at: &mut Option<TokioInstant>, backoff: &mut Backoff) {
        match &loss {
            Loss::Socket(err) => debug!(url = %self.config.url, %err, "connection lost"),
            Loss::Silent | Loss::WriteStalled => {
                info!(url = %self.config.url, ?loss, "the server stopped answering; reconnecting")
            }
        }
        self.core.on_disconnected();
        self.deliver_outputs();
        *reconnect_at = Some(TokioInstant::now() + backoff.next_delay());
        self.status(ConnectionState::Disconnected);
    }

    fn status(&self, state: ConnectionState) {
        let _ = self.events.send(Event::Connection { url: self.config.url.clone(), state });
    }
}

/// The current time on tokio's clock, which tests may pause and advance.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
