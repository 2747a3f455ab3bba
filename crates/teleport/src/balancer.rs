//! Balancer: many channels' messages over one framed stream, fairly.
//!
//! Each message is cut into chunks of at most [`MAX_CHUNK`] bytes; each chunk is one frame:
//! `[varint channel id][varint total length, first chunk only][chunk]`. The channel id is the
//! sender's own channel id (0 carries muxer control commands). Sending takes channel 0 first
//! whenever it has anything queued, then one chunk per channel in turn, so a channel with a lot
//! queued cannot hold up the others for more than one chunk. Receiving reassembles per channel id;
//! a length is present only when no message is being reassembled on that channel.
//!
//! Received pieces stay slices of the block they arrived in only when that is worth it: a run of
//! one message's pieces from one block is kept as it is when it makes up at least a
//! [`SHARE_DIVISOR`]th of the block's allocation, and is copied into a buffer of its own size
//! otherwise. So a small message never keeps a large read buffer alive, and the memory held for
//! partial and unread messages stays within [`SHARE_DIVISOR`] times the bytes counted for them,
//! while a large message read in large blocks is not copied.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::framer::Frame;
use crate::payload::{FrameSink, Payload};

/// The most message bytes one chunk carries (DXOS's `MAX_CHUNK_SIZE`).
pub const MAX_CHUNK: usize = 8192;

/// The channel that carries muxer commands and is always served first.
pub const SYSTEM_CHANNEL: u32 = 0;

/// A run of received pieces shares its block only if it is at least this fraction of the block's
/// allocation; smaller runs are copied out.
pub const SHARE_DIVISOR: usize = 4;

/// A message waiting to be sent: a short head (the command's encoding up to its data) and a body
/// (the data itself), so a data payload is never copied into an intermediate buffer.
#[derive(Debug)]
struct Outgoing {
    head: Bytes,
    body: Bytes,
    /// Bytes of head + body already sent.
    sent: usize,
}

impl Outgoing {
    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// One chunk that [`Balancer::poll_chunk`] framed into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentChunk {
    /// The channel it belongs to.
    pub channel: u32,
    /// Message bytes it carried.
    pub len: usize,
    /// Whether it was the message's last chunk.
    pub last: bool,
}

/// The send queues and receive buffers of the balancer layer. Sans-IO: bytes in, frames out.
#[derive(Debug)]
pub struct Balancer {
    system: VecDeque<Outgoing>,
    queues: HashMap<u32, VecDeque<Outgoing>>,
    /// Channels other than 0 with something queued, in turn order; each appears once.
    ready: VecDeque<u32>,
    receiving: HashMap<u32, Reassembly>,
    /// Bytes held in `receiving`.
    receiving_bytes: usize,
    /// Channels whose current run of pieces is not sealed yet.
    open_runs: Vec<u32>,
    max_message: usize,
    max_reassemblies: usize,
}

/// A message arriving in pieces: the chunks are kept as they are (or copied, see [`Run`]), not
/// copied together.
#[derive(Debug)]
struct Reassembly {
    parts: Vec<Bytes>,
    have: usize,
    total: usize,
    /// When the last chunk arrived.
    last_progress: Instant,
    run: Option<Run>,
}

/// The pieces of one message that came from one block, as they arrive: `parts[start..]`.
#[derive(Debug, Clone, Copy)]
struct Run {
    block: u64,
    capacity: usize,
    start: usize,
    bytes: usize,
}

impl Reassembly {
    fn add(&mut self, frame: Frame) {
        match self.run {
            Some(run) if run.block == frame.block => {}
            _ => {
                self.seal_run();
                let start = self.parts.len();
                self.run = Some(Run { block: frame.block, capacity: frame.block_capacity, start, bytes: 0 });
            }
        }
        if let Some(run) = &mut self.run {
            run.bytes += frame.data.len();
        }
        self.have += frame.data.len();
        self.parts.push(frame.data);
    }

