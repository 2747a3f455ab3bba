//! Tree mode's recent messages, kept to answer `Graft`s: the newest ones, bounded by count.

use std::collections::{HashMap, VecDeque};

use mesh_keys::PublicKey;
use mesh_proto::dxos::mesh::teleport::gossip::GossipMessage;

#[derive(Debug)]
pub(crate) struct Cache {
    messages: HashMap<PublicKey, GossipMessage>,
    /// Ids, oldest first.
    order: VecDeque<PublicKey>,
    capacity: usize,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { messages: HashMap::new(), order: VecDeque::new(), capacity }
    }

    pub(crate) fn insert(&mut self, id: PublicKey, message: GossipMessage) {
        if self.capacity == 0 || self.messages.insert(id, message).is_some() {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.messages.remove(&old);
            }
        }
    }

    pub(crate) fn get(&self, id: &PublicKey) -> Option<&GossipMessage> {
        self.messages.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_messages_are_kept() {
        let mut cache = Cache::new(2);
        let ids: Vec<PublicKey> = (0..3).map(|_| PublicKey::random()).collect();
        for id in &ids {
            cache.insert(*id, GossipMessage::default());
        }
        assert!(cache.get(&ids[0]).is_none());
        assert!(cache.get(&ids[1]).is_some() && cache.get(&ids[2]).is_some());
    }
}
