//! Merging the events of several signal sources, without I/O.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
};

use mesh_keys::{DiscoveryKey, PublicKey};

use crate::{ConnectionState, Event, SignalMessage};

/// Messages remembered to drop duplicates arriving through other servers.
const REMEMBERED_MESSAGES: usize = 8192;

/// Merges the event streams of several sources, dropping what another source already reported.
///
/// A peer is available while at least one source vouches for it: PeerAvailable is passed on when
/// the first source reports it, PeerLeft when the last one that reported it withdraws it, by a
/// PeerLeft or by disconnecting (a source that is not connected vouches for nobody; its client
/// announces the peers still there again on reconnect). Each message is passed on once.
#[derive(Debug, Default)]
pub struct Merge {
    /// Topic → peer → the sources vouching for it.
    available: HashMap<DiscoveryKey, HashMap<PublicKey, HashSet<usize>>>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
}

impl Merge {
    /// An empty merge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an event from source `source`; returns what the user should see of it: nothing, the
    /// event itself, or (when a source disconnects) the departures of the peers only it vouched
    /// for, then the event.
    pub fn accept(&mut self, source: usize, event: Event) -> Vec<Event> {
        match &event {
            Event::PeerAvailable { topic, peer, .. } => {
                if self.vouch(source, *topic, *peer) {
                    return vec![event];
                }
            }
            Event::PeerLeft { topic, peer } => {
                if self.withdraw(source, *topic, *peer) {
                    return vec![event];
                }
            }
            Event::Message(message) => {
                if self.first_sighting(message) {
                    return vec![event];
                }
            }
            Event::Connection { state, .. } => {
                let mut merged = Vec::new();
                if *state != ConnectionState::Connected {
                    merged = self.withdraw_source(source);
                }
                merged.push(event);
                return merged;
            }
        }
        Vec::new()
    }

    /// Source `source` says `members` are in `topic` now (after its events were missed): it
    /// withdraws the peers it vouched for that are not among them and vouches for the others.
    /// Returns the departures and arrivals the user should see.
    pub fn resync(&mut self, source: usize, topic: DiscoveryKey, members: &[PublicKey]) -> Vec<Event> {
        let current: HashSet<PublicKey> = members.iter().copied().collect();
        let stale: Vec<PublicKey> = self
            .available
            .get(&topic)
            .into_iter()
            .flatten()
            .filter(|(peer, sources)| sources.contains(&source) && !current.contains(peer))
            .map(|(peer, _)| *peer)
            .collect();
        let mut merged = Vec::new();
        for peer in stale {
            if self.withdraw(source, topic, peer) {
                merged.push(Event::PeerLeft { topic, peer });
            }
        }
        for peer in current {
            if self.vouch(source, topic, peer) {
                merged.push(Event::PeerAvailable { topic, peer, since: None });
            }
        }
        merged
    }

    /// The peers at least one source vouches for in `topic`.
    pub fn members(&self, topic: DiscoveryKey) -> Vec<PublicKey> {
        self.available.get(&topic).map(|peers| peers.keys().copied().collect()).unwrap_or_default()
    }

    /// Records that `source` vouches for `peer`; returns whether it is the first to.
    fn vouch(&mut self, source: usize, topic: DiscoveryKey, peer: PublicKey) -> bool {
        let sources = self.available.entry(topic).or_default().entry(peer).or_default();
        let first = sources.is_empty();
        sources.insert(source);
        first
    }

    /// Records that `source` no longer vouches for `peer`; returns whether it was the last.
    fn withdraw(&mut self, source: usize, topic: DiscoveryKey, peer: PublicKey) -> bool {
        let Some(peers) = self.available.get_mut(&topic) else { return false };
        let Some(sources) = peers.get_mut(&peer) else { return false };
        if !sources.remove(&source) || !sources.is_empty() {
            return false;
        }
        peers.remove(&peer);
        if peers.is_empty() {
            self.available.remove(&topic);
        }
        true
    }

