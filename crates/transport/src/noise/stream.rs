//! The byte stream of a connection after its Noise handshake.
//!
//! Each direction is a sequence of frames: a 2-byte big-endian length, then that many bytes of
//! ciphertext, at most 65,535 (Noise's message limit): up to 65,519 bytes of plaintext and a
//! 16-byte tag. Noise numbers the frames implicitly (its nonces), so a frame that was changed,
//! dropped, repeated or reordered fails to decrypt, and the stream ends with an error; so does
//! a frame too short to hold a tag, and the connection closing inside a frame.
//!
//! Reads decrypt in the reader's task. Bytes come off the socket in reads of up to two frames and
//! are decrypted straight into the caller's buffer when it has room for a whole frame (Teleport
//! reads 128 KiB at a time), or into a one-frame buffer that later reads drain.
//!
//! Writes encrypt in the writer's task, one frame per `poll_write`, and queue the frame for a
//! writer task that owns the socket's write half. So the bytes of a write go out without the
//! caller flushing: Teleport, like the other transports' users, writes and never flushes, and a
//! stream that held encrypted bytes back until the next write could hold a message back for
//! good. The queue is a few frames long: memory stays bounded, and a writer whose remote does not
//! read is held back by TCP. Written frames' buffers go back to the stream for reuse.
//!
//! `poll_shutdown` waits until the queued frames are written, then shuts the socket's write half
//! (the remote reads EOF). Dropping the stream stops the writer task at once, dropping frames it
//! had not written: shut a stream down to deliver everything, as Teleport does.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use snow::TransportState;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::mpsc,
};
use tokio_util::sync::{CancellationToken, DropGuard, PollSender, WaitForCancellationFutureOwned};
use tracing::debug;

/// The length prefix of a frame.
pub(super) const HEADER_LEN: usize = 2;
/// Noise's longest message: a frame's ciphertext at most.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// The authentication tag at the end of each frame's ciphertext.
const TAG_LEN: usize = 16;
/// The most plaintext one frame carries.
pub(super) const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// A whole frame at most.
const MAX_FRAME: usize = HEADER_LEN + MAX_MESSAGE;
/// Received bytes held for decryption at first: room for a partial frame and a whole one after
/// it, so one read from the socket can finish a frame and bring the next.
const RECEIVE_BUFFER_MIN: usize = 2 * MAX_FRAME;
/// Received bytes held at most. A buffer that a read filled doubles up to this: a bulk transfer
/// then reads half a MiB per system call (a third fewer calls than with 128 KiB, and about a
/// fifth more throughput on loopback), while a quiet connection keeps the small buffer.
const RECEIVE_BUFFER_MAX: usize = 8 * MAX_FRAME;
/// Frames encrypted and not yet written to the socket, and so also the most frames written in
/// one system call: up to half a MiB, for the same reason.
const WRITE_QUEUE: usize = 8;

/// An encrypted stream over a reader and a writer that carry frames.
pub(super) struct NoiseStream<R> {
    cipher: TransportState,
    reader: R,
    /// Received ciphertext: `received[start..end]` is not decrypted yet.
    received: Vec<u8>,
    start: usize,
    end: usize,
    /// The plaintext of a frame the caller had no room for; `plain[plain_read..]` is unread.
    plain: Vec<u8>,
    plain_read: usize,
    /// Set when a frame failed to decrypt or the stream ended inside one: nothing after can be
    /// read.
    broken: bool,
    /// Frames for the writer task, and the buffers of frames it wrote.
    frames: PollSender<Vec<u8>>,
    spare: mpsc::Receiver<Vec<u8>>,
    /// Fires when the writer task ended (after shutting the write half, or on an error).
    written: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Stops the writer task when the stream is dropped.
    _writer: DropGuard,
}

