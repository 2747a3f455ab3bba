//! Framer: the outermost layer, `[u16 big-endian length][payload]` on the byte stream.
//!
//! [`FrameDecoder`] collects bytes as they arrive and yields whole frames without copying them
//! again; [`encode_frame_header`] writes the two length bytes in front of a payload.

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

/// Splits an incoming byte stream into frame payloads. Every `u16` is a valid length, so the framer
/// itself cannot see malformed input; it only ever holds one partial frame (at most 64 KiB).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes (copying them).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Adds received bytes, taking the buffer without a copy when nothing is pending.
    pub fn push_owned(&mut self, data: BytesMut) {
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// The next complete frame's payload, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        self.buf.advance(HEADER_LEN);
        Some(self.buf.split_to(len).freeze())
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
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
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![Bytes::from_static(b"hello"), Bytes::new(), Bytes::from(vec![7; 300])]);
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
