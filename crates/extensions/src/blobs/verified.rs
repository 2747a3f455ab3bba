//! Complete and partial blobs over `bao-tree`'s verified streaming.

use std::{fmt, io, str::FromStr};

use bao_tree::{
    BaoTree, BlockSize, ChunkNum, ChunkRanges,
    io::{
        BaoContentItem, Leaf, Parent,
        outboard::PreOrderMemOutboard,
        sync::{DecodeResponseIter, OutboardMut, encode_ranges_validated},
    },
};

/// Chunk groups of 16 chunks: each verified piece is 16 KiB (the last may be shorter).
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
/// The bytes of one chunk group, the unit that is verified and kept.
pub const GROUP_BYTES: u64 = 16 * 1024;
/// BLAKE3's chunk.
const CHUNK_BYTES: u64 = 1024;

/// A blob's name: the BLAKE3 hash of its content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash([u8; 32]);

impl BlobHash {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*bao_tree::blake3::hash(data).as_bytes())
    }

    /// From its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn blake3(self) -> bao_tree::blake3::Hash {
        bao_tree::blake3::Hash::from_bytes(self.0)
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &hex::encode(self.0)[..16])
    }
}

/// A blob hash that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a blob hash is 64 hex characters")]
pub struct ParseBlobHashError;

impl FromStr for BlobHash {
    type Err = ParseBlobHashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(text).map_err(|_| ParseBlobHashError)?;
        bytes.try_into().map(Self).map_err(|_| ParseBlobHashError)
    }
}

/// A complete blob, ready to serve any of its ranges.
pub struct Blob {
    data: Vec<u8>,
    outboard: PreOrderMemOutboard,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("hash", &self.hash()).field("len", &self.len()).finish()
    }
}

impl Blob {
    /// The blob holding `data`.
    pub fn new(data: Vec<u8>) -> Self {
        let outboard = PreOrderMemOutboard::create(&data[..], BLOCK_SIZE);
        Self { data, outboard }
    }

    /// Its name.
    pub fn hash(&self) -> BlobHash {
        BlobHash(*self.outboard.root.as_bytes())
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Its content.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Writes `ranges` (in chunks of 1 KiB) in verified streaming form to `out`.
    pub fn encode(&self, ranges: &ChunkRanges, out: &mut impl io::Write) -> io::Result<()> {
        encode_ranges_validated(&self.data[..], &self.outboard, ranges, out).map_err(io::Error::other)
    }
}

/// Why a response was not (wholly) taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// A piece did not match the hash; what came before it was kept.
    #[error("a piece of the response did not verify: {0}")]
    Invalid(String),
}

/// A blob being fetched: the verified pieces it holds so far, and what is missing.
pub struct PartialBlob {
    data: Vec<u8>,
    outboard: PreOrderMemOutboard,
    present: ChunkRanges,
}

impl fmt::Debug for PartialBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartialBlob")
            .field("hash", &self.hash())
            .field("len", &self.data.len())
            .field("present", &self.present)
            .finish()
    }
}

impl PartialBlob {
    /// An empty blob of `len` bytes named `hash`, to fill. It holds `len` bytes (and its hash tree,
    /// about 1/256 of that) in memory at once: a size a remote announced must be checked against a
    /// limit before it gets here.
    pub fn new(hash: BlobHash, len: u64) -> Self {
        let tree = BaoTree::new(len, BLOCK_SIZE);
        let outboard = PreOrderMemOutboard {
            root: hash.blake3(),
            tree,
            data: vec![0; usize::try_from(tree.outboard_size()).unwrap_or(usize::MAX)],
        };
        let data = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        Self { data, outboard, present: ChunkRanges::empty() }
    }

    /// Its name.
    pub fn hash(&self) -> BlobHash {
        BlobHash(*self.outboard.root.as_bytes())
    }

    /// The whole blob, in chunks.
    fn all(&self) -> ChunkRanges {
        ChunkRanges::from(..self.outboard.tree.chunks())
    }

    /// The chunk ranges not held yet.
    pub fn missing(&self) -> ChunkRanges {
        self.all().difference(&self.present)
    }

    /// The chunk ranges held (each verified).
    pub fn present(&self) -> &ChunkRanges {
        &self.present
    }

