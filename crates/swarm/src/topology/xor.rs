//! The XOR metric over keys, as Kademlia and DXOS's MMST use it.
//!
//! The distance between two keys is their byte-wise XOR read as a 256-bit big-endian number, so
//! comparing distances is comparing byte arrays, and keys that share a longer prefix are nearer.

use mesh_keys::{KEY_LEN, PublicKey};

/// The XOR distance between two keys; arrays compare as big-endian numbers (lexicographically).
pub fn xor_distance(a: &PublicKey, b: &PublicKey) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for ((o, x), y) in out.iter_mut().zip(a.as_bytes()).zip(b.as_bytes()) {
        *o = x ^ y;
    }
    out
}

/// The peer of `peers` nearest to `own`; ties (only possible with duplicates) go to the first.
pub(crate) fn nearest<'a>(
    own: &PublicKey,
    peers: impl IntoIterator<Item = &'a PublicKey>,
) -> Option<PublicKey> {
    peers.into_iter().min_by_key(|p| xor_distance(own, p)).copied()
}

/// The peer of `peers` farthest from `own`.
pub(crate) fn farthest<'a>(
    own: &PublicKey,
    peers: impl IntoIterator<Item = &'a PublicKey>,
) -> Option<PublicKey> {
    peers.into_iter().max_by_key(|p| xor_distance(own, p)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key as key;

    #[test]
    fn distance_is_symmetric_and_zero_to_self() {
        assert_eq!(xor_distance(&key(7), &key(7)), [0u8; KEY_LEN]);
        assert_eq!(xor_distance(&key(3), &key(9)), xor_distance(&key(9), &key(3)));
    }

    #[test]
    fn longer_shared_prefix_is_nearer() {
        let own = key(0b1000_0000);
        // 0b1000_0001 shares 7 bits, 0b0111_1111 shares none although it is numerically adjacent.
        assert_eq!(nearest(&own, &[key(0b0111_1111), key(0b1000_0001)]), Some(key(0b1000_0001)));
        assert_eq!(farthest(&own, &[key(0b0111_1111), key(0b1000_0001)]), Some(key(0b0111_1111)));
        assert_eq!(nearest(&own, &[]), None);
    }
}
