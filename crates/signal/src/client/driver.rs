//! The task behind a [`Client`](super::Client): connects, reconnects with backoff, keeps the
//! connection alive with `__ping__`, and runs the [`Core`] on real frames and time.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Instant};

use futures::{Future, SinkExt, StreamExt};
use tokio::{
    net::TcpStream,
    sync::{broadcast, mpsc, oneshot},
    time::{sleep_until, timeout},
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
    Join(mesh_keys::DiscoveryKey, mesh_keys::PublicKey),
    Leave(mesh_keys::DiscoveryKey, mesh_keys::PublicKey),
    Subscribe(mesh_keys::PublicKey),
    Unsubscribe(mesh_keys::PublicKey),
    Send(SignalMessage, oneshot::Sender<Result<(), SignalError>>),
}

pub(crate) struct Driver {
    pub(crate) config: ClientConfig,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) core: Core,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: broadcast::Sender<Event>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max, rand::random());
        let mut replies: HashMap<SendToken, oneshot::Sender<Result<(), SignalError>>> = HashMap::new();
        let mut next_token: SendToken = 0;
        let mut socket: Option<Socket> = None;
        let mut connecting: Option<Connecting> = Some(self.connect());
        let mut reconnect_at: Option<tokio::time::Instant> = None;
        let mut ping_at: Option<tokio::time::Instant> = None;
        self.status(ConnectionState::Connecting);

        loop {
            // Send what the core produced; a failed write loses the connection.
            if let Some(ws) = socket.as_mut()
                && let Err(err) = flush(ws, &mut self.core).await
            {
                debug!(url = %self.config.url, %err, "write failed");
                socket = None;
                self.lost(&mut reconnect_at, &mut backoff);
            }
            while let Some(output) = self.core.poll_output() {
                match output {
                    Output::Event(event) => {
                        let _ = self.events.send(event);
                    }
                    Output::SendResult(token, result) => {
                        if let Some(reply) = replies.remove(&token) {
                            let _ = reply.send(result);
                        }
                    }
                }
            }

            let deadline =
                [self.core.poll_timeout().map(tokio::time::Instant::from_std), reconnect_at, ping_at]
                    .into_iter()
                    .flatten()
                    .min();
            tokio::select! {
                command = self.commands.recv() => {
                    let now = now();
                    match command {
                        None => break,
                        Some(Command::Join(topic, peer)) => self.core.join(now, topic, peer),
                        Some(Command::Leave(topic, peer)) => self.core.leave(topic, peer),
                        Some(Command::Subscribe(peer)) => self.core.subscribe(now, peer),
                        Some(Command::Unsubscribe(peer)) => self.core.unsubscribe(peer),
                        Some(Command::Send(message, reply)) => {
                            next_token += 1;
                            replies.insert(next_token, reply);
                            self.core.send(now, next_token, &message);
                        }
                    }
                }
                connected = async { connecting.as_mut().expect("guarded by the branch condition").await },
                    if connecting.is_some() =>
                {
                    connecting = None;
                    match connected {
                        Ok(ws) => {
                            info!(url = %self.config.url, "connected");
                            socket = Some(ws);
                            backoff.reset();
                            ping_at = Some(tokio::time::Instant::now() + self.config.ping_interval);
                            self.core.on_connected(now());
                            self.status(ConnectionState::Connected);
                        }
                        Err(err) => {
                            debug!(url = %self.config.url, %err, "connect failed");
                            self.lost(&mut reconnect_at, &mut backoff);
                        }
                    }
                }
                frame = async { socket.as_mut().expect("guarded by the branch condition").next().await },
                    if socket.is_some() =>
                {
                    let lost = match frame {
                        Some(Ok(WsMessage::Binary(bytes))) => self.core.handle_frame(now(), &bytes).is_err(),
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => true,
                        Some(Ok(_)) => false,
                    };
                    if lost {
                        info!(url = %self.config.url, "disconnected");
                        socket = None;
                        ping_at = None;
                        self.lost(&mut reconnect_at, &mut backoff);
                    }
                }
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = tokio::time::Instant::now();
                    if reconnect_at.is_some_and(|at| at <= now) {
                        reconnect_at = None;
                        connecting = Some(self.connect());
                    }
                    if ping_at.is_some_and(|at| at <= now) {
                        ping_at = Some(now + self.config.ping_interval);
                        if let Some(ws) = socket.as_mut() {
                            // The 0.8.3 keep-alive: a text frame the server ignores.
                            let _ = ws.send(WsMessage::Text("__ping__".into())).await;
                        }
                    }
                    self.core.handle_timeout(now.into_std());
                }
            }
        }

        if let Some(mut ws) = socket {
            let _ = timeout(std::time::Duration::from_secs(1), ws.close(None)).await;
        }
        for (_, reply) in replies {
            let _ = reply.send(Err(SignalError::Closed));
        }
        self.status(ConnectionState::Closed);
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

    fn lost(&mut self, reconnect_at: &mut Option<tokio::time::Instant>, backoff: &mut Backoff) {
        self.core.on_disconnected();
        *reconnect_at = Some(tokio::time::Instant::now() + backoff.next_delay());
        self.status(ConnectionState::Disconnected);
    }

    fn status(&self, state: ConnectionState) {
        let _ = self.events.send(Event::Connection { url: self.config.url.clone(), state });
    }
}

async fn flush(ws: &mut Socket, core: &mut Core) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut wrote = false;
    while let Some(frame) = core.poll_transmit() {
        ws.feed(WsMessage::Binary(frame.into())).await?;
        wrote = true;
    }
    if wrote { ws.flush().await } else { Ok(()) }
}

/// The current time on tokio's clock, which tests may pause and advance.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
