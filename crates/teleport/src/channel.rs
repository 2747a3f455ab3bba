//! Channel handles: [`Port`] carries whole messages (as RPC does), [`Stream`] is a byte stream
//! (`AsyncRead` + `AsyncWrite`) over the same channel.
//!
//! Sending waits while the channel's send buffer is full, so a writer that outpaces the connection
//! is slowed down instead of growing memory. Receiving yields what arrived, then `None` (or EOF)
//! once the connection is closed. Dropping a handle stops delivery: later data for its tag is
//! dropped.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ChannelError;
use crate::muxer::{ChannelId, SendError};
use crate::payload::Payload;
use crate::shared::{Shared, add_waker};

/// The largest piece a [`Stream`] write sends as one message.
pub const STREAM_WRITE_CHUNK: usize = 64 << 10;

/// A message channel: each `send` arrives as one `recv` on the other side.
#[derive(Debug)]
pub struct Port {
    shared: Arc<Shared>,
    id: ChannelId,
    tag: String,
}

impl Port {
    pub(crate) fn new(shared: Arc<Shared>, id: ChannelId, tag: String) -> Self {
        Self { shared, id, tag }
    }

    /// The channel's tag (`<extension>/<channel>`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Our id for the channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Sends one message, waiting while the channel's send buffer is full. Before the remote opened
    /// the tag, messages wait in that buffer.
    pub async fn send(&self, message: Bytes) -> Result<(), ChannelError> {
        let mut message = Some(message);
        poll_fn(|cx| self.poll_send(cx, &mut message)).await
    }

    /// Sends without waiting: [`crate::muxer::SendError::Full`] when the buffer is full.
    pub fn try_send(&self, message: Bytes) -> Result<(), SendError> {
        let result = self.shared.lock().muxer.send(self.id, message);
        if result.is_ok() {
            self.shared.wake_driver.notify_one();
        }
        result
    }

    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        message: &mut Option<Bytes>,
    ) -> Poll<Result<(), ChannelError>> {
        let Some(data) = message.take() else { return Poll::Ready(Ok(())) };
        let mut state = self.shared.lock();
        // With frames already queued the driver is busy and comes back for more by itself.
        let driver_busy = state.muxer.has_transmit();
        match state.muxer.send(self.id, data.clone()) {
            Ok(()) => {
                drop(state);
                if !driver_busy {
                    self.shared.wake_driver.notify_one();
                }
                Poll::Ready(Ok(()))
            }
            Err(SendError::Full) => {
                if let Some(inbox) = state.inboxes.get_mut(&self.id) {
                    add_waker(&mut inbox.writers, cx.waker());
                }
                *message = Some(data);
                Poll::Pending
            }
            Err(SendError::Channel(err)) => Poll::Ready(Err(err)),
        }
    }

    /// The next message, or `None` once the connection is closed and everything that arrived was
    /// read.
    pub async fn recv(&self) -> Option<Bytes> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.poll_recv_payload(cx).map(|payload| payload.map(Payload::into_bytes))
    }

    /// The next message in the pieces it arrived in (no copy to join them).
    pub async fn recv_payload(&self) -> Option<Payload> {
        poll_fn(|cx| self.poll_recv_payload(cx)).await
    }

    /// Polls for the next message in the pieces it arrived in.
    pub fn poll_recv_payload(&self, cx: &mut Context<'_>) -> Poll<Option<Payload>> {
        let mut state = self.shared.lock();
        let (data, wake_driver) = state.pop(self.id);
        if wake_driver {
            self.shared.wake_driver.notify_one();
        }
        if data.is_some() {
            return Poll::Ready(data);
        }
        if state.closed.is_some() {
            return Poll::Ready(None);
        }
        match state.inboxes.get_mut(&self.id) {
            Some(inbox) => {
                add_waker(&mut inbox.readers, cx.waker());
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    /// Waits until the remote opened this channel's tag (or the connection closed: then `false`).
    pub async fn remote_opened(&self) -> bool {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.muxer.is_remote_open(self.id) {
                return Poll::Ready(true);
            }
            if state.closed.is_some() {
                return Poll::Ready(false);
            }
            if let Some(inbox) = state.inboxes.get_mut(&self.id) {
                add_waker(&mut inbox.opened, cx.waker());
            }
            Poll::Pending
        })
        .await
    }

    /// Waits until everything queued on this channel went to the transport (or the connection
    /// closed).
    pub async fn flushed(&self) {
        poll_fn(|cx| self.poll_flushed(cx)).await
    }

    /// Polls for everything queued on this channel having gone to the transport.
    pub fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.shared.lock();
        if state.muxer.queued_bytes(self.id) == 0 || state.closed.is_some() {
            return Poll::Ready(());
        }
        if let Some(inbox) = state.inboxes.get_mut(&self.id) {
            add_waker(&mut inbox.flushers, cx.waker());
        }
        Poll::Pending
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let wake = self.shared.lock().release(self.id);
        if wake {
            self.shared.wake_driver.notify_one();
        }
    }
}

/// A byte stream over a channel. Writes go out as messages of at most [`STREAM_WRITE_CHUNK`]
/// bytes; reads return the bytes in order. `flush` waits until the channel's queued bytes went to
/// the transport. The wire has no half-close: `shutdown` only flushes.
#[derive(Debug)]
pub struct Stream {
    port: Port,
    /// The rest of the message being read, in pieces.
    pending: std::collections::VecDeque<Bytes>,
}

impl Stream {
    pub(crate) fn new(port: Port) -> Self {
        Self { port, pending: std::collections::VecDeque::new() }
    }

    /// The underlying message port.
    pub fn port(&self) -> &Port {
        &self.port
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.port.poll_recv_payload(cx) {
                Poll::Ready(Some(data)) => self.pending.extend(data.into_parts()),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Fill the caller's buffer from as many pieces as fit.
        while buf.remaining() > 0 {
            let Some(front) = self.pending.front_mut() else { break };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.pending.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n =
            buf.len().min(STREAM_WRITE_CHUNK).min(self.port.shared.lock().muxer.config().max_message_size);
        let mut message = Some(Bytes::copy_from_slice(&buf[..n]));
        match self.port.poll_send(cx, &mut message) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(err)) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, err))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits until this channel's queued bytes went to the transport.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.port.poll_flushed(cx).map(Ok)
    }

    /// Flushes; the wire has no half-close, so the channel stays open for reading.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.port.poll_flushed(cx).map(Ok)
    }
}