    /// Ends the current run: copies its pieces into one buffer unless they are worth their block.
    fn seal_run(&mut self) {
        let Some(run) = self.run.take() else { return };
        if worth_sharing(run.bytes, run.capacity) || self.parts.len() <= run.start {
            return;
        }
        let mut copy = BytesMut::with_capacity(run.bytes);
        for part in self.parts.drain(run.start..) {
            copy.extend_from_slice(&part);
        }
        self.parts.push(copy.freeze());
    }
}

/// Whether `bytes` of a block with `capacity` bytes of allocation may keep the block alive.
fn worth_sharing(bytes: usize, capacity: usize) -> bool {
    bytes.saturating_mul(SHARE_DIVISOR) >= capacity
}

/// A piece that is kept only if it is worth its block, copied otherwise.
fn compact(frame: Frame) -> Bytes {
    if worth_sharing(frame.data.len(), frame.block_capacity) {
        frame.data
    } else {
        Bytes::copy_from_slice(&frame.data)
    }
}

impl Balancer {
    /// A balancer that accepts incoming messages up to `max_message` bytes, reassembled on at most
    /// `max_reassemblies` channels at once.
    pub fn new(max_message: usize, max_reassemblies: usize) -> Self {
        Self {
            system: VecDeque::new(),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            receiving: HashMap::new(),
            receiving_bytes: 0,
            open_runs: Vec::new(),
            max_message,
            max_reassemblies,
        }
    }

    /// Queues a message (`head` followed by `body`) on `channel`. Empty messages are not queued:
    /// DXOS cannot frame them (it omits a zero length).
    pub fn push(&mut self, channel: u32, head: Bytes, body: Bytes) {
        if head.is_empty() && body.is_empty() {
            return;
        }
        let msg = Outgoing { head, body, sent: 0 };
        if channel == SYSTEM_CHANNEL {
            self.system.push_back(msg);
            return;
        }
        let queue = self.queues.entry(channel).or_default();
        if queue.is_empty() {
            self.ready.push_back(channel);
        }
        queue.push_back(msg);
    }

    /// Whether any chunk is waiting to be sent.
    pub fn has_pending(&self) -> bool {
        !self.system.is_empty() || !self.ready.is_empty()
    }

