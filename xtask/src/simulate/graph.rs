//! A snapshot of the connection graph and the figures computed on it: components, degrees,
//! diameter (exact for small graphs, a sampled lower bound for large ones) and a flood broadcast.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    time::Duration,
};

use mesh_keys::PublicKey;

/// Graphs up to this many nodes get an exact diameter (BFS from every node).
const EXACT_DIAMETER_UP_TO: usize = 400;
/// BFS sources for the diameter estimate of larger graphs.
const DIAMETER_SOURCES: usize = 4;

/// The undirected graph of connections both ends see as up.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) keys: Vec<PublicKey>,
    pub(crate) adjacency: Vec<Vec<u32>>,
}

/// A node index in a graph too large for `u32` cannot happen: runs are capped at 100,000 peers.
fn idx(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Graph {
    /// The graph of `connections` (each node's peers), keeping only edges both ends report.
    pub(crate) fn new(connections: &BTreeMap<PublicKey, Vec<PublicKey>>) -> Self {
        let keys: Vec<PublicKey> = connections.keys().copied().collect();
        let index: BTreeMap<PublicKey, u32> = keys.iter().enumerate().map(|(i, k)| (*k, idx(i))).collect();
        let adjacency = connections
            .iter()
            .map(|(own, peers)| {
                peers
                    .iter()
                    .filter(|p| connections.get(*p).is_some_and(|back| back.binary_search(own).is_ok()))
                    .filter_map(|p| index.get(p).copied())
                    .collect()
            })
            .collect();
        Self { keys, adjacency }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn degree(&self, node: usize) -> usize {
        self.adjacency[node].len()
    }

    pub(crate) fn edges(&self) -> usize {
        self.adjacency.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Each node's component number, and the number of components.
    pub(crate) fn components(&self) -> (Vec<u32>, usize) {
        let mut component = vec![u32::MAX; self.len()];
        let mut count = 0;
        for start in 0..self.len() {
            if component[start] != u32::MAX {
                continue;
            }
            component[start] = idx(count);
            let mut stack = vec![start];
            while let Some(node) = stack.pop() {
                for &next in &self.adjacency[node] {
                    let next = next as usize;
                    if component[next] == u32::MAX {
                        component[next] = idx(count);
                        stack.push(next);
                    }
                }
            }
            count += 1;
        }
        (component, count)
    }

    /// Hop distances from `source` (`u32::MAX` where unreachable).
    fn bfs(&self, source: usize) -> Vec<u32> {
        let mut distance = vec![u32::MAX; self.len()];
        distance[source] = 0;
        let mut queue = VecDeque::from([source]);
        while let Some(node) = queue.pop_front() {
            for &next in &self.adjacency[node] {
                let next = next as usize;
                if distance[next] == u32::MAX {
                    distance[next] = distance[node] + 1;
                    queue.push_back(next);
                }
            }
        }
        distance
    }

    /// The largest finite eccentricity (the diameter of the widest component): exact for small
    /// graphs, else the largest seen from `DIAMETER_SOURCES` nodes `pick` chooses plus a double
    /// sweep from the farthest (a lower bound, usually tight). Returns it and whether it is exact.
    pub(crate) fn diameter(&self, mut pick: impl FnMut(usize) -> usize) -> (u32, bool) {
        if self.len() == 0 {
            return (0, true);
        }
        let eccentricity = |distance: &[u32]| -> (u32, usize) {
            distance
                .iter()
                .enumerate()
                .filter(|(_, d)| **d != u32::MAX)
                .map(|(i, d)| (*d, i))
                .max()
                .unwrap_or((0, 0))
        };
        if self.len() <= EXACT_DIAMETER_UP_TO {
            let best = (0..self.len()).map(|s| eccentricity(&self.bfs(s)).0).max().unwrap_or(0);
            return (best, true);
        }
        let mut best = (0, 0);
        for _ in 0..DIAMETER_SOURCES {
            best = best.max(eccentricity(&self.bfs(pick(self.len()))));
        }
        let swept = eccentricity(&self.bfs(best.1));
        (best.0.max(swept.0), false)
    }

    /// A flood from `source` over the graph: the arrival time at every node it reaches
    /// (Dijkstra), source excluded. A hop from `a` to `b` takes `hop(a, b)` after `a`'s uplink has
    /// sent the message to each neighbour before `b`, `send_time` each.
    pub(crate) fn flood(
        &self,
        source: usize,
        send_time: Duration,
        hop: impl Fn(&PublicKey, &PublicKey) -> Duration,
    ) -> Vec<Duration> {
        let mut best = vec![Duration::MAX; self.len()];
        let mut parent = vec![usize::MAX; self.len()];
        best[source] = Duration::ZERO;
        let mut heap = BinaryHeap::from([Reverse((Duration::ZERO, source))]);
        while let Some(Reverse((at, node))) = heap.pop() {
            if at > best[node] {
                continue;
            }
            // The peer forwards to each neighbour but the one it heard from, one after another
            // through its uplink.
            let mut queued = Duration::ZERO;
            for &next in &self.adjacency[node] {
                let next = next as usize;
                if next == parent[node] {
                    continue;
                }
                queued += send_time;
                let arrival = at + queued + hop(&self.keys[node], &self.keys[next]);
                if arrival < best[next] {
                    best[next] = arrival;
                    parent[next] = node;
                    heap.push(Reverse((arrival, next)));
                }
            }
        }
        best.into_iter()
            .enumerate()
            .filter(|(i, at)| *i != source && *at != Duration::MAX)
            .map(|(_, at)| at)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_path_and_an_island() {
        let (a, b, c, d) = (key(1), key(2), key(3), key(4));
        let connections = BTreeMap::from([(a, vec![b]), (b, vec![a, c]), (c, vec![b]), (d, vec![a])]);
        let graph = Graph::new(&connections);
        assert_eq!(graph.edges(), 2, "d->a is one-sided and does not count");
        assert_eq!(graph.components().1, 2);
        assert_eq!(graph.diameter(|_| 0), (2, true));
        let arrivals = graph.flood(0, Duration::ZERO, |_, _| Duration::from_millis(10));
        assert_eq!(arrivals, vec![Duration::from_millis(10), Duration::from_millis(20)]);
    }

    #[test]
    fn a_busy_uplink_delays_later_neighbours_but_not_the_sender() {
        let (centre, a, b, c) = (key(1), key(2), key(3), key(4));
        let connections = BTreeMap::from([
            (centre, vec![a, b, c]),
            (a, vec![centre]),
            (b, vec![centre]),
            (c, vec![centre]),
        ]);
        let graph = Graph::new(&connections);
        let ms = Duration::from_millis;
        let mut from_centre = graph.flood(0, ms(1), |_, _| ms(10));
        from_centre.sort_unstable();
        assert_eq!(from_centre, vec![ms(11), ms(12), ms(13)]);
        // From a leaf, the centre does not send back to where the message came from.
        let mut from_leaf = graph.flood(1, ms(1), |_, _| ms(10));
        from_leaf.sort_unstable();
        assert_eq!(from_leaf, vec![ms(11), ms(22), ms(23)]);
    }
}
