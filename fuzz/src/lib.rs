//! What the fuzz targets share: the input format they all read, and structured values built from
//! a piece of input with `arbitrary`.
//!
//! An input is a sequence of records, `[tag: u8][length: u16, big-endian][body: length bytes]`; a
//! record whose body is cut short takes what is left. Each target gives the tags its own meaning
//! (see the target's docs): the body is either raw bytes as a remote sends them (a frame, a chunk
//! of a byte stream) or the seed of a structured value. `cargo xtask fuzz` writes seed inputs in
//! this format from the golden vectors.

#![forbid(unsafe_code)]

use arbitrary::{Arbitrary, Unstructured};

/// One record of an input.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What the target does with the body.
    pub tag: u8,
    /// The record's bytes.
    pub body: &'a [u8],
}

impl<'a> Record<'a> {
    /// The body read as a structured value, if it holds enough bytes for one.
    pub fn structured<T: Arbitrary<'a>>(&self) -> Option<T> {
        Unstructured::new(self.body).arbitrary().ok()
    }

    /// The body's first two bytes as a number (big-endian), for durations and sizes.
    pub fn number(&self) -> u16 {
        match self.body {
            [] => 0,
            [only] => u16::from(*only),
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
        }
    }
}

/// The records of `input`, in order.
pub fn records(mut input: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&tag, rest) = input.split_first()?;
        let (length, rest) = match rest {
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (body, rest) = rest.split_at(length.min(rest.len()));
        input = rest;
        Some(Record { tag, body })
    })
}

/// A 32-byte key from a small pool of `size`, so that records meet each other's keys.
pub fn pool_key(index: u8, size: u8) -> [u8; 32] {
    [(index % size.max(1)).wrapping_mul(0x20).wrapping_add(0x10); 32]
}
