//! The task that drives one WebSocket connection: it feeds client frames to the [`Session`], writes
//! what the session and the hub produce, and closes the connection on idleness, a stalled write,
//! protocol violations and server shutdown.

use std::{
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
    time::{Duration, Instant, SystemTime},
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
        Error as WsError, Message as WsMessage,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{debug, info};

use crate::{
    hub::{Endpoint, Outbound},
    mailbox::Mailbox,
    server::Shared,
    session::{Session, Violation},
};

/// Frames fed before flushing, so a busy connection cannot delay a flush indefinitely.
const WRITE_BATCH: usize = 64;
/// Writes that yield before flushing after a write that carried several frames.
const YIELDING_WRITES: u32 = 16;
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Longest close reason, in bytes, that fits a WebSocket close frame.
const MAX_CLOSE_REASON: usize = 123;

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Idle,
    /// A write to the client stalled past the write timeout: it does not read.
    WriteTimedOut,
    /// The server shuts down. `writing`: a write was stalled, so a close frame cannot get through.
    ShuttingDown {
        writing: bool,
    },
    Aborted,
    Violation(Violation),
    Transport(String),
}

/// Why a write did not finish.
enum Interrupted {
    TimedOut,
    Stopping,
    Failed(WsError),
}

impl Interrupted {
    fn ending(self, shared: &Shared) -> Ending {
        match self {
            Self::TimedOut => Ending::WriteTimedOut,
            Self::Stopping if shared.aborted.is_cancelled() => Ending::Aborted,
            Self::Stopping => Ending::ShuttingDown { writing: true },
            Self::Failed(err) => Ending::Transport(err.to_string()),
        }
    }
}

/// Runs one write to the client: done at once if the socket takes it, as almost every write is;
/// otherwise raced against the write timeout and the server stopping, so that a client that does
/// not read can hold neither its connection nor a shutdown. The caller pins the write: taken by
/// value, it would be stored twice in every connection's task.
async fn bounded<T>(
    mut write: Pin<&mut impl Future<Output = Result<T, WsError>>>,
    limit: Duration,
    stopping: Pin<&mut WaitForCancellationFuture<'_>>,
) -> Result<T, Interrupted> {
    // The fast path needs neither a timer nor a look at the shutdown token.
    if let Poll::Ready(result) = futures::poll!(write.as_mut()) {
        return result.map_err(Interrupted::Failed);
    }
    // Boxed: only a stalled write needs the timer, and every connection's task would otherwise
    // reserve room for it.
    let deadline = Box::pin(tokio::time::sleep(limit));
    tokio::select! {
        biased;
        result = write => result.map_err(Interrupted::Failed),
        () = stopping => Err(Interrupted::Stopping),
        () = deadline => Err(Interrupted::TimedOut),
    }
}