impl<R> std::fmt::Debug for NoiseStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseStream").field("received", &(self.end - self.start)).finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> NoiseStream<R> {
    /// The stream over `reader` and `writer` with the handshake's `cipher`; starts the writer
    /// task, so it needs a tokio runtime.
    pub(super) fn new<W>(reader: R, writer: W, cipher: TransportState) -> Self
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (frames, queued) = mpsc::channel(WRITE_QUEUE);
        let (recycle, spare) = mpsc::channel(WRITE_QUEUE);
        let (stop, done) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn({
            let (stop, done) = (stop.clone(), done.clone());
            async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    result = write_frames(writer, queued, recycle) => {
                        if let Err(err) = result {
                            debug!(%err, "noise stream: writing to the socket failed");
                        }
                    }
                }
                done.cancel();
            }
        });
        Self {
            cipher,
            reader,
            received: vec![0u8; RECEIVE_BUFFER_MIN],
            start: 0,
            end: 0,
            plain: Vec::new(),
            plain_read: 0,
            broken: false,
            frames: PollSender::new(frames),
            spare,
            written: Box::pin(done.cancelled_owned()),
            _writer: stop.drop_guard(),
        }
    }

    /// The ciphertext length of the first received frame, if all of it is here.
    fn whole_frame(&self) -> Option<usize> {
        let received = &self.received[self.start..self.end];
        let header = received.get(..HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        (received.len() >= HEADER_LEN + len).then_some(len)
    }

    /// Makes room after the received bytes for the rest of the partial frame they end with.
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.received.len() - self.start < MAX_FRAME {
            self.received.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
    }
}

/// Decrypts one frame's `ciphertext` into `out`, which has room for all of it (ring wants that);
/// the plaintext's length.
fn decrypt(cipher: &mut TransportState, ciphertext: &[u8], out: &mut [u8]) -> io::Result<usize> {
    cipher
        .read_message(ciphertext, out)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a noise frame did not authenticate"))
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the noise stream's writer stopped")
}

/// The writer task: writes the queued frames in order, as many as are queued in one vectored
/// write (as Teleport writes batches of up to 256 KiB: fewer system calls), hands their buffers
/// back, and shuts the write half once the stream closes the queue.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Vec<u8>>,
    recycle: mpsc::Sender<Vec<u8>>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(WRITE_QUEUE);
    while let Some(frame) = frames.recv().await {
        batch.push(frame);
        while batch.len() < WRITE_QUEUE
            && let Ok(frame) = frames.try_recv()
        {
            batch.push(frame);
        }
        write_batch(&mut writer, &batch).await?;
        for frame in batch.drain(..) {
            // When the stream has enough spare buffers already, this one is freed.
            let _ = recycle.try_send(frame);
        }
    }
    writer.shutdown().await
}

/// Writes every frame of `batch`, vectored.
async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, batch: &[Vec<u8>]) -> io::Result<()> {
    // The first frame not wholly written, and how much of it was.
    let (mut frame, mut offset) = (0, 0);
    while frame < batch.len() {
        let mut slices = [IoSlice::new(&[]); WRITE_QUEUE];
        let count = (batch.len() - frame).min(WRITE_QUEUE);
        slices[0] = IoSlice::new(&batch[frame][offset..]);
        for (slice, rest) in slices[1..count].iter_mut().zip(&batch[frame + 1..]) {
            *slice = IoSlice::new(rest);
        }
        let mut written = writer.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && frame < batch.len() {
            let left = batch[frame].len() - offset;
            if written < left {
                offset += written;
                written = 0;
            } else {
                (frame, offset) = (frame + 1, 0);
                written -= left;
            }
        }
    }
    Ok(())
}

