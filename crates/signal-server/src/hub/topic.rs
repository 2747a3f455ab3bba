//! One topic's members, local and on other servers, and who is told about whom.

use std::collections::HashMap;

use mesh_proto::Timestamp;
use mesh_signal::view::IntroductionView;

use super::{Key, Registration};
use crate::{federation::ServerId, limiter::TokenBucket, mailbox::Change, metrics::Metrics};

#[derive(Debug)]
pub(super) struct Member {
    pub(super) since: Timestamp,
    /// The member's streams on this server.
    pub(super) registrations: Vec<Registration>,
    /// The federated servers that hold the member too.
    pub(super) servers: Vec<ServerId>,
}

impl Member {
    pub(super) fn local(since: Timestamp, registration: Registration) -> Self {
        Self { since, registrations: vec![registration], servers: Vec::new() }
    }

    pub(super) fn remote(since: Timestamp, server: ServerId) -> Self {
        Self { since, registrations: Vec::new(), servers: vec![server] }
    }

    /// Whether no server holds the member any more, this one included.
    pub(super) fn is_gone(&self) -> bool {
        self.registrations.is_empty() && self.servers.is_empty()
    }
}

#[derive(Debug)]
pub(super) struct Topic {
    pub(super) members: HashMap<Key, Member>,
    /// Registrations over all members, which [`crate::Limits::max_topic_members`] caps.
    pub(super) streams: usize,
    /// Members held only by other servers.
    pub(super) remote_only: usize,
    pub(super) joins: TokenBucket,
    /// Who was introduced to whom, when the server introduces through a bounded view; without
    /// one, every member knows every other.
    view: Option<IntroductionView<Key>>,
}

impl Topic {
    pub(super) fn new(joins: TokenBucket, view: Option<IntroductionView<Key>>) -> Self {
        Self { members: HashMap::new(), streams: 0, remote_only: 0, joins, view }
    }

    /// `peer`, now a member (`new`: it was not one before), is announced to the members that
    /// should know of it. Returns the members `peer` should know of, with their arrival times.
    pub(super) fn arrive(&mut self, peer: &Key, new: bool, metrics: &Metrics) -> Vec<(Key, Timestamp)> {
        let Some(since) = self.members.get(peer).map(|member| member.since) else { return Vec::new() };
        let arrival = Change::Available { since, new };
        let others: Vec<Key> = match &mut self.view {
            // A second stream of a member meets whom the member already knows.
            Some(view) if new => view.join(peer.clone()).into_iter().map(|(_, other)| other).collect(),
            Some(view) => view.known(peer).cloned().collect(),
            None => self.members.keys().filter(|key| *key != peer).cloned().collect(),
        };
        let mut known = Vec::with_capacity(others.len());
        for other in others {
            self.post(&other, peer, arrival, metrics);
            known.extend(self.members.get(&other).map(|member| (other, member.since)));
        }
        known
    }

    /// `peer`, no longer a member, is announced gone to the members that knew of it.
    pub(super) fn depart(&mut self, peer: &Key, metrics: &Metrics) {
        let Some(view) = &mut self.view else {
            for member in self.members.values() {
                for other in &member.registrations {
                    other.post_event(peer, Change::Left, metrics);
                }
            }
            return;
        };
        let (knew, pairs) = view.leave(peer);
        for other in &knew {
            self.post(other, peer, Change::Left, metrics);
        }
        // The peers around the one gone meet each other, so key-order neighbours stay known.
        for (a, b) in &pairs {
            if let (Some(member_a), Some(member_b)) = (self.members.get(a), self.members.get(b)) {
                self.post(a, b, Change::Available { since: member_b.since, new: true }, metrics);
                self.post(b, a, Change::Available { since: member_a.since, new: true }, metrics);
            }
        }
    }

    /// The members with streams on this server.
    pub(super) fn local_members(&self) -> impl Iterator<Item = (&Key, &Member)> {
        self.members.iter().filter(|(_, member)| !member.registrations.is_empty())
    }

    /// Tells `to`'s streams about `peer`'s change.
    fn post(&self, to: &Key, peer: &Key, change: Change, metrics: &Metrics) {
        for registration in self.members.get(to).map(|member| &member.registrations[..]).unwrap_or_default() {
            registration.post_event(peer, change, metrics);
        }
    }
}
