//! A data channel as a byte stream.
//!
//! webrtc's data channel is message-based with async `send` and `poll`, so two pump tasks sit
//! between it and the `AsyncRead`/`AsyncWrite` halves:
//!
//! - the reader pump takes messages from `poll()` and queues their bytes for `poll_read`;
//! - the writer pump takes chunks queued by `poll_write` and `send`s them one at a time.
//!
//! They are separate tasks because a `send` must never be raced against `poll` in a `select!`:
//! a cancelled `send` can drop a message. Memory is bounded both ways: the queues hold a few
//! messages, and the writer pump stops sending once the channel's buffered amount (bytes SCTP
//! has not had acknowledged) reaches a high-water mark, and resumes when it falls below a
//! low-water mark, as a browser sender does with `bufferedAmount` and `bufferedamountlow`. A fast
//! writer is held back by the network rather than buffered, and resumes with enough queued to
//! keep the link busy.
//!
//! Data channels have no half-close: `poll_shutdown` closes the channel both ways, after the
//! queued chunks are sent. Reads end (EOF) when the channel or the connection closes, and when
//! the stream is dropped the whole connection is closed.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{Notify, mpsc},
};
use tokio_util::{
    sync::{CancellationToken, DropGuard, PollSender, WaitForCancellationFutureOwned},
    task::TaskTracker,
};
use tracing::debug;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

/// Largest data channel message: the SDP's default `max-message-size` is 65536, and webrtc
/// refuses larger messages. Full-size messages keep the per-message overhead low.
pub(crate) const MESSAGE_SIZE: usize = 64 * 1024;

/// Messages received and not yet read. When full, the reader pump stops polling the channel,
/// webrtc stops delivering, and SCTP's receive window closes on the remote.
const READ_QUEUE: usize = 16;

/// Chunks written and not yet handed to the data channel.
const WRITE_QUEUE: usize = 4;

/// Buffered bytes at which the writer pump stops sending: enough in flight to keep a fast link
/// busy (about 150 MB/s on loopback in release builds) without holding much memory.
pub(crate) const HIGH_WATER: usize = 1024 * 1024;

/// Buffered bytes below which a held-back writer pump sends again.
const LOW_WATER: usize = 256 * 1024;

/// How often a waiting writer rechecks the buffered amount if no "buffered amount low" event
/// comes (the reader pump, which sees the events, may be held up by a full read queue).
const DRAIN_RECHECK: Duration = Duration::from_millis(20);

/// A data channel as `AsyncRead + AsyncWrite`.
pub(crate) struct DataChannelStream {
    incoming: mpsc::Receiver<Bytes>,
    unread: Bytes,
    outgoing: PollSender<BytesMut>,
    /// Fires when the writer pump has sent everything and closed the channel.
    written: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Closes the connection when the stream is dropped.
    _connection: DropGuard,
}

impl std::fmt::Debug for DataChannelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannelStream").field("unread", &self.unread.len()).finish_non_exhaustive()
    }
}

impl DataChannelStream {
    /// Starts the pumps for an open channel on `tasks`. They stop when `stop` fires, which the
    /// stream itself does when dropped.
    pub(crate) fn new(channel: Arc<dyn DataChannel>, tasks: &TaskTracker, stop: CancellationToken) -> Self {
        let (to_reader, incoming) = mpsc::channel(READ_QUEUE);
        let (outgoing, from_writer) = mpsc::channel(WRITE_QUEUE);
        let written = CancellationToken::new();
        let drained = Arc::new(Notify::new());
        tasks.spawn(read_pump(channel.clone(), to_reader, drained.clone(), stop.clone()));
        tasks.spawn(write_pump(channel, from_writer, drained, stop.clone(), written.clone()));
        Self {
            incoming,
            unread: Bytes::new(),
            outgoing: PollSender::new(outgoing),
            written: Box::pin(written.cancelled_owned()),
            _connection: stop.drop_guard(),
        }
    }
}

/// Moves received messages into the read queue until the channel closes, and passes on that the
/// buffered amount fell below the channel's low threshold.
async fn read_pump(
    channel: Arc<dyn DataChannel>,
    incoming: mpsc::Sender<Bytes>,
    drained: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = channel.poll() => event,
        };
        match event {
            Some(DataChannelEvent::OnMessage(message)) => {
                if message.data.is_empty() {
                    continue;
                }
                let queued = tokio::select! {
                    () = stop.cancelled() => return,
                    queued = incoming.send(message.data.freeze()) => queued,
                };
                if queued.is_err() {
                    return; // The stream is gone.
                }
            }
            Some(DataChannelEvent::OnBufferedAmountLow) => drained.notify_one(),
            Some(DataChannelEvent::OnClose) | None => {
                debug!("data channel closed");
                return;
            }
            Some(_) => {}
        }
    }
}

/// Sends queued chunks in order; closes the channel once the stream is shut down.
async fn write_pump(
    channel: Arc<dyn DataChannel>,
    mut outgoing: mpsc::Receiver<BytesMut>,
    drained: Arc<Notify>,
    stop: CancellationToken,
    written: CancellationToken,
) {
    let _written = written.drop_guard();
    if let Err(err) = channel.set_buffered_amount_low_threshold(LOW_WATER as u32).await {
        debug!(%err, "setting the data channel's low-water mark");
    }
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return,
            chunk = outgoing.recv() => chunk,
        };
        let Some(chunk) = chunk else {
            // Shut down: everything queued was handed to SCTP before this. Closing resets the
            // stream at once, dropping what SCTP has not delivered yet, so wait for that first.
            let _ = channel.set_buffered_amount_low_threshold(0).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = drain_below(&*channel, &drained, 1) => {}
            }
            if let Err(err) = channel.close().await {
                debug!(%err, "closing the data channel");
            }
            return;
        };
        if channel.outstanding_bytes().await.is_ok_and(|buffered| buffered >= HIGH_WATER) {
            tokio::select! {
                () = stop.cancelled() => return,
                () = drain_below(&*channel, &drained, LOW_WATER) => {}
            }
        }
        // Not raced against anything: `send` returns once the chunk is queued in SCTP, or
        // fails when the connection closes, which also happens when `stop` fires.
        if let Err(err) = channel.send(chunk).await {
            debug!(%err, "data channel send failed");
            return;
        }
    }
}

/// Waits until the channel's buffered amount is below `mark` (or the channel is gone).
async fn drain_below(channel: &dyn DataChannel, drained: &Notify, mark: usize) {
    while let Ok(outstanding) = channel.outstanding_bytes().await
        && outstanding >= mark
    {
        let _ = tokio::time::timeout(DRAIN_RECHECK, drained.notified()).await;
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "data channel closed")
}

impl AsyncRead for DataChannelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            match ready!(self.incoming.poll_recv(cx)) {
                Some(message) => self.unread = message,
                None => return Poll::Ready(Ok(())), // EOF
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for DataChannelStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.outgoing.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = data.len().min(MESSAGE_SIZE);
        self.outgoing.send_item(BytesMut::from(&data[..n])).map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    /// Writes are handed to the writer pump as they are made; there is nothing to flush that
    /// waiting here would make safer, since a data channel's own buffer is drained by SCTP.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.close();
        self.written.as_mut().poll(cx).map(Ok)
    }
}
