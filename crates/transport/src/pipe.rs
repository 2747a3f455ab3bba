//! In-process byte pipes, optionally shaped with latency and bandwidth.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::mpsc,
    time::{Instant, Sleep},
};
use tokio_util::sync::PollSender;

use crate::ByteStream;

/// Largest chunk one write puts on a shaped link.
const MAX_CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction; a writer waits beyond it (at most 512 KiB buffered).
const LINK_CAPACITY: usize = 32;
/// Buffer of an unshaped pipe, per direction.
const DUPLEX_BUFFER: usize = 64 * 1024;

/// How a link delays and throttles bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shape {
    /// One-way delay of every byte.
    pub latency: Duration,
    /// Bytes per second each way; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

/// Two connected stream ends.
pub(crate) fn pipe(shape: Shape) -> (ByteStream, ByteStream) {
    if shape == Shape::default() {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        return (Box::new(a), Box::new(b));
    }
    let (a_writer, b_reader) = link(shape);
    let (b_writer, a_reader) = link(shape);
    (
        Box::new(Shaped { reader: a_reader, writer: a_writer }),
        Box::new(Shaped { reader: b_reader, writer: b_writer }),
    )
}

struct Chunk {
    deliver_at: Instant,
    data: Bytes,
}

fn link(shape: Shape) -> (LinkWriter, LinkReader) {
    let (sender, receiver) = mpsc::channel(LINK_CAPACITY);
    let now = Instant::now();
    (
        LinkWriter { sender: PollSender::new(sender), shape, busy_until: now },
        LinkReader { receiver, current: Bytes::new(), waiting: None, delay: None },
    )
}

struct LinkWriter {
    sender: PollSender<Chunk>,
    shape: Shape,
    /// When the link finishes sending what was already written (bandwidth).
    busy_until: Instant,
}

impl LinkWriter {
    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        ready!(self.sender.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let data = Bytes::copy_from_slice(&data[..data.len().min(MAX_CHUNK)]);
        let now = Instant::now();
        let transmission = match self.shape.bandwidth {
            Some(rate) if rate > 0 => Duration::from_secs_f64(data.len() as f64 / rate as f64),
            _ => Duration::ZERO,
        };
        self.busy_until = self.busy_until.max(now) + transmission;
        let written = data.len();
        let chunk = Chunk { deliver_at: self.busy_until + self.shape.latency, data };
        self.sender.send_item(chunk).map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(written))
    }
}

struct LinkReader {
    receiver: mpsc::Receiver<Chunk>,
    current: Bytes,
    waiting: Option<Chunk>,
    delay: Option<Pin<Box<Sleep>>>,
}

impl LinkReader {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let take = self.current.len().min(buf.remaining());
                buf.put_slice(&self.current.split_to(take));
                return Poll::Ready(Ok(()));
            }
            if let Some(chunk) = &self.waiting {
                if chunk.deliver_at > Instant::now() {
                    let delay = self
                        .delay
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(chunk.deliver_at)));
                    delay.as_mut().reset(chunk.deliver_at);
                    ready!(delay.as_mut().poll(cx));
                }
                self.current = self.waiting.take().map(|chunk| chunk.data).unwrap_or_default();
                continue;
            }
            match ready!(self.receiver.poll_recv(cx)) {
                Some(chunk) => self.waiting = Some(chunk),
                // The writer is gone: end of stream.
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

fn broken_pipe() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the other end of the pipe is closed")
}

/// One end of a shaped pipe.
struct Shaped {
    reader: LinkReader,
    writer: LinkWriter,
}

impl AsyncRead for Shaped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reader.poll_read(cx, buf)
    }
}

impl AsyncWrite for Shaped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writer.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer.sender.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn latency_delays_every_byte() {
        let (mut a, mut b) = pipe(Shape { latency: Duration::from_millis(40), bandwidth: None });
        let start = Instant::now();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_limits_throughput() {
        let (mut a, mut b) = pipe(Shape { latency: Duration::ZERO, bandwidth: Some(100_000) });
        let start = Instant::now();
        let writer = tokio::spawn(async move {
            a.write_all(&vec![1u8; 200_000]).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        b.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert_eq!(received.len(), 200_000);
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.99..=2.01).contains(&elapsed), "200 kB at 100 kB/s took {elapsed} s");
    }

    #[tokio::test]
    async fn dropping_one_end_ends_the_other_stream() {
        let (a, mut b) = pipe(Shape { latency: Duration::from_millis(1), bandwidth: None });
        drop(a);
        let mut buf = Vec::new();
        assert_eq!(b.read_to_end(&mut buf).await.unwrap(), 0);
        assert!(b.write_all(b"x").await.is_err());
    }
}