    /// Withdraws everything `source` vouched for; returns the departures.
    fn withdraw_source(&mut self, source: usize) -> Vec<Event> {
        let vouched: Vec<(DiscoveryKey, PublicKey)> = self
            .available
            .iter()
            .flat_map(|(topic, peers)| {
                peers.iter().filter(|(_, sources)| sources.contains(&source)).map(|(peer, _)| (*topic, *peer))
            })
            .collect();
        vouched
            .into_iter()
            .filter(|(topic, peer)| self.withdraw(source, *topic, *peer))
            .map(|(topic, peer)| Event::PeerLeft { topic, peer })
            .collect()
    }

    fn first_sighting(&mut self, message: &SignalMessage) -> bool {
        let mut hasher = DefaultHasher::new();
        message.hash(&mut hasher);
        let digest = hasher.finish();
        if !self.seen.insert(digest) {
            return false;
        }
        self.seen_order.push_back(digest);
        if self.seen_order.len() > REMEMBERED_MESSAGES
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use mesh_keys::Keypair;
    use mesh_proto::Any;

    use super::*;

    fn key() -> PublicKey {
        Keypair::generate().public()
    }

    fn down() -> Event {
        Event::Connection { url: "ws://a".into(), state: ConnectionState::Disconnected }
    }

    #[test]
    fn a_peer_is_announced_once_and_leaves_with_its_last_source() {
        let (topic, peer) = (DiscoveryKey::from_party(&key()), key());
        let available = Event::PeerAvailable { topic, peer, since: None };
        let left = Event::PeerLeft { topic, peer };
        let mut merge = Merge::new();
        assert_eq!(merge.accept(0, available.clone()), std::slice::from_ref(&available));
        assert!(merge.accept(1, available.clone()).is_empty());
        assert!(merge.accept(0, left.clone()).is_empty());
        assert_eq!(merge.accept(1, left.clone()), std::slice::from_ref(&left));
        assert!(merge.accept(1, left).is_empty(), "a repeated PeerLeft is dropped");
        assert!(merge.members(topic).is_empty());
    }

    #[test]
    fn a_disconnected_source_withdraws_the_peers_only_it_vouched_for() {
        let (topic, shared, only_here) = (DiscoveryKey::from_party(&key()), key(), key());
        let mut merge = Merge::new();
        merge.accept(0, Event::PeerAvailable { topic, peer: shared, since: None });
        merge.accept(1, Event::PeerAvailable { topic, peer: shared, since: None });
        merge.accept(0, Event::PeerAvailable { topic, peer: only_here, since: None });
        assert_eq!(merge.accept(0, down()), [Event::PeerLeft { topic, peer: only_here }, down()]);
        assert_eq!(merge.members(topic), [shared]);
        // The source's own PeerLefts, arriving after, change nothing.
        assert!(merge.accept(0, Event::PeerLeft { topic, peer: shared }).is_empty());
        // After the reconnect the source announces the peer again, and the user hears of it again.
        let back = Event::PeerAvailable { topic, peer: only_here, since: None };
        assert_eq!(merge.accept(0, back.clone()), [back]);
    }

    #[test]
    fn a_resync_withdraws_what_the_source_no_longer_reports_and_adds_what_it_missed() {
        let (topic, gone, stays, missed) = (DiscoveryKey::from_party(&key()), key(), key(), key());
        let mut merge = Merge::new();
        merge.accept(0, Event::PeerAvailable { topic, peer: gone, since: None });
        merge.accept(0, Event::PeerAvailable { topic, peer: stays, since: None });
        let merged = merge.resync(0, topic, &[stays, missed]);
        assert_eq!(
            merged,
            [
                Event::PeerLeft { topic, peer: gone },
                Event::PeerAvailable { topic, peer: missed, since: None }
            ]
        );
        let mut members = merge.members(topic);
        members.sort();
        let mut expected = vec![stays, missed];
        expected.sort();
        assert_eq!(members, expected);
    }

    #[test]
    fn a_message_through_two_servers_is_delivered_once() {
        let message = SignalMessage {
            author: key(),
            recipient: key(),
            payload: Any { type_url: "t".into(), value: vec![1, 2, 3] },
        };
        let mut merge = Merge::new();
        assert_eq!(merge.accept(0, Event::Message(message.clone())).len(), 1);
        assert!(merge.accept(1, Event::Message(message.clone())).is_empty());
        let other = SignalMessage { payload: Any { type_url: "t".into(), value: vec![4] }, ..message };
        assert_eq!(merge.accept(1, Event::Message(other)).len(), 1);
    }
}
