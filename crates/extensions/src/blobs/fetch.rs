//! Planning one blob's fetch: which chunk ranges to ask for next, so that no chunk already held
//! or already asked for is asked for again, with a bounded amount asked at once; and chunk ranges
//! on the wire.

use std::io;

use bao_tree::{ChunkNum, ChunkRanges};

use super::{Blob, BlobHash, PartialBlob, ReceiveError};

/// Chunks (of 1 KiB) asked for in one request by default: 1 MiB.
pub const REQUEST_CHUNKS: u64 = 1024;
/// Chunks asked for and not yet answered, at most, by default: 4 MiB.
pub const WINDOW_CHUNKS: u64 = 4 * 1024;
/// Range boundaries a wire message may carry.
pub const MAX_WIRE_BOUNDARIES: usize = 1024;

/// One blob being fetched: what it holds, what it asked for, what to ask next.
#[derive(Debug)]
pub struct Fetch {
    partial: PartialBlob,
    /// Asked for and not answered yet.
    requested: ChunkRanges,
    request_chunks: u64,
    window_chunks: u64,
}

impl Fetch {
    /// A fetch of the `len`-byte blob `hash`, asking for the default amounts.
    pub fn new(hash: BlobHash, len: u64) -> Self {
        Self::with_window(hash, len, REQUEST_CHUNKS, WINDOW_CHUNKS)
    }

    /// A fetch asking for `request_chunks` per request and `window_chunks` at once at most.
    pub fn with_window(hash: BlobHash, len: u64, request_chunks: u64, window_chunks: u64) -> Self {
        Self {
            partial: PartialBlob::new(hash, len),
            requested: ChunkRanges::empty(),
            request_chunks: request_chunks.max(1),
            window_chunks: window_chunks.max(1),
        }
    }

    /// The blob's name.
    pub fn hash(&self) -> BlobHash {
        self.partial.hash()
    }

    /// The next ranges to ask for: the first missing chunks not asked for yet, if the window
    /// has room.
    pub fn next_request(&mut self) -> Option<ChunkRanges> {
        let in_flight = count(&self.requested);
        if in_flight >= self.window_chunks {
            return None;
        }
        let open: ChunkRanges = self.partial.missing().difference(&self.requested);
        let request = first_chunks(&open, self.request_chunks.min(self.window_chunks - in_flight));
        if request.is_empty() {
            return None;
        }
        self.requested = self.requested.union(&request);
        Some(request)
    }

    /// The answer to a request for `ranges`: keeps each piece that verifies. The ranges count
    /// as answered whatever came (what is still missing is asked for again).
    pub fn on_response(&mut self, ranges: &ChunkRanges, encoded: impl io::Read) -> Result<u64, ReceiveError> {
        self.requested = self.requested.difference(ranges);
        self.partial.receive(ranges, encoded)
    }

    /// A request for `ranges` was refused: they are to be asked again (of another peer).
    pub fn on_refused(&mut self, ranges: &ChunkRanges) {
        self.requested = self.requested.difference(ranges);
    }

    /// The peer asked went away: everything asked of it is to be asked again.
    pub fn on_lost(&mut self) {
        self.requested = ChunkRanges::empty();
    }

    /// The chunks held, and the chunks in the whole blob.
    pub fn progress(&self) -> (u64, u64) {
        let missing = count(&self.partial.missing());
        let all = count(&(self.partial.present().union(&self.partial.missing())));
        (all - missing, all)
    }

    /// Whether the whole blob is held.
    pub fn is_complete(&self) -> bool {
        self.partial.is_complete()
    }

    /// The blob, once complete.
    pub fn finish(self) -> Result<Blob, Box<Self>> {
        let Self { partial, requested, request_chunks, window_chunks } = self;
        partial
            .finish()
            .map_err(|partial| Box::new(Self { partial: *partial, requested, request_chunks, window_chunks }))
    }
}

/// The number of chunks in bounded `ranges` (an unbounded tail counts as none).
pub(super) fn count(ranges: &ChunkRanges) -> u64 {
    let bounds = ranges.boundaries();
    bounds.chunks_exact(2).map(|pair| pair[1].0 - pair[0].0).sum()
}

