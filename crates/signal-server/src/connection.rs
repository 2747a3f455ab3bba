//! The task that drives one WebSocket connection: it feeds client frames to the [`Session`], writes
//! what the session and the hub produce, and closes the connection on idleness, overload, protocol
//! violations and server shutdown.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
    time::{sleep_until, timeout},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message as WsMessage,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    hub::{Endpoint, Outbound},
    server::Shared,
    session::{Session, Violation},
};

/// Frames written before flushing, so one busy stream cannot delay a flush indefinitely.
const WRITE_BATCH: usize = 64;
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Idle,
    Overloaded,
    ShuttingDown,
    Violation(Violation),
    Transport(String),
}

pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    host: String,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = shared.next_connection_id();
    let limits = shared.config.limits.clone();
    let (tx, mut rx) = mpsc::channel(limits.send_queue);
    let overloaded = CancellationToken::new();
    let endpoint = Endpoint { conn, tx, overloaded: overloaded.clone() };
    let mut session = Session::new(endpoint, host, shared.config.auth, limits.clone(), Instant::now());
    shared.metrics.connections.inc();
    debug!(conn, "connection opened");

    let mut idle_deadline = tokio::time::Instant::now() + limits.idle_timeout;
    let ending = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ending::ShuttingDown,
            () = overloaded.cancelled() => break Ending::Overloaded,
            // Finish delivering what others sent before taking new requests.
            Some(outbound) = rx.recv() => {
                if let Err(err) = write_outbound(&mut ws, &mut session, outbound, &mut rx).await {
                    break Ending::Transport(err.to_string());
                }
            }
            incoming = ws.next() => {
                idle_deadline = tokio::time::Instant::now() + limits.idle_timeout;
                match incoming {
                    None | Some(Ok(WsMessage::Close(_))) => break Ending::ClientClosed,
                    Some(Ok(WsMessage::Binary(frame))) => {
                        match session.handle(&frame, Instant::now(), SystemTime::now(), &shared.hub, &shared.metrics) {
                            Ok(replies) => {
                                if let Err(err) = write_all(&mut ws, replies).await {
                                    break Ending::Transport(err.to_string());
                                }
                            }
                            Err(violation) => {
                                shared.metrics.frames_rejected.inc();
                                break Ending::Violation(violation);
                            }
                        }
                    }
                    // `__ping__` keep-alives (and any other text) only reset the idle timer.
                    Some(Ok(WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                    Some(Err(err)) => {
                        if is_capacity_error(&err) {
                            shared.metrics.frames_rejected.inc();
                        }
                        break Ending::Transport(err.to_string());
                    }
                }
            }
            () = sleep_until(idle_deadline) => break Ending::Idle,
        }
    };

    session.close(&shared.hub);
    shared.metrics.connections.dec();
    let close = match &ending {
        Ending::ClientClosed | Ending::Transport(_) => None,
        Ending::Idle => Some((CloseCode::Normal, "idle".to_owned())),
        Ending::Overloaded => Some((CloseCode::Again, "send queue full".to_owned())),
        Ending::ShuttingDown => Some((CloseCode::Away, "server shutting down".to_owned())),
        Ending::Violation(violation) => Some((CloseCode::Protocol, violation.to_string())),
    };
    match &ending {
        Ending::Violation(violation) => info!(conn, %violation, "closing connection"),
        Ending::Transport(err) => debug!(conn, %err, "connection failed"),
        other => debug!(conn, ending = ?other, "connection closed"),
    }
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = timeout(CLOSE_GRACE, ws.close(Some(frame))).await;
    }
}

async fn write_all<S>(
    ws: &mut WebSocketStream<S>,
    frames: Vec<Vec<u8>>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if frames.is_empty() {
        return Ok(());
    }
    for frame in frames {
        ws.feed(WsMessage::Binary(frame.into())).await?;
    }
    ws.flush().await
}

/// Writes `first` and whatever else is already queued (up to a batch), then flushes once.
async fn write_outbound<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut Session,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut written = 0;
    while let Some(outbound) = next.take() {
        if let Some(frame) = session.outbound(outbound) {
            ws.feed(WsMessage::Binary(frame.into())).await?;
            written += 1;
        }
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    if written > 0 { ws.flush().await } else { Ok(()) }
}

fn is_capacity_error(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_))
}
