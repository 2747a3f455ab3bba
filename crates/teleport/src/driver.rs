//! The tokio driver: one task per connection that moves bytes between a transport
//! (`AsyncRead + AsyncWrite`) and the sans-IO [`Muxer`](crate::muxer::Muxer).
//!
//! Each turn it lets the muxer take frames it held back (if readers made room), fill the write
//! buffer, delivers the muxer's events, then waits for whichever comes first: the socket is
//! readable (only while the muxer wants input: unread data over the receive limits pauses it), the
//! socket took some bytes, a handle has something to send, the muxer's timer, or cancellation
//! (which destroys the connection). Each read goes into a fresh buffer handed to the muxer whole,
//! so the muxer knows what slices of it keep alive. Reads and writes are both in the same `select!`, so two peers that write at the
//! same time cannot deadlock. Frames go out with vectored writes when the transport has them.
//! After the muxer closed, the driver flushes what is left (a `Close`)
//! for up to the close timeout, shuts the write half down and ends.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::muxer::{CloseReason, Muxer};
use crate::payload::Segments;
use crate::shared::{Shared, now};

/// Bytes the driver asks the muxer for per write.
const WRITE_BATCH: usize = 256 << 10;
/// Bytes the driver reads per read call.
const READ_BATCH: usize = 128 << 10;

pub(crate) async fn run<IO>(io: IO, shared: Arc<Shared>, cancel: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut out = if writer.is_write_vectored() {
        Out::Vectored(Segments::new())
    } else {
        Out::Flat(BytesMut::with_capacity(WRITE_BATCH + (16 << 10)))
    };
    let mut input = BytesMut::with_capacity(READ_BATCH);
    let mut eof = false;
    let mut cancelled = false;
    let mut timer = Timer::new();
    loop {
        let (read_allowed, timeout, closed) = shared.update(|state| {
            let now = now();
            if state.muxer.has_held_input() {
                state.muxer.handle_input(now, &[]);
            }
            if state.muxer.poll_timeout().is_some_and(|t| t <= now) {
                state.muxer.handle_timeout(now);
            }
            if out.is_empty() {
                out.fill(&mut state.muxer);
            }
            (state.muxer.wants_input(), state.muxer.poll_timeout(), state.muxer.is_closed())
        });
        if closed {
            break;
        }
        timer.arm(timeout);
        tokio::select! {
            _ = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                shared.update(|state| state.muxer.destroy(None));
            }
            written = out.write_some(&mut writer), if !out.is_empty() => match written {
                Ok(0) => fail(&shared, CloseReason::Io("the transport accepts no more bytes".into())),
                Ok(n) => out.advance(n),
                Err(err) => fail(&shared, CloseReason::Io(err.to_string())),
            },
            read = reader.read_buf(&mut input), if read_allowed && !eof => match read {
                Ok(0) => {
                    eof = true;
                    shared.update(|state| state.muxer.handle_eof());
                }
                Ok(_) => {
                    let data = std::mem::replace(&mut input, BytesMut::with_capacity(READ_BATCH));
                    shared.update(|state| state.muxer.handle_input_owned(now(), data));
                }
                Err(err) => fail(&shared, CloseReason::Io(err.to_string())),
            },
            _ = shared.wake_driver.notified() => {}
            () = timer.fired() => {}
        }
    }
    // Closed: send what is left (a Close) if the transport still takes it, then hang up.
    let flush = async {
        loop {
            if out.is_empty() && !shared.update(|state| out.fill(&mut state.muxer)) {
                break;
            }
            while !out.is_empty() {
                let n = out.write_some(&mut writer).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                out.advance(n);
            }
        }
        writer.shutdown().await
    };
    let close_timeout = shared.lock().muxer.config().close_timeout;
    let _ = tokio::time::timeout(close_timeout, flush).await;
}

/// Bytes waiting for the transport: pieces for vectored writes when it has them (message data is
/// then never copied in user space on the way out), one buffer otherwise.
enum Out {
    Flat(BytesMut),
    Vectored(Segments),
}

impl Out {
    fn is_empty(&self) -> bool {
        match self {
            Out::Flat(buf) => buf.is_empty(),
            Out::Vectored(segments) => segments.is_empty(),
        }
    }

    fn fill(&mut self, muxer: &mut Muxer) -> bool {
        match self {
            Out::Flat(buf) => muxer.poll_transmit(buf, WRITE_BATCH),
            Out::Vectored(segments) => muxer.poll_transmit(segments, WRITE_BATCH),
        }
    }

    /// One write call (cancel-safe: nothing is written unless it completes).
    async fn write_some<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<usize> {
        match self {
            Out::Flat(buf) => writer.write(buf).await,
            Out::Vectored(segments) => {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = segments.io_slices(&mut slices);
                writer.write_vectored(&slices[..n]).await
            }
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Out::Flat(buf) => buf.advance(n),
            Out::Vectored(segments) => segments.advance(n),
        }
    }
}

fn fail(shared: &Shared, reason: CloseReason) {
    shared.update(|state| state.muxer.fail(reason));
}

/// The muxer's timer as one tokio sleep that is moved only when the deadline comes earlier: a
/// partial message's deadline moves later with every chunk, and re-registering a sleep on every
/// turn of a bulk transfer would cost more than the one early wake-up this allows.
struct Timer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: Option<std::time::Instant>,
}

impl Timer {
    fn new() -> Self {
        Self { sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)), armed: None }
    }

    fn arm(&mut self, deadline: Option<std::time::Instant>) {
        match (deadline, self.armed) {
            (None, _) => self.armed = None,
            (Some(deadline), Some(armed)) if armed <= deadline => {}
            (Some(deadline), _) => {
                self.sleep.as_mut().reset(Instant::from_std(deadline));
                self.armed = Some(deadline);
            }
        }
    }

    /// Resolves when the armed deadline passes (never while none is armed).
    async fn fired(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }
}