impl<R: AsyncRead + Unpin> AsyncRead for NoiseStream<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.plain_read < this.plain.len() {
                let unread = &this.plain[this.plain_read..];
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread[..n]);
                this.plain_read += n;
                return Poll::Ready(Ok(()));
            }
            if this.broken {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the noise stream is broken",
                )));
            }
            // Whole frames go straight into the caller's buffer while it has room for them; the
            // first that does not fit goes to the plaintext buffer.
            let mut filled = false;
            while let Some(len) = this.whole_frame() {
                let direct = buf.remaining() >= len;
                if !direct && filled {
                    break;
                }
                let frame = this.start + HEADER_LEN..this.start + HEADER_LEN + len;
                let ciphertext = &this.received[frame.clone()];
                let result = if direct {
                    decrypt(&mut this.cipher, ciphertext, buf.initialize_unfilled_to(len))
                } else {
                    this.plain.resize(len, 0);
                    decrypt(&mut this.cipher, ciphertext, &mut this.plain)
                };
                this.start = frame.end;
                let n = match result {
                    Ok(n) => n,
                    Err(err) => {
                        this.broken = true;
                        return Poll::Ready(Err(err));
                    }
                };
                if direct {
                    buf.advance(n);
                    filled |= n > 0;
                } else {
                    this.plain.truncate(n);
                    this.plain_read = 0;
                    break;
                }
            }
            if filled {
                return Poll::Ready(Ok(()));
            }
            if this.plain_read < this.plain.len() || this.whole_frame().is_some() {
                // A frame went to the plaintext buffer (or was empty): go round again.
                continue;
            }
            this.make_room();
            let room_len = this.received.len() - this.end;
            let mut room = ReadBuf::new(&mut this.received[this.end..]);
            ready!(Pin::new(&mut this.reader).poll_read(cx, &mut room))?;
            let n = room.filled().len();
            if n == 0 {
                if this.start == this.end {
                    return Poll::Ready(Ok(())); // EOF between frames
                }
                this.broken = true;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the noise stream ended inside a frame",
                )));
            }
            this.end += n;
            if n == room_len && this.received.len() < RECEIVE_BUFFER_MAX {
                // The socket had more than there was room for: a bulk transfer.
                let doubled = (2 * this.received.len()).min(RECEIVE_BUFFER_MAX);
                this.received.resize(doubled, 0);
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncWrite for NoiseStream<R> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.frames.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = data.len().min(MAX_PLAINTEXT);
        // A reused buffer is as long as the frame it held, so it rarely needs filling.
        let mut frame = this.spare.try_recv().unwrap_or_default();
        frame.resize(HEADER_LEN + n + TAG_LEN, 0);
        let Ok(len) = this.cipher.write_message(&data[..n], &mut frame[HEADER_LEN..]) else {
            // Only after 2^64 frames: the nonces ran out.
            this.frames.abort_send();
            return Poll::Ready(Err(io::Error::other("the noise stream's nonces ran out")));
        };
        // `len` is at most MAX_MESSAGE, which fits the header.
        frame[..HEADER_LEN].copy_from_slice(&(len as u16).to_be_bytes());
        frame.truncate(HEADER_LEN + len);
        this.frames.send_item(frame).map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    /// Frames go to the writer task as they are written, which writes them without waiting for
    /// a flush; there is nothing to do here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.frames.close();
        this.written.as_mut().poll(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, DuplexStream, ReadHalf, duplex, split};

    use super::*;
    use crate::noise::handshake::builder;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// The two ends' cipher states after an XX handshake run in memory.
    fn ciphers() -> (TransportState, TransportState) {
        let key = |builder: snow::Builder<'static>| builder.generate_keypair().unwrap().private;
        let (a_key, b_key) = (key(builder().unwrap()), key(builder().unwrap()));
        let mut a = builder().unwrap().local_private_key(&a_key).unwrap().build_initiator().unwrap();
        let mut b = builder().unwrap().local_private_key(&b_key).unwrap().build_responder().unwrap();
        let (mut message, mut payload) = ([0u8; 256], [0u8; 256]);
        for a_sends in [true, false, true] {
            let (from, to) = if a_sends { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let n = from.write_message(&[], &mut message).unwrap();
            to.read_message(&message[..n], &mut payload).unwrap();
        }
        (a.into_transport_mode().unwrap(), b.into_transport_mode().unwrap())
    }

    type Stream = NoiseStream<ReadHalf<DuplexStream>>;

    /// Two noise streams over a pipe of `capacity` bytes.
    fn pair(capacity: usize) -> (Stream, Stream) {
        let (a, b) = duplex(capacity);
        let (a_cipher, b_cipher) = ciphers();
        let ((a_read, a_write), (b_read, b_write)) = (split(a), split(b));
        (NoiseStream::new(a_read, a_write, a_cipher), NoiseStream::new(b_read, b_write, b_cipher))
    }

    /// A noise stream reading `wire` (ciphertext made by the other end's cipher state), and what
    /// it reads.
    async fn read_wire(wire: Vec<u8>, reader: TransportState) -> io::Result<Vec<u8>> {
        let (mut ours, theirs) = duplex(wire.len() + 1);
        ours.write_all(&wire).await?;
        ours.shutdown().await?;
        let (read, write) = split(theirs);
        let mut stream = NoiseStream::new(read, write, reader);
        let mut received = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await.expect("in time")?;
        Ok(received)
    }

    /// Frames of `data` as a writer with `cipher` sends them.
    fn frames(cipher: &mut TransportState, data: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        for chunk in data.chunks(MAX_PLAINTEXT) {
            let mut message = vec![0u8; MAX_MESSAGE];
            let n = cipher.write_message(chunk, &mut message).unwrap();
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&message[..n]);
        }
        wire
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Writes `data` into `stream` and shuts it down while reading what comes the other way, in
    /// reads of `read_size`.
    async fn exchange(stream: Stream, data: &[u8], read_size: usize) -> Vec<u8> {
        let (mut reader, mut writer) = split(stream);
        let ((), received) = tokio::join!(
            async {
                writer.write_all(data).await.unwrap();
                writer.shutdown().await.unwrap();
            },
            async {
                let (mut received, mut buf) = (Vec::new(), vec![0u8; read_size]);
                loop {
                    match reader.read(&mut buf).await.unwrap() {
                        0 => break received,
                        n => received.extend_from_slice(&buf[..n]),
                    }
                }
            }
        );
        received
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_through_small_and_large_reads() {
        let (a, b) = pair(64 << 10);
        let (to_b, to_a) = (pattern(3 << 20), pattern((1 << 20) + 7).into_iter().rev().collect::<Vec<_>>());
        // Reads smaller than a frame on one side, larger than two on the other.
        let exchanged = async { tokio::join!(exchange(a, &to_b, 1000), exchange(b, &to_a, 200_000)) };
        let (at_a, at_b) = tokio::time::timeout(PATIENCE, exchanged).await.unwrap();
        assert!(at_b == to_b, "the bytes to b arrived intact");
        assert!(at_a == to_a, "the bytes to a arrived intact");
    }

    #[tokio::test]
    async fn a_changed_byte_breaks_the_stream() {
        let (mut writer, reader) = ciphers();
        let data = pattern(100_000);
        let mut wire = frames(&mut writer, &data);
        wire[MAX_FRAME + 10] ^= 1;
        let (mut source, sink) = duplex(wire.len() + 1);
        source.write_all(&wire).await.unwrap();
        let (read, write) = split(sink);
        let mut stream = NoiseStream::new(read, write, reader);
        let mut first = vec![0u8; MAX_PLAINTEXT];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(first, data[..MAX_PLAINTEXT], "the frame before the change reads");
        let err = stream.read(&mut first).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(stream.read(&mut first).await.is_err(), "and nothing after it");
    }

    #[tokio::test]
    async fn reordered_repeated_short_and_cut_frames_are_refused() {
        type Make = fn(&[u8], &[u8]) -> Vec<u8>;
        let cases: [(&str, Make, io::ErrorKind); 5] = [
            ("reordered", |first, second| [second, first].concat(), io::ErrorKind::InvalidData),
            ("repeated", |first, _| [first, first].concat(), io::ErrorKind::InvalidData),
            ("shorter than a tag", |_, _| vec![0, 3, 1, 2, 3], io::ErrorKind::InvalidData),
            ("cut inside a frame", |first, _| first[..1000].to_vec(), io::ErrorKind::UnexpectedEof),
            ("cut inside a header", |first, _| first[..1].to_vec(), io::ErrorKind::UnexpectedEof),
        ];
        for (case, make, kind) in cases {
            let (mut writer, reader) = ciphers();
            let wire = frames(&mut writer, &pattern(2 * MAX_PLAINTEXT));
            let (first, second) = wire.split_at(MAX_FRAME);
            let err = read_wire(make(first, second), reader).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{case}");
        }
    }

    #[tokio::test]
    async fn a_writer_is_held_back_while_the_remote_does_not_read() {
        let (mut a, _b) = pair(64 << 10);
        let data = vec![1u8; 16 << 20];
        let written = tokio::time::timeout(Duration::from_millis(200), a.write_all(&data)).await;
        assert!(written.is_err(), "16 MiB do not fit a queue of a few frames and a 64 KiB pipe");
    }
}