    /// Whether anything other than channel 0 is waiting to be sent.
    pub fn has_pending_data(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Drops everything queued on every channel but 0.
    pub fn clear_data(&mut self) {
        self.queues.clear();
        self.ready.clear();
    }

    /// Frames the next chunk into `out`, choosing channel 0 first, then the channels in turn.
    pub fn poll_chunk(&mut self, out: &mut impl FrameSink) -> Option<SentChunk> {
        if let Some(msg) = self.system.front_mut() {
            let (len, last) = write_chunk(SYSTEM_CHANNEL, msg, out);
            if last {
                self.system.pop_front();
            }
            return Some(SentChunk { channel: SYSTEM_CHANNEL, len, last });
        }
        let channel = self.ready.pop_front()?;
        let queue = self.queues.get_mut(&channel)?;
        let msg = queue.front_mut()?;
        let (len, last) = write_chunk(channel, msg, out);
        if last {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.queues.remove(&channel);
        } else {
            self.ready.push_back(channel);
        }
        Some(SentChunk { channel, len, last })
    }

    /// Takes one frame (received at `now`); returns a message when this chunk completed one.
    /// Call [`Balancer::seal`] once the frames at hand are taken.
    pub fn receive(
        &mut self,
        now: Instant,
        frame: impl Into<Frame>,
    ) -> Result<Option<(u32, Payload)>, ProtocolError> {
        let mut frame = frame.into();
        let channel = read_varint(&mut frame.data, "channel id")?;
        let channel =
            u32::try_from(channel).map_err(|_| ProtocolError::MalformedChunk("channel id out of range"))?;
        if let Some(partial) = self.receiving.get_mut(&channel) {
            let have = partial.have + frame.data.len();
            if have > partial.total {
                return Err(ProtocolError::ChunkOverrun { have, total: partial.total });
            }
            self.receiving_bytes += frame.data.len();
            partial.last_progress = now;
            let run_was_open = partial.run.is_some();
            partial.add(frame);
            if have < partial.total {
                if !run_was_open {
                    self.open_runs.push(channel);
                }
                return Ok(None);
            }
            let Some(mut done) = self.receiving.remove(&channel) else { return Ok(None) };
            done.seal_run();
            self.receiving_bytes -= done.have;
            return Ok(Some((channel, Payload::from_parts(done.parts))));
        }
        let total = read_varint(&mut frame.data, "message length")?;
        if total > self.max_message as u64 {
            return Err(ProtocolError::MessageTooLarge { len: total, limit: self.max_message });
        }
        let total = total as usize;
        if frame.data.len() > total {
            return Err(ProtocolError::ChunkOverrun { have: frame.data.len(), total });
        }
        if frame.data.len() == total {
            return Ok(Some((channel, Payload::from(compact(frame)))));
        }
        if self.receiving.len() >= self.max_reassemblies {
            return Err(ProtocolError::TooManyReassemblies(self.max_reassemblies));
        }
        self.receiving_bytes += frame.data.len();
        let mut partial = Reassembly { parts: Vec::new(), have: 0, total, last_progress: now, run: None };
        partial.add(frame);
        self.receiving.insert(channel, partial);
        self.open_runs.push(channel);
        Ok(None)
    }

    /// Ends the runs of pieces taken since the last call: those not worth their blocks are copied
    /// out, so the blocks can go.
    pub fn seal(&mut self) {
        for channel in self.open_runs.drain(..) {
            if let Some(partial) = self.receiving.get_mut(&channel) {
                partial.seal_run();
            }
        }
    }

    /// Bytes held in partly reassembled incoming messages.
    pub fn reassembling_bytes(&self) -> usize {
        self.receiving_bytes
    }

    /// When the partial message that went longest without a chunk will have gone `timeout`
    /// without one.
    pub fn stall_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.receiving.values().map(|r| r.last_progress).min().and_then(|last| last.checked_add(timeout))
    }

    /// The channel of a partial message that has gone `timeout` without a chunk at `now`.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> Option<u32> {
        self.receiving
            .iter()
            .find(|(_, r)| r.last_progress.checked_add(timeout).is_some_and(|deadline| deadline <= now))
            .map(|(&channel, _)| channel)
    }

    /// Counts every partial message as having made progress at `now` (used after a pause in
    /// reading that was ours, not the remote's).
    pub fn restart_progress(&mut self, now: Instant) {
        for partial in self.receiving.values_mut() {
            partial.last_progress = partial.last_progress.max(now);
        }
    }

    /// Drops every partial message.
    pub fn clear_receiving(&mut self) {
        self.receiving.clear();
        self.open_runs.clear();
        self.receiving_bytes = 0;
    }
}

/// Frames the next chunk of `msg`; returns the message bytes written and whether it was the last.
fn write_chunk(channel: u32, msg: &mut Outgoing, out: &mut impl FrameSink) -> (usize, bool) {
    let total = msg.len();
    let first = msg.sent == 0;
    let len = (total - msg.sent).min(MAX_CHUNK);
    // Frame header (u16 length), varint channel id, varint total length on the first chunk.
    let mut header = [0u8; 22];
    let mut prefix_len = put_varint(&mut header[2..], u64::from(channel));
    if first {
        prefix_len += put_varint(&mut header[2 + prefix_len..], total as u64);
    }
    let frame_len = (prefix_len + len) as u16;
    header[..2].copy_from_slice(&frame_len.to_be_bytes());
    out.put_copied(&header[..2 + prefix_len]);
    // Then bytes [sent, sent + len) of head ++ body.
    let mut start = msg.sent;
    let end = msg.sent + len;
    if start < msg.head.len() {
        let head_end = end.min(msg.head.len());
        out.put_copied(&msg.head[start..head_end]);
        start = head_end;
    }
    if start < end {
        let base = msg.head.len();
        out.put_shared(msg.body.slice(start - base..end - base));
    }
    msg.sent = end;
    (len, end == total)
}