/// Runs the connection until it ends. Not an `async fn`: that would store `ws`, the largest part
/// of every connection's task, twice (once as the argument, once as the body's copy).
#[allow(clippy::manual_async_fn, reason = "an async fn would store `ws` twice")]
pub(crate) fn run<S>(
    mut ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    authority: Arc<str>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let conn = shared.next_connection_id();
        let limits = &shared.config.limits;
        // A client that never reads is gone within the idle timeout at the latest.
        let write_timeout = limits.write_timeout.min(limits.idle_timeout);
        let (tx, mut rx) = mpsc::channel(limits.send_queue);
        let mailbox = Arc::new(Mailbox::default());
        let endpoint = Endpoint { conn, tx, mailbox: mailbox.clone() };
        let mut session = Session::new(endpoint, authority, shared.config.auth, limits, Instant::now());
        shared.metrics.connections.inc();
        debug!(conn, "connection opened");

        // These futures are polled on every wake-up, so they are made once rather than per loop.
        // `shutdown` is this connection's own child of the server-wide token.
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
        // Runs one bounded write (see [`bounded`]); a write that does not finish ends the loop.
        macro_rules! write_or_end {
            ($write:expr) => {
                match bounded(pin!($write), write_timeout, stopping.as_mut()).await {
                    Ok(written) => written,
                    Err(interrupted) => break interrupted.ending(&shared),
                }
            };
        }
        let ending = loop {
            // Swarm events and withdrawals first: whatever piled up since the last look goes out
            // as one coalesced snapshot.
            if mailbox.is_ready() {
                let frames = session.delivery(mailbox.take());
                unflushed += write_or_end!(feed_all(&mut ws, frames));
            }
            tokio::select! {
                biased;
                // An abort cancels `aborted` before the shutdown token, so it is visible here.
                () = &mut stopping => {
                    break if shared.aborted.is_cancelled() {
                        Ending::Aborted
                    } else {
                        Ending::ShuttingDown { writing: false }
                    }
                }
                // Finish delivering what others sent before taking new requests.
                Some(outbound) = rx.recv() => {
                    unflushed += write_or_end!(feed_outbound(&mut ws, &session, outbound, &mut rx));
                }
                incoming = ws.next() => {
                    last_input = tokio::time::Instant::now();
                    let replies = match on_incoming(incoming, &mut session, &shared) {
                        Ok(replies) => replies,
                        Err(ending) => break ending,
                    };
                    unflushed += write_or_end!(feed_all(&mut ws, replies));
                }
                () = &mut idle => {
                    let deadline = last_input + limits.idle_timeout;
                    if deadline <= tokio::time::Instant::now() {
                        break Ending::Idle;
                    }
                    idle.as_mut().reset(deadline);
                }
                // Nothing above is ready. Under load, first let the other tasks run once (a yield
                // puts this one behind them): they often queue more frames for this connection,
                // which then share its write. Then write out what was fed.
                () = std::future::ready(()), if unflushed > 0 => {
                    if !yielded && yields_left > 0 {
                        yielded = true;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    write_or_end!(ws.flush());
                    yields_left = if unflushed > 1 { YIELDING_WRITES } else { yields_left.saturating_sub(1) };
                    (unflushed, yielded) = (0, false);
                }
            }
            if unflushed >= WRITE_BATCH {
                write_or_end!(ws.flush());
                (unflushed, yielded, yields_left) = (0, false, YIELDING_WRITES);
            }
        };

        session.close(&shared.hub);
        shared.metrics.connections.dec();
        if matches!(ending, Ending::WriteTimedOut) {
            shared.metrics.writes_timed_out.inc();
        }
        let close = match &ending {
            Ending::ClientClosed
            | Ending::Transport(_)
            | Ending::Aborted
            | Ending::WriteTimedOut
            | Ending::ShuttingDown { writing: true } => None,
            Ending::Idle => Some((CloseCode::Normal, "idle".to_owned())),
            Ending::ShuttingDown { writing: false } => {
                Some((CloseCode::Away, "server shutting down".to_owned()))
            }
            Ending::Violation(violation) => Some((CloseCode::Protocol, violation.to_string())),
        };
        match &ending {
            Ending::Violation(violation) => info!(conn, %violation, "closing connection"),
            Ending::Transport(err) => debug!(conn, %err, "connection failed"),
            other => debug!(conn, ending = ?other, "connection closed"),
        }
        if let Some((code, mut reason)) = close {
            // A close frame carries at most 125 bytes, two of them the code: a longer reason would
            // make the client fail the connection instead of reading the code.
            if reason.len() > MAX_CLOSE_REASON {
                let end = (0..=MAX_CLOSE_REASON).rev().find(|&end| reason.is_char_boundary(end)).unwrap_or(0);
                reason.truncate(end);
            }
            let frame = CloseFrame { code, reason: reason.into() };
            // The close handshake gets a grace period, and none at all once the server is aborted.
            tokio::select! {
                _ = timeout(CLOSE_GRACE, ws.close(Some(frame))) => {}
                () = shared.aborted.cancelled() => {}
            }
        }
    }
}

/// Handles what the client sent: returns the replies to write, or why the connection ends.
fn on_incoming(
    incoming: Option<Result<WsMessage, WsError>>,
    session: &mut Session,
    shared: &Shared,
) -> Result<Vec<Vec<u8>>, Ending> {
    match incoming {
        None | Some(Ok(WsMessage::Close(_))) => Err(Ending::ClientClosed),
        Some(Ok(WsMessage::Binary(frame))) => session
            .handle(&frame, Instant::now(), SystemTime::now(), &shared.hub, &shared.metrics)
            .map_err(|violation| {
                shared.metrics.frames_rejected.inc();
                Ending::Violation(violation)
            }),
        // `__ping__` keep-alives (and any other text) only reset the idle timer.
        Some(Ok(WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
            Ok(Vec::new())
        }
        Some(Err(err)) => {
            if is_capacity_error(&err) {
                shared.metrics.frames_rejected.inc();
            }
            Err(Ending::Transport(err.to_string()))
        }
    }
}

/// Feeds `frames` to the WebSocket without flushing; returns how many.
async fn feed_all<S>(ws: &mut WebSocketStream<S>, frames: Vec<Vec<u8>>) -> Result<usize, WsError>
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
    session: &Session,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Result<usize, WsError>
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

fn is_capacity_error(err: &WsError) -> bool {
    matches!(err, WsError::Capacity(_))
}
