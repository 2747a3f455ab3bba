//! Framer: the outermost layer, `[u16 big-endian length][payload]` on the byte stream.
//!
//! [`FrameDecoder`] collects the blocks of bytes the transport delivers and yields whole frames.
//! A frame that lies inside one block is a slice of it, not a copy; only a frame cut by a block
//! boundary is copied, into a buffer of its own size. Each [`Frame`] tells which block it came
//! from and how big that block's allocation is, so layers above can decide whether keeping the
//! slice (and with it the whole block) is worth it. [`encode_frame_header`] writes the two length
//! bytes in front of a payload.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The length prefix's size in bytes.
pub const HEADER_LEN: usize = 2;
/// The largest payload one frame can carry.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Writes a frame header for a payload of `len` bytes. `len` must be at most
/// [`MAX_FRAME_PAYLOAD`]; the balancer's chunks are far below it.
pub fn encode_frame_header(len: usize, out: &mut BytesMut) {
    debug_assert!(len <= MAX_FRAME_PAYLOAD, "frame payload of {len} bytes");
    out.put_u16(len.min(MAX_FRAME_PAYLOAD) as u16);
}

/// Appends one frame carrying `payload` to `out`; `None` when the payload does not fit in a frame.
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) -> Option<()> {
    if payload.len() > MAX_FRAME_PAYLOAD {
        return None;
    }
    out.reserve(HEADER_LEN + payload.len());
    encode_frame_header(payload.len(), out);
    out.extend_from_slice(payload);
    Some(())
}

/// One frame's payload and where its memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The payload.
    pub data: Bytes,
    /// The block it is a slice of; frames of one block share its number. Copied frames get a
    /// number of their own.
    pub block: u64,
    /// The size of the allocation `data` keeps alive while any slice of it is held.
    pub block_capacity: usize,
}

impl From<Bytes> for Frame {
    /// A frame that owns its memory (a block of its own, as big as the payload).
    fn from(data: Bytes) -> Self {
        let block_capacity = data.len();
        Self { data, block: u64::MAX, block_capacity }
    }
}

/// A block of received bytes not yet cut into frames.
#[derive(Debug)]
struct Block {
    bytes: Bytes,
    id: u64,
    capacity: usize,
}