/// Writes `value` as a protobuf varint into `buf`; returns its length.
pub(crate) fn put_varint(buf: &mut [u8], mut value: u64) -> usize {
    let mut i = 0;
    loop {
        if value < 0x80 {
            buf[i] = value as u8;
            return i + 1;
        }
        buf[i] = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
        i += 1;
    }
}

/// Reads a varint as the JavaScript `varint` package writes it (at most 8 bytes for numbers below
/// 2^53; we accept a full 64-bit varint and let the range checks refuse what is too big).
fn read_varint(buf: &mut Bytes, what: &'static str) -> Result<u64, ProtocolError> {
    if !buf.has_remaining() {
        return Err(ProtocolError::MalformedChunk(match what {
            "channel id" => "missing channel id",
            _ => "missing message length",
        }));
    }
    prost::encoding::decode_varint(buf).map_err(|_| ProtocolError::MalformedChunk("bad varint"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    use crate::framer::FrameDecoder;

    fn drain(balancer: &mut Balancer) -> (BytesMut, Vec<SentChunk>) {
        let mut out = BytesMut::new();
        let mut chunks = Vec::new();
        while let Some(chunk) = balancer.poll_chunk(&mut out) {
            chunks.push(chunk);
        }
        (out, chunks)
    }

    #[test]
    fn message_of_exactly_one_chunk_has_no_continuation() {
        let mut b = Balancer::new(1 << 20, 8);
        b.push(3, Bytes::new(), Bytes::from(vec![1; MAX_CHUNK]));
        let (out, chunks) = drain(&mut b);
        assert_eq!(chunks, vec![SentChunk { channel: 3, len: MAX_CHUNK, last: true }]);
        // frame header, channel 3, length 8192 as varint (0x80 0x40), then the chunk
        assert_eq!(&out[..5], &[0x20, 0x03, 0x03, 0x80, 0x40]);
        assert_eq!(out.len(), 5 + MAX_CHUNK);
    }

    #[test]
    fn message_one_byte_over_a_chunk_takes_two_and_only_the_first_has_a_length() {
        let mut b = Balancer::new(1 << 20, 8);
        b.push(1, Bytes::from_static(b"ab"), Bytes::from(vec![9; MAX_CHUNK - 1]));
        let (out, chunks) = drain(&mut b);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], SentChunk { channel: 1, len: MAX_CHUNK, last: false });
        assert_eq!(chunks[1], SentChunk { channel: 1, len: 1, last: true });
        let mut decoder = FrameDecoder::new();
        decoder.push(&out);
        let second = {
            decoder.next_frame().unwrap();
            decoder.next_frame().unwrap()
        };
        assert_eq!(&second.data[..], &[0x01, 9]);
    }

    #[test]
    fn channel_zero_goes_first_then_channels_take_turns() {
        let mut b = Balancer::new(1 << 20, 8);
        b.push(1, Bytes::new(), Bytes::from(vec![1; 3 * MAX_CHUNK]));
        b.push(2, Bytes::new(), Bytes::from(vec![2; 2 * MAX_CHUNK]));
        b.push(0, Bytes::new(), Bytes::from_static(b"cmd"));
        let (_, chunks) = drain(&mut b);
        let order: Vec<u32> = chunks.iter().map(|c| c.channel).collect();
        assert_eq!(order, vec![0, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn reassembly_keeps_channels_apart() {
        let mut tx = Balancer::new(1 << 20, 8);
        let a: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let c: Vec<u8> = (0..17_000u32).map(|i| (i * 7) as u8).collect();
        tx.push(5, Bytes::new(), Bytes::from(a.clone()));
        tx.push(6, Bytes::from_static(b"hd"), Bytes::from(c.clone()));
        let (out, _) = drain(&mut tx);
        let mut rx = Balancer::new(1 << 20, 8);
        let mut decoder = FrameDecoder::new();
        decoder.push(&out);
        let mut got = Vec::new();
        while let Some(frame) = decoder.next_frame() {
            if let Some(msg) = rx.receive(Instant::now(), frame).unwrap() {
                got.push(msg);
            }
        }
        let mut c_full = b"hd".to_vec();
        c_full.extend_from_slice(&c);
        let got: Vec<(u32, Bytes)> = got.into_iter().map(|(ch, p)| (ch, p.into_bytes())).collect();
        assert_eq!(got, vec![(5, Bytes::from(a)), (6, Bytes::from(c_full))]);
    }

    /// A frame of `len` message bytes on channel 1 (announcing `total` if given), as a slice of a
    /// block with `capacity` bytes of allocation.
    fn piece(block: u64, capacity: usize, total: Option<u8>, len: usize) -> Frame {
        let mut data = vec![1u8];
        data.extend(total);
        data.extend(std::iter::repeat_n(7u8, len));
        let mut buffer = BytesMut::with_capacity(capacity);
        buffer.extend_from_slice(&data);
        Frame { data: buffer.freeze(), block, block_capacity: capacity }
    }

    fn part_addresses(rx: &Balancer) -> Vec<usize> {
        rx.receiving[&1].parts.iter().map(|p| p.as_ptr() as usize).collect()
    }

    #[test]
    fn a_small_run_of_a_partial_message_is_copied_out_of_its_block_when_sealed() {
        let now = Instant::now();
        let mut rx = Balancer::new(1 << 20, 8);
        assert_eq!(rx.receive(now, piece(1, 4096, Some(100), 10)).unwrap(), None);
        let before = part_addresses(&rx);
        rx.seal();
        assert_ne!(part_addresses(&rx), before, "10 bytes must not keep a 4 KiB block alive");
        // A run worth its block stays where it is.
        assert_eq!(rx.receive(now, piece(2, 64, None, 20)).unwrap(), None);
        let before = part_addresses(&rx);
        rx.seal();
        assert_eq!(part_addresses(&rx), before);
        assert_eq!(rx.reassembling_bytes(), 30);
    }

    #[test]
    fn a_partial_message_reports_when_it_stalls() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut rx = Balancer::new(1 << 20, 8);
        assert_eq!(rx.stall_deadline(timeout), None);
        rx.receive(t0, piece(1, 64, Some(100), 10)).unwrap();
        assert_eq!(rx.stall_deadline(timeout), Some(t0 + timeout));
        assert_eq!(rx.stalled(t0 + timeout - Duration::from_millis(1), timeout), None);
        assert_eq!(rx.stalled(t0 + timeout, timeout), Some(1));
        rx.restart_progress(t0 + timeout);
        assert_eq!(rx.stalled(t0 + timeout, timeout), None);
        assert_eq!(rx.stall_deadline(Duration::MAX), None, "a timeout past the clock's end never fires");
    }

    #[test]
    fn announced_length_over_the_limit_is_refused() {
        let mut rx = Balancer::new(100, 8);
        let now = Instant::now();
        let err = rx.receive(now, Bytes::from_static(&[1, 101, 0])).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { len: 101, .. }));
    }

    #[test]
    fn malformed_chunks_are_errors_not_panics() {
        let mut rx = Balancer::new(100, 1);
        let now = Instant::now();
        assert!(rx.receive(now, Bytes::new()).is_err());
        assert!(rx.receive(now, Bytes::from_static(&[1])).is_err());
        assert!(rx.receive(now, Bytes::from_static(&[0xff; 12])).is_err());
        assert!(rx.receive(now, Bytes::from_static(&[1, 2, 1, 2, 3])).is_err());
        assert_eq!(rx.receive(now, Bytes::from_static(&[1, 4, 1])).unwrap(), None);
        assert!(matches!(
            rx.receive(now, Bytes::from_static(&[2, 4, 1])),
            Err(ProtocolError::TooManyReassemblies(1))
        ));
        assert!(matches!(
            rx.receive(now, Bytes::from_static(&[1, 1, 1, 1, 1])),
            Err(ProtocolError::ChunkOverrun { .. })
        ));
    }
}
