//! A peer's neighbours on the key-order ring of the live peers, MMST's connectivity backbone.
//!
//! Sort the live peers (this one, its connections and its candidates) by key and close the list into
//! a cycle: each peer's predecessor and successor there are its ring neighbours. If every peer keeps
//! the links to its ring neighbours, the graph contains that cycle, and a cycle through every peer is
//! connected; when a peer leaves, its two neighbours become each other's and link up. Because
//! all peers of a swarm learn the same membership from the signal server, they agree on the ring
//! once discovery settles.

use mesh_keys::PublicKey;

/// The predecessor and successor of `own` in the cyclic key order of `peers` (`own` and duplicates
/// are ignored; the input need not be sorted). With one other peer both are that peer; with none
/// there are none.
pub(crate) fn neighbours<'a>(
    own: &PublicKey,
    peers: impl IntoIterator<Item = &'a PublicKey>,
) -> Option<(PublicKey, PublicKey)> {
    // The nearest key above own, the lowest key overall (the successor when own is the highest),
    // and symmetrically below.
    let (mut above, mut lowest, mut below, mut highest) = (None, None, None, None);
    for p in peers {
        if p == own {
            continue;
        }
        if p > own && above.is_none_or(|a| p < a) {
            above = Some(p);
        }
        if p < own && below.is_none_or(|b| p > b) {
            below = Some(p);
        }
        if lowest.is_none_or(|l| p < l) {
            lowest = Some(p);
        }
        if highest.is_none_or(|h| p > h) {
            highest = Some(p);
        }
    }
    let successor = above.or(lowest)?;
    let predecessor = below.or(highest)?;
    Some((*predecessor, *successor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key as key;

    #[test]
    fn middle_peer_has_adjacent_keys() {
        let peers = [key(9), key(1), key(5), key(3)];
        assert_eq!(neighbours(&key(5), &peers), Some((key(3), key(9))));
    }

    #[test]
    fn ring_wraps_around_at_both_ends() {
        let peers = [key(1), key(5), key(9)];
        assert_eq!(neighbours(&key(9), &peers), Some((key(5), key(1))));
        assert_eq!(neighbours(&key(1), &peers), Some((key(9), key(5))));
    }

    #[test]
    fn two_peers_and_one_peer() {
        assert_eq!(neighbours(&key(1), &[key(4)]), Some((key(4), key(4))));
        assert_eq!(neighbours(&key(1), &[key(1)]), None);
        assert_eq!(neighbours(&key(1), &[]), None);
    }
}