    /// Takes a response for `ranges` from `encoded`, keeping each piece once it verified; returns
    /// how many bytes of verified pieces it read (a piece held already counts again). On an error (a piece that does not verify, or the response
    /// cut short) the pieces before it stay kept.
    pub fn receive(&mut self, ranges: &ChunkRanges, encoded: impl io::Read) -> Result<u64, ReceiveError> {
        let (root, tree) = (self.outboard.root, self.outboard.tree);
        let mut kept = 0;
        for item in DecodeResponseIter::new(root, tree, encoded, ranges) {
            match item.map_err(|err| ReceiveError::Invalid(err.to_string()))? {
                BaoContentItem::Parent(Parent { node, pair }) => {
                    self.outboard.save(node, &pair).map_err(|err| ReceiveError::Invalid(err.to_string()))?;
                }
                BaoContentItem::Leaf(Leaf { offset, data }) => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    let Some(target) = self.data.get_mut(start..start.saturating_add(data.len())) else {
                        return Err(ReceiveError::Invalid("a piece past the blob's end".into()));
                    };
                    target.copy_from_slice(&data);
                    let first = ChunkNum(offset / CHUNK_BYTES);
                    let end = ChunkNum((offset + data.len() as u64).div_ceil(CHUNK_BYTES));
                    let piece = ChunkRanges::from(first..end);
                    kept += data.len() as u64;
                    self.present = self.present.union(&piece);
                }
            }
        }
        Ok(kept)
    }

    /// Whether every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// The complete blob, or this one back if chunks are missing.
    pub fn finish(self) -> Result<Blob, Box<Self>> {
        if !self.is_complete() {
            return Err(Box::new(self));
        }
        Ok(Blob { data: self.data, outboard: self.outboard })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn encode(blob: &Blob, ranges: &ChunkRanges) -> Vec<u8> {
        let mut out = Vec::new();
        blob.encode(ranges, &mut out).unwrap();
        out
    }

    #[test]
    fn a_whole_blob_crosses_verified() {
        let blob = Blob::new(data(300_000));
        assert_eq!(blob.hash(), BlobHash::of(blob.data()));
        let mut partial = PartialBlob::new(blob.hash(), blob.len());
        let all = ChunkRanges::all();
        partial.receive(&all, &encode(&blob, &all)[..]).unwrap();
        assert!(partial.is_complete());
        assert_eq!(partial.finish().unwrap().data(), blob.data());
    }

    #[test]
    fn a_cut_transfer_keeps_what_verified_and_resumes_with_the_rest() {
        let blob = Blob::new(data(200_000));
        let all = ChunkRanges::all();
        let encoded = encode(&blob, &all);
        let mut partial = PartialBlob::new(blob.hash(), blob.len());
        // The connection drops after 100 KB of the response.
        assert!(partial.receive(&all, &encoded[..100_000]).is_err());
        let missing = partial.missing();
        assert!(!missing.is_empty() && !partial.present().is_empty());
        // The rest, asked for by range (from any peer that has the blob).
        partial.receive(&missing, &encode(&blob, &missing)[..]).unwrap();
        assert_eq!(partial.finish().unwrap().data(), blob.data());
    }

    #[test]
    fn a_corrupted_piece_is_refused_and_nothing_after_it_kept() {
        let blob = Blob::new(data(100_000));
        let all = ChunkRanges::all();
        let mut encoded = encode(&blob, &all);
        let last = encoded.len() - 10;
        encoded[last] ^= 1;
        let mut partial = PartialBlob::new(blob.hash(), blob.len());
        assert!(matches!(partial.receive(&all, &encoded[..]), Err(ReceiveError::Invalid(_))));
        assert!(!partial.is_complete() && !partial.present().is_empty(), "the pieces before it are kept");
        // What was kept is correct: asking for the missing rest completes the blob.
        let missing = partial.missing();
        partial.receive(&missing, &encode(&blob, &missing)[..]).unwrap();
        assert_eq!(partial.finish().unwrap().data(), blob.data());
    }

    #[test]
    fn a_response_for_another_blob_is_refused() {
        let (blob, other) = (Blob::new(data(50_000)), Blob::new(vec![7; 50_000]));
        let all = ChunkRanges::all();
        let mut partial = PartialBlob::new(blob.hash(), blob.len());
        assert!(partial.receive(&all, &encode(&other, &all)[..]).is_err());
        assert!(partial.present().is_empty());
    }

    #[test]
    fn hashes_read_back_from_hex() {
        let hash = BlobHash::of(b"hello");
        assert_eq!(hash.to_string().parse::<BlobHash>().unwrap(), hash);
        assert!("zz".parse::<BlobHash>().is_err());
    }
}
