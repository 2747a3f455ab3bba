//! The task that drives one WebSocket connection: it feeds client frames to the [`Session`], writes
//! what the session and the hub produce, and closes the connection on idleness, overload, protocol
//! violations and server shutdown.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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

/// Frames fed before flushing, so a busy connection cannot delay a flush indefinitely.
const WRITE_BATCH: usize = 64;
/// Writes that yield before flushing after a write that carried several frames.
const YIELDING_WRITES: u32 = 16;
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Idle,
    Overloaded,
    ShuttingDown,
    Aborted,
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
    let overloaded = Arc::new(AtomicBool::new(false));
    let endpoint = Endpoint { conn, tx, overloaded: overloaded.clone() };
    let mut session = Session::new(endpoint, host, shared.config.auth, limits.clone(), Instant::now());
    shared.metrics.connections.inc();
    debug!(conn, "connection opened");

    // These futures are polled on every wake-up, so they are made once rather than per loop, and
    // the connection watches a child of the server-wide shutdown token: polling a token locks its
    // node, and a node per connection keeps connections from contending for one lock.
    let shutdown = shutdown.child_token();
    let stopping = shutdown.cancelled();
    // The idle timer is re-armed when it fires rather than on every frame.
    let mut last_input = tokio::time::Instant::now();
    let idle = sleep_until(last_input + limits.idle_timeout);
    tokio::pin!(stopping, idle);
    // Frames fed to the WebSocket since the last flush. They go out together when nothing else is
    // ready (or a batch is full): under load, replies and deliveries share socket writes.
    let mut unflushed = 0;
    // Whether the task already let the others run once since it last had nothing ready, and how
    // many more writes may still yield first: a write that carried several frames (load) grants
    // [`YIELDING_WRITES`], so a lightly loaded server does not pay for a yield per write.
    let mut yielded = false;
    let mut yields_left = 0;
    let ending = loop {
        // Set when the queue was full: the rx branch has frames, so the task wakes to see it.
        if overloaded.load(Ordering::Relaxed) {
            break Ending::Overloaded;
        }
        tokio::select! {
            biased;
            // An abort cancels `aborted` before the shutdown token, so it is visible here.
            () = &mut stopping => {
                break if shared.aborted.is_cancelled() { Ending::Aborted } else { Ending::ShuttingDown }
            }
            // Finish delivering what others sent before taking new requests.
            Some(outbound) = rx.recv() => {
                match feed_outbound(&mut ws, &mut session, outbound, &mut rx).await {
                    Ok(fed) => unflushed += fed,
                    Err(err) => break Ending::Transport(err.to_string()),
                }
            }
            incoming = ws.next() => {
                last_input = tokio::time::Instant::now();
                match incoming {
                    None | Some(Ok(WsMessage::Close(_))) => break Ending::ClientClosed,
                    Some(Ok(WsMessage::Binary(frame))) => {
                        match session.handle(&frame, Instant::now(), SystemTime::now(), &shared.hub, &shared.metrics) {
                            Ok(replies) => match feed_all(&mut ws, replies).await {
                                Ok(fed) => unflushed += fed,
                                Err(err) => break Ending::Transport(err.to_string()),
                            },
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
            () = &mut idle => {
                let deadline = last_input + limits.idle_timeout;
                if deadline <= tokio::time::Instant::now() {
                    break Ending::Idle;
                }
                idle.as_mut().reset(deadline);
            }
            // Nothing above is ready. Under load, first let the other tasks run once (a yield puts
            // this one behind them): they often queue more frames for this connection, which then
            // share its write. Then write out what was fed.
            () = std::future::ready(()), if unflushed > 0 => {
                if !yielded && yields_left > 0 {
                    yielded = true;
                    tokio::task::yield_now().await;
                    continue;
                }
                if let Err(err) = ws.flush().await {
                    break Ending::Transport(err.to_string());
                }
                yields_left = if unflushed > 1 { YIELDING_WRITES } else { yields_left.saturating_sub(1) };
                (unflushed, yielded) = (0, false);
            }
        }
        if unflushed >= WRITE_BATCH {
            if let Err(err) = ws.flush().await {
                break Ending::Transport(err.to_string());
            }
            (unflushed, yielded, yields_left) = (0, false, YIELDING_WRITES);
        }
    };

    session.close(&shared.hub);
    shared.metrics.connections.dec();
    let close = match &ending {
        Ending::ClientClosed | Ending::Transport(_) | Ending::Aborted => None,
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

/// Feeds `frames` to the WebSocket without flushing; returns how many.
async fn feed_all<S>(
    ws: &mut WebSocketStream<S>,
    frames: Vec<Vec<u8>>,
) -> Result<usize, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let count = frames.len();
    for frame in frames {
        ws.feed(WsMessage::Binary(frame.into())).await?;
    }
    Ok(count)
}

/// Feeds `first` and whatever else is already queued (up to a batch) without flushing; returns
/// how many frames it fed.
async fn feed_outbound<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut Session,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Result<usize, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut fed = 0;
    while let Some(outbound) = next.take() {
        if let Some(frame) = session.outbound(outbound) {
            ws.feed(WsMessage::Binary(frame.into())).await?;
            fed += 1;
        }
        if fed < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    Ok(fed)
}

fn is_capacity_error(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_))
}
