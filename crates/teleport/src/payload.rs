//! [`Payload`]: a received message as the pieces of receive buffer it arrived in, and
//! [`FrameSink`]: where the balancer writes outgoing frames, either copied into one buffer
//! (`BytesMut`) or as a list of [`Segments`] that point into the messages themselves, for
//! vectored writes without copying.
//!
//! A message bigger than one chunk (8 KiB) arrives in several frames with headers between them;
//! keeping its pieces instead of copying them together saves a copy of every byte a stream
//! carries. Readers that need one contiguous buffer call [`Payload::into_bytes`].

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// A received message, in one or more pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    parts: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// A payload from its pieces (empty pieces are dropped).
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: Vec<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let len = parts.iter().map(Bytes::len).sum();
        Self { parts, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its pieces, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Its pieces, in order.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// One contiguous buffer (copied together only when it is in several pieces).
    pub fn into_bytes(mut self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for part in &self.parts {
                    all.extend_from_slice(part);
                }
                all.freeze()
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Self::from_parts([bytes])
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

/// Where the balancer writes frames: small header bytes, and data that may be shared.
pub trait FrameSink {
    /// Appends bytes that are copied (frame headers, varints, command heads).
    fn put_copied(&mut self, bytes: &[u8]);
    /// Appends a piece of a message; sinks that can will keep it without copying.
    fn put_shared(&mut self, data: Bytes);
    /// Bytes appended so far and not yet consumed.
    fn pending(&self) -> usize;
}

impl FrameSink for BytesMut {
    fn put_copied(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn put_shared(&mut self, data: Bytes) {
        self.extend_from_slice(&data);
    }

    fn pending(&self) -> usize {
        self.len()
    }
}

/// Pieces shorter than this are copied next to the headers rather than kept as their own piece.
const SHARE_AT_LEAST: usize = 512;

/// Outgoing bytes as a list of pieces for vectored writes: header bytes are copied into small
/// buffers, message data is referenced where it lies.
#[derive(Debug, Default)]
pub struct Segments {
    queue: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

impl Segments {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            self.queue.push_back(self.scratch.split().freeze());
        }
    }

    /// Fills `slices` with the pending pieces, in order; returns how many it filled.
    pub fn io_slices<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        self.seal();
        let mut n = 0;
        for (slot, part) in slices.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }

    /// Drops the first `n` pending bytes (they were written).
    pub fn advance(&mut self, mut n: usize) {
        self.seal();
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.queue.pop_front();
        }
    }
}

impl FrameSink for Segments {
    fn put_copied(&mut self, bytes: &[u8]) {
        self.scratch.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn put_shared(&mut self, data: Bytes) {
        if data.len() < SHARE_AT_LEAST {
            return self.put_copied(&data);
        }
        self.seal();
        self.len += data.len();
        self.queue.push_back(data);
    }

    fn pending(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_order_and_advance_across_pieces() {
        let mut segments = Segments::new();
        segments.put_copied(b"ab");
        segments.put_shared(Bytes::from(vec![1u8; 1000]));
        segments.put_copied(b"cd");
        segments.put_shared(Bytes::from_static(b"ef"));
        assert_eq!(segments.pending(), 1006);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = segments.io_slices(&mut slices);
        let flat: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&[1u8; 1000]);
        expected.extend_from_slice(b"cdef");
        assert_eq!(flat, expected);
        segments.advance(500);
        assert_eq!(segments.pending(), 506);
        segments.advance(506);
        assert!(segments.is_empty());
    }

    #[test]
    fn payload_in_pieces_joins_into_one_buffer() {
        let payload =
            Payload::from_parts([Bytes::from_static(b"he"), Bytes::new(), Bytes::from_static(b"llo")]);
        assert_eq!(payload.len(), 5);
        assert_eq!(payload.parts().len(), 2);
        assert_eq!(payload.into_bytes(), Bytes::from_static(b"hello"));
    }
}