/// The first `n` chunks of `ranges`.
fn first_chunks(ranges: &ChunkRanges, n: u64) -> ChunkRanges {
    let mut taken = ChunkRanges::empty();
    let mut left = n;
    for pair in ranges.boundaries().chunks(2) {
        if left == 0 {
            break;
        }
        let start = pair[0].0;
        let end = pair.get(1).map_or(start + left, |end| end.0.min(start + left));
        taken = taken.union(&ChunkRanges::from(ChunkNum(start)..ChunkNum(end)));
        left -= end - start;
    }
    taken
}

/// `ranges` as the wire carries them: the boundaries, in chunks.
pub fn ranges_to_wire(ranges: &ChunkRanges) -> Vec<u64> {
    ranges.boundaries().iter().map(|chunk| chunk.0).collect()
}

/// Ranges read from the wire: strictly increasing boundaries, at most
/// [`MAX_WIRE_BOUNDARIES`], an even number (every range bounded).
pub fn ranges_from_wire(boundaries: &[u64]) -> Option<ChunkRanges> {
    let increasing = boundaries.windows(2).all(|pair| pair[0] < pair[1]);
    if !increasing || !boundaries.len().is_multiple_of(2) || boundaries.len() > MAX_WIRE_BOUNDARIES {
        return None;
    }
    let mut ranges = ChunkRanges::empty();
    for pair in boundaries.chunks_exact(2) {
        ranges = ranges.union(&ChunkRanges::from(ChunkNum(pair[0])..ChunkNum(pair[1])));
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(len: usize) -> Blob {
        Blob::new((0..len).map(|i| (i * 7 % 253) as u8).collect())
    }

    fn serve(blob: &Blob, ranges: &ChunkRanges) -> Vec<u8> {
        let mut out = Vec::new();
        blob.encode(ranges, &mut out).unwrap();
        out
    }

    #[test]
    fn requests_fill_the_window_and_cover_the_blob_once() {
        let blob = blob(3_000_000);
        let mut fetch = Fetch::with_window(blob.hash(), blob.len(), 256, 1024);
        let mut asked = ChunkRanges::empty();
        while !fetch.is_complete() {
            let mut round = Vec::new();
            while let Some(request) = fetch.next_request() {
                assert!(asked.intersection::<[ChunkNum; 2]>(&request).is_empty(), "a chunk asked for twice");
                asked = asked.union(&request);
                round.push(request);
            }
            assert!(round.iter().map(count).sum::<u64>() <= 1024, "the window bounds what is asked at once");
            for request in round {
                fetch.on_response(&request, &serve(&blob, &request)[..]).unwrap();
            }
        }
        assert_eq!(fetch.finish().unwrap().data(), blob.data());
    }

    #[test]
    fn after_a_lost_peer_only_what_is_missing_is_asked_again() {
        let blob = blob(1_000_000);
        let mut fetch = Fetch::with_window(blob.hash(), blob.len(), 128, 512);
        let first = fetch.next_request().unwrap();
        let second = fetch.next_request().unwrap();
        // The first answer arrives cut short; the second never does.
        let encoded = serve(&blob, &first);
        assert!(fetch.on_response(&first, &encoded[..encoded.len() / 2]).is_err());
        fetch.on_lost();
        let held = fetch.partial.present().clone();
        assert!(!held.is_empty());
        let mut asked_again = ChunkRanges::empty();
        while let Some(request) = fetch.next_request() {
            assert!(held.intersection::<[ChunkNum; 2]>(&request).is_empty(), "a held chunk asked for again");
            asked_again = asked_again.union(&request);
            fetch.on_response(&request, &serve(&blob, &request)[..]).unwrap();
        }
        assert!(asked_again.is_superset(&second), "the unanswered request is asked again");
        assert!(fetch.is_complete());
    }

    #[test]
    fn wire_ranges_round_trip_and_bad_ones_are_refused() {
        let ranges = ChunkRanges::from(ChunkNum(0)..ChunkNum(10))
            .union(&ChunkRanges::from(ChunkNum(20)..ChunkNum(25)));
        assert_eq!(ranges_from_wire(&ranges_to_wire(&ranges)), Some(ranges));
        assert_eq!(ranges_from_wire(&[5, 3]), None);
        assert_eq!(ranges_from_wire(&[1, 2, 3]), None);
        assert_eq!(ranges_from_wire(&vec![0; MAX_WIRE_BOUNDARIES + 2]), None);
        assert_eq!(ranges_from_wire(&[]), Some(ChunkRanges::empty()));
    }
}
