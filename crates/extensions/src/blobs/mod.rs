//! Blobs: content-addressed data that any peer holding it can serve, verified as it arrives.
//!
//! A blob is named by its BLAKE3 hash ([`BlobHash`]). [`Blob`] is a complete blob with the hash
//! tree (outboard) that lets it serve any chunk ranges in BLAKE3 verified streaming form
//! (`bao-tree`, chunk groups of [`GROUP_BYTES`]); [`PartialBlob`] takes such responses, checks
//! every chunk group against the hash before keeping it, remembers which ranges it holds, and
//! says what is still missing, so a transfer cut anywhere resumes where it stopped, from the same
//! peer or another. [`Fetch`] plans the requests of one fetch: a bounded window of chunks asked
//! for at once, never a chunk already held or already asked for.

mod fetch;
mod sync;
mod verified;

pub use bao_tree::{ChunkNum, ChunkRanges};
pub use fetch::{
    Fetch, MAX_WIRE_BOUNDARIES, REQUEST_CHUNKS, WINDOW_CHUNKS, ranges_from_wire, ranges_to_wire,
};
pub use sync::{BlobStats, Blobs, BlobsConfig, BlobsExtension, EXTENSION, FetchError, FetchHandle};
pub use verified::{Blob, BlobHash, GROUP_BYTES, ParseBlobHashError, PartialBlob, ReceiveError};
