//! Blobs: content-addressed data that any peer holding it can serve, verified as it arrives.
//!
//! A blob is named by its BLAKE3 hash ([`BlobHash`]). [`Blob`] is a complete blob with the hash
//! tree (outboard) that lets it serve any chunk ranges in BLAKE3 verified streaming form
//! (`bao-tree`, chunk groups of [`GROUP_BYTES`]); [`PartialBlob`] takes such responses, checks
//! every chunk group against the hash before keeping it, remembers which ranges it holds, and
//! says what is still missing, so a transfer cut anywhere resumes where it stopped, from the same
//! peer or another.

mod verified;

pub use bao_tree::ChunkRanges;
pub use verified::{Blob, BlobHash, GROUP_BYTES, ParseBlobHashError, PartialBlob, ReceiveError};