/// Splits an incoming byte stream into frames. Every `u16` is a valid length, so the framer itself
/// cannot see malformed input. It holds what it was given until the frames are taken, plus at most
/// one partial frame (64 KiB) copied out of a block boundary.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    blocks: VecDeque<Block>,
    /// The start of a frame cut by a block boundary (header included).
    partial: BytesMut,
    next_block: u64,
    buffered: usize,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes (copying them into a block of their own size).
    pub fn push(&mut self, data: &[u8]) {
        self.push_owned(BytesMut::from(data));
    }

    /// Adds a block of received bytes without copying it. Pass the buffer the bytes were read
    /// into: its capacity is what slices of it keep alive.
    pub fn push_owned(&mut self, data: BytesMut) {
        if data.is_empty() {
            return;
        }
        let capacity = data.capacity().max(data.len());
        let id = self.next_id();
        self.buffered += data.len();
        self.blocks.push_back(Block { bytes: data.freeze(), id, capacity });
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if !self.partial.is_empty() {
                return self.continue_partial();
            }
            let block = self.blocks.front_mut()?;
            if block.bytes.is_empty() {
                self.blocks.pop_front();
                continue;
            }
            if block.bytes.len() >= HEADER_LEN {
                let len = u16::from_be_bytes([block.bytes[0], block.bytes[1]]) as usize;
                if block.bytes.len() >= HEADER_LEN + len {
                    block.bytes.advance(HEADER_LEN);
                    let data = block.bytes.split_to(len);
                    self.buffered -= HEADER_LEN + len;
                    let frame = Frame { data, block: block.id, block_capacity: block.capacity };
                    if block.bytes.is_empty() {
                        self.blocks.pop_front();
                    }
                    return Some(frame);
                }
            }
            // The frame runs past this block: copy its start out so the block can go.
            let rest = std::mem::take(&mut block.bytes);
            self.blocks.pop_front();
            self.partial.reserve(frame_size(&rest).unwrap_or(HEADER_LEN));
            self.partial.extend_from_slice(&rest);
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether a complete frame is waiting for [`FrameDecoder::next_frame`].
    pub fn has_frame(&self) -> bool {
        let mut bytes = self.partial.iter().chain(self.blocks.iter().flat_map(|b| b.bytes.iter()));
        match (bytes.next(), bytes.next()) {
            (Some(&hi), Some(&lo)) => self.buffered >= HEADER_LEN + u16::from_be_bytes([hi, lo]) as usize,
            _ => false,
        }
    }

    /// Moves bytes from the blocks into the partial frame until it is whole.
    fn continue_partial(&mut self) -> Option<Frame> {
        loop {
            let size = frame_size(&self.partial);
            if size == Some(self.partial.len()) {
                self.buffered -= self.partial.len();
                let mut whole = std::mem::take(&mut self.partial);
                let block_capacity = whole.capacity();
                whole.advance(HEADER_LEN);
                let data = whole.freeze();
                return Some(Frame { data, block: self.next_id(), block_capacity });
            }
            let wanted = size.unwrap_or(HEADER_LEN) - self.partial.len();
            let block = self.blocks.front_mut()?;
            let take = wanted.min(block.bytes.len());
            self.partial.reserve(take);
            self.partial.extend_from_slice(&block.bytes[..take]);
            block.bytes.advance(take);
            if block.bytes.is_empty() {
                self.blocks.pop_front();
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_block;
        self.next_block += 1;
        id
    }
}

/// The whole frame's size (header included), once its header is there.
fn frame_size(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= HEADER_LEN).then(|| HEADER_LEN + u16::from_be_bytes([bytes[0], bytes[1]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_pushes_come_out_whole() {
        let mut out = BytesMut::new();
        encode_frame(b"hello", &mut out).unwrap();
        encode_frame(b"", &mut out).unwrap();
        encode_frame(&[7; 300], &mut out).unwrap();
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in out.iter() {
            decoder.push(&[*byte]);
            while let Some(frame) = decoder.next_frame() {
                frames.push(frame.data);
            }
        }
        assert_eq!(frames, vec![Bytes::from_static(b"hello"), Bytes::new(), Bytes::from(vec![7; 300])]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn frames_inside_a_block_are_slices_of_it_and_only_a_cut_frame_is_copied() {
        let mut wire = BytesMut::new();
        encode_frame(&[1; 100], &mut wire).unwrap();
        encode_frame(&[2; 100], &mut wire).unwrap();
        let mut block = BytesMut::with_capacity(4096);
        block.extend_from_slice(&wire[..150]);
        let start = block.as_ptr() as usize;
        let mut decoder = FrameDecoder::new();
        decoder.push_owned(block);
        let first = decoder.next_frame().unwrap();
        assert_eq!(first.block_capacity, 4096);
        assert!((start..start + 4096).contains(&(first.data.as_ptr() as usize)), "a whole frame is a slice");
        assert!(decoder.next_frame().is_none());
        assert!(!decoder.has_frame());
        decoder.push(&wire[150..]);
        assert!(decoder.has_frame());
        let second = decoder.next_frame().unwrap();
        assert_eq!(second.data, Bytes::from(vec![2; 100]));
        assert_eq!(
            second.block_capacity,
            HEADER_LEN + 100,
            "a frame cut by a block boundary gets a buffer of its own"
        );
        assert_ne!(second.block, first.block);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mut out = BytesMut::new();
        assert!(encode_frame(&vec![0; MAX_FRAME_PAYLOAD + 1], &mut out).is_none());
        assert!(encode_frame(&vec![0; MAX_FRAME_PAYLOAD], &mut out).is_some());
        assert_eq!(&out[..2], &[0xff, 0xff]);
    }
}
