//! The swarm of one topic as a sans-IO state machine.
//!
//! [`Swarm`] takes what signaling, the reliable messenger and the transports report (`handle_*`,
//! each with the current time), asks its topology which connections to have, and queues what the
//! driver must do ([`Swarm::poll_output`]): send swarm messages, open, signal and close
//! transports, and tell the application. [`Swarm::poll_timeout`] says when to call
//! [`Swarm::handle_timeout`]. It never reads a clock, spawns, or touches a socket; session and
//! message ids come from a seeded generator, so a run is reproducible.
//!
//! Link nonces: when told its transports authenticate links ([`Swarm::with_link_nonces`]), the
//! core puts a fresh nonce from its generator in each offer, and in each answer to an offer that
//! carried one (a mesh extension DXOS peers skip), and hands both nonces to the transport
//! ([`Output::OpenTransport`]'s `link`), which then makes both ends prove their keys.
//!
//! Glare rules: the lower key wins. A peer with the higher key waits
//! [`SwarmConfig::initiation_delay`] before initiating, so the lower key's offer usually comes
//! first; when offers cross, the lower key's offer displaces the higher key's connection and the
//! higher key's offer is refused. Beyond DXOS: an offer from a peer this side believes connected,
//! for another session, means the remote lost that connection (it restarted): the old one is
//! replaced at once instead of lingering until it times out.
//!
//! Bounds: a remote can make the swarm hold only so much. A peer is tracked while signaling
//! advertises it or while it has a connection, and at most [`SwarmConfig::max_peers`] peers are.
//! An offer from a peer that is not tracked (a stranger: anyone who knows our key and the topic
//! can send one) is accepted only if the topology wants it and a place among the connections
//! being set up is free at once; it never waits for one, so strangers hold at most
//! [`SwarmConfig::max_initiating`] places and never queue ahead of advertised peers. A declined
//! stranger gets no answer (its answer timeout ends the attempt), so a flood of spoofed offers
//! neither grows state nor makes this side send. Signals buffered before a connection's transport
//! exists are capped in count and bytes, and every connection the remote knows of has a deadline
//! until it is up (an initiation of ours waiting for a place has not sent its session anywhere).

use std::{
    array::TryFromSliceError,
    collections::{BTreeMap, VecDeque},
    time::Instant,
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{
    Struct,
    dxos::mesh::swarm::{Answer, MessageData, Offer, Signal, SignalBatch, SwarmMessage, message_data},
};
use mesh_transport::NONCE_LEN;
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::{
    CloseReason, ConnectionError, ConnectionState, Event, Output, SwarmConfig,
    connection::Connection,
    limiter::Limiter,
    topology::{Action, SwarmState, Topology},
};

/// A peer the swarm tracks: one that signaling advertises, or that has a connection (an entry
/// that is neither is removed at once, see `Swarm::forget_if_idle`).
#[derive(Debug, Default)]
struct Peer {
    /// The signal server says it is in the swarm.
    advertising: bool,
    connection: Option<Connection>,
    /// Failed connections in a row, which set the reconnect delay.
    failures: usize,
    /// No new connection before this time.
    available_at: Option<Instant>,
    /// A connection to initiate at this time (the higher key's delay).
    initiate_at: Option<Instant>,
}

/// An offer as the swarm takes it: who sent it, for which connection attempt, under which
/// message id, and the remote's link nonce if it sent one.
#[derive(Debug, Clone, Copy)]
struct IncomingOffer {
    from: PublicKey,
    session: PublicKey,
    offer_id: PublicKey,
    remote_nonce: Option<[u8; NONCE_LEN]>,
}

/// The swarm of one topic.
#[derive(Debug)]
pub struct Swarm {
    own: PublicKey,
    topic: DiscoveryKey,
    config: SwarmConfig,
    topology: Box<dyn Topology>,
    rng: SmallRng,
    peers: BTreeMap<PublicKey, Peer>,
    limiter: Limiter,
    outputs: VecDeque<Output>,
    left: bool,
    /// Exchange link nonces in offers and answers.
    link_nonces: bool,
}

impl Swarm {
    /// A swarm of `topic` as `own`, keeping the connections `topology` asks for. `seed` makes the
    /// session and message ids reproducible.
    pub fn new(
        own: PublicKey,
        topic: DiscoveryKey,
        topology: Box<dyn Topology>,
        config: SwarmConfig,
        seed: u64,
    ) -> Self {
        let limiter = Limiter::new(config.max_initiating);
        Self {
            own,
            topic,
            config,
            topology,
            rng: SmallRng::seed_from_u64(seed),
            peers: BTreeMap::new(),
            limiter,
            outputs: VecDeque::new(),
            left: false,
            link_nonces: false,
        }
    }

    /// Exchanges link nonces with remotes that do too, for transports that authenticate links
    /// ([`TransportFactory::authenticates_links`](mesh_transport::TransportFactory::authenticates_links)).
    pub fn with_link_nonces(mut self, enabled: bool) -> Self {
        self.link_nonces = enabled;
        self
    }

    /// This peer.
    pub fn own(&self) -> PublicKey {
        self.own
    }

    /// The topic.
    pub fn topic(&self) -> DiscoveryKey {
        self.topic
    }

    /// The timings and bounds this swarm runs with.
    pub fn config(&self) -> &SwarmConfig {
        &self.config
    }

    /// Peers with a connection that is up.
    pub fn connected(&self) -> Vec<PublicKey> {
        self.peers
            .iter()
            .filter(|(_, peer)| {
                peer.connection.as_ref().is_some_and(|c| c.state == ConnectionState::Connected)
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// How many peers the swarm tracks (at most [`SwarmConfig::max_peers`]).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The state of the connection to `peer`, if there is one.
    pub fn connection_state(&self, peer: &PublicKey) -> Option<ConnectionState> {
        self.peers.get(peer).and_then(|p| p.connection.as_ref()).map(|c| c.state)
    }

    /// Signaling reports `peer` in the swarm. Ignored for a new peer while the swarm tracks
    /// [`SwarmConfig::max_peers`] already.
    pub fn handle_peer_available(&mut self, now: Instant, peer: PublicKey) {
        if self.mark_available(peer) {
            self.update(now);
        }
    }

    /// Signaling reports `peer` gone. A connection still being set up is dropped with it; one that
    /// is up stays until it ends.
    pub fn handle_peer_left(&mut self, now: Instant, peer: PublicKey) {
        if self.mark_left(now, peer) {
            self.update(now);
        }
    }

    /// Signaling's whole view of the topic, for a driver that missed some of its events: peers
    /// advertised here but absent from `members` left, and every member is available.
    pub fn handle_members(&mut self, now: Instant, members: &[PublicKey]) {
        let members: std::collections::BTreeSet<&PublicKey> = members.iter().collect();
        let gone: Vec<PublicKey> = self
            .peers
            .iter()
            .filter(|(key, peer)| peer.advertising && !members.contains(key))
            .map(|(key, _)| *key)
            .collect();
        for peer in gone {
            self.mark_left(now, peer);
        }
        for peer in members {
            self.mark_available(*peer);
        }
        self.update(now);
    }

    /// Records that signaling advertises `peer`; false if it is ignored (ourselves, after
    /// leaving, or a new peer beyond [`SwarmConfig::max_peers`]).
    fn mark_available(&mut self, peer: PublicKey) -> bool {
        if peer == self.own || self.left {
            return false;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers {
            return false;
        }
        self.peers.entry(peer).or_default().advertising = true;
        true
    }

    /// Records that signaling no longer advertises `peer`, dropping a connection still being set
    /// up; false if the peer was not tracked.
    fn mark_left(&mut self, now: Instant, peer: PublicKey) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else { return false };
        state.advertising = false;
        if state.connection.as_ref().is_none_or(Connection::establishing) {
            self.close(now, peer, CloseReason::PeerLeft);
            self.peers.remove(&peer);
        }
        true
    }

    /// A swarm message from `from` (already checked to be for this topic).
    pub fn handle_message(&mut self, now: Instant, from: PublicKey, message: SwarmMessage) {
        if self.left || from == self.own {
            return;
        }
        let Some(session) = message.session_id.as_ref().and_then(|s| s.to_key().ok()) else { return };
        let message_id = message.message_id.as_ref().and_then(|m| m.to_key().ok());
        match message.data.and_then(|data| data.payload) {
            Some(message_data::Payload::Offer(offer)) => {
                if let Some(offer_id) = message_id {
                    self.offer(now, from, session, offer_id, &offer);
                }
            }
            Some(message_data::Payload::Answer(answer)) => self.answer(now, from, session, answer),
            Some(message_data::Payload::Signal(signal)) => {
                self.remote_signals(now, from, session, vec![signal])
            }
            Some(message_data::Payload::SignalBatch(batch)) => {
                self.remote_signals(now, from, session, batch.signals)
            }
            None => {}
        }
        self.update(now);
    }

    /// A signal from our transport for `peer`'s connection `session`: batched, then sent.
    pub fn handle_transport_signal(
        &mut self,
        now: Instant,
        peer: PublicKey,
        session: PublicKey,
        payload: Struct,
    ) {
        if let Some(connection) = self.connection_mut(&peer, &session) {
            connection.queue_signal(now, payload);
        }
    }

    /// The transport of `session` is up.
    pub fn handle_transport_connected(&mut self, now: Instant, peer: PublicKey, session: PublicKey) {
        let Some(connection) = self.connection_mut(&peer, &session) else { return };
        if connection.state != ConnectionState::Connecting {
            return;
        }
        connection.state = ConnectionState::Connected;
        connection.deadline = None;
        connection.connected_at = Some(now);
        let initiator = connection.initiator;
        self.outputs.push_back(Output::Event(Event::State {
            peer,
            session,
            state: ConnectionState::Connected,
        }));
        self.outputs.push_back(Output::Event(Event::Connected { peer, initiator }));
        self.release(now, session);
        self.update(now);
    }

    /// The transport (or the protocol over it) of `session` ended.
    pub fn handle_transport_closed(
        &mut self,
        now: Instant,
        peer: PublicKey,
        session: PublicKey,
        error: Option<ConnectionError>,
    ) {
        if self.connection_mut(&peer, &session).is_some() {
            self.close(now, peer, CloseReason::Transport(error));
            self.update(now);
        }
    }

    /// A message for `peer`'s connection `session` could not be delivered: the connection fails.
    pub fn handle_undeliverable(&mut self, now: Instant, peer: PublicKey, session: PublicKey) {
        if self.connection_mut(&peer, &session).is_some() {
            self.close(now, peer, CloseReason::Undeliverable);
            self.update(now);
        }
    }

    /// Time passed: initiate what waited its delay, send signal batches, fail what timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            if peer.initiate_at.is_some_and(|at| at <= now) {
                peer.initiate_at = None;
                if peer.connection.is_none() && peer.advertising {
                    self.initiate(now, key);
                }
            }
            self.flush_signals(now, key);
            let timed_out = self
                .peers
                .get(&key)
                .and_then(|p| p.connection.as_ref())
                .is_some_and(|c| c.deadline.is_some_and(|at| at <= now));
            if timed_out {
                self.close(now, key, CloseReason::Timeout);
            }
        }
        self.update(now);
    }

    /// Sends the batch of transport signals for `peer` if its time has come.
    fn flush_signals(&mut self, now: Instant, peer: PublicKey) {
        let max = self.config.signal_batch_max;
        let Some(connection) = self.peers.get_mut(&peer).and_then(|p| p.connection.as_mut()) else { return };
        if connection.flush_at.is_none_or(|at| at > now) {
            return;
        }
        let session = connection.session;
        let signals =
            connection.take_batch(max).into_iter().map(|payload| Signal { payload: Some(payload) }).collect();
        self.send(peer, session, message_data::Payload::SignalBatch(SignalBatch { signals }));
    }

    /// The next time [`Swarm::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().flat_map(|peer| {
            let connection = peer.connection.as_ref();
            [
                peer.initiate_at,
                peer.available_at,
                connection.and_then(|c| c.deadline),
                connection.and_then(|c| c.flush_at),
            ]
        });
        peers.flatten().chain(self.topology.poll_timeout()).min()
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Leaves the swarm: every connection closes, and nothing new starts.
    pub fn leave(&mut self, now: Instant) {
        self.left = true;
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.close(now, key, CloseReason::Requested);
        }
        self.peers.clear();
    }

    fn connection_mut(&mut self, peer: &PublicKey, session: &PublicKey) -> Option<&mut Connection> {
        self.peers.get_mut(peer)?.connection.as_mut().filter(|c| c.session == *session)
    }

    fn random_key(&mut self) -> PublicKey {
        PublicKey::random_from(&mut self.rng)
    }

    /// A fresh link nonce, if this swarm exchanges them.
    fn link_nonce(&mut self) -> Option<[u8; NONCE_LEN]> {
        self.link_nonces.then(|| {
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill_bytes(&mut nonce);
            nonce
        })
    }

    /// Sends `data` for `session` to `to`, under a fresh message id; returns the id.
    fn send(&mut self, to: PublicKey, session: PublicKey, data: message_data::Payload) -> PublicKey {
        let message_id = self.random_key();
        let message = SwarmMessage {
            topic: Some(PublicKey::from_bytes(self.topic.to_bytes()).into()),
            session_id: Some(session.into()),
            data: Some(MessageData { payload: Some(data) }),
            message_id: Some(message_id.into()),
        };
        self.outputs.push_back(Output::Send { to, message });
        message_id
    }

    fn set_state(&mut self, peer: PublicKey, state: ConnectionState) {
        if let Some(connection) = self.peers.get_mut(&peer).and_then(|p| p.connection.as_mut()) {
            connection.state = state;
            let session = connection.session;
            self.outputs.push_back(Output::Event(Event::State { peer, session, state }));
        }
    }

    /// Starts a connection to `peer` as the initiator.
    fn initiate(&mut self, now: Instant, peer: PublicKey) {
        let session = self.random_key();
        let mut connection = Connection::new(session, true, self.config.signal_batch_initial);
        connection.own_nonce = self.link_nonce();
        self.peers.entry(peer).or_default().connection = Some(connection);
        self.outputs.push_back(Output::Event(Event::State {
            peer,
            session,
            state: ConnectionState::Created,
        }));
        if self.limiter.request(peer, session) {
            self.proceed(now, peer);
        }
    }

    /// A connection got its place among those being set up: the initiator offers, the responder
    /// opens its transport and accepts.
    fn proceed(&mut self, now: Instant, peer: PublicKey) {
        let Some(connection) = self.peers.get(&peer).and_then(|p| p.connection.as_ref()) else { return };
        let (session, initiator, answer_to) =
            (connection.session, connection.initiator, connection.answer_to);
        let link_nonce = connection.own_nonce.map(Vec::from).unwrap_or_default();
        if initiator {
            let offer_id = self.send(peer, session, message_data::Payload::Offer(Offer { link_nonce }));
            self.set_state(peer, ConnectionState::Initial);
            if let Some(connection) = self.peers.get_mut(&peer).and_then(|p| p.connection.as_mut()) {
                connection.offer_id = Some(offer_id);
                connection.deadline = Some(now + self.config.answer_timeout);
            }
        } else {
            self.set_state(peer, ConnectionState::Initial);
            self.open_transport(now, peer);
            let answer = Answer { accept: true, offer_message_id: answer_to.map(Into::into), link_nonce };
            self.send(peer, session, message_data::Payload::Answer(answer));
        }
    }

    fn open_transport(&mut self, now: Instant, peer: PublicKey) {
        self.set_state(peer, ConnectionState::Connecting);
        let Some(connection) = self.peers.get_mut(&peer).and_then(|p| p.connection.as_mut()) else { return };
        connection.deadline = Some(now + self.config.connect_timeout);
        let (session, initiator, link) = (connection.session, connection.initiator, connection.link());
        let buffered = connection.take_buffered();
        self.outputs.push_back(Output::OpenTransport { peer, session, initiator, link });
        for payload in buffered {
            self.outputs.push_back(Output::SignalTransport { peer, session, payload });
        }
    }

    fn offer(
        &mut self,
        now: Instant,
        from: PublicKey,
        session: PublicKey,
        offer_id: PublicKey,
        offer: &Offer,
    ) {
        // A nonce that is not 32 bytes makes the offer malformed, not merely unauthenticated.
        let Ok(remote_nonce) = link_nonce(&offer.link_nonce) else { return };
        let incoming = IncomingOffer { from, session, offer_id, remote_nonce };
        let Some(peer) = self.peers.get(&from) else {
            self.stranger_offer(now, incoming);
            return;
        };
        let refuse = |swarm: &mut Self| {
            let answer =
                Answer { accept: false, offer_message_id: Some(offer_id.into()), link_nonce: Vec::new() };
            swarm.send(from, session, message_data::Payload::Answer(answer));
        };
        if let Some(existing) = &peer.connection {
            if existing.session == session {
                // A resent copy of an offer already handled.
                return;
            }
            let remote_restarted = existing.state == ConnectionState::Connected;
            let remote_wins = from < self.own;
            if !(remote_restarted || (existing.establishing() && remote_wins)) {
                refuse(self);
                return;
            }
            self.close(now, from, CloseReason::Displaced);
        }
        let state = self.state(now);
        if !self.topology.on_offer(now, &state, from) {
            refuse(self);
            self.forget_if_idle(from);
            return;
        }
        self.accept(now, incoming);
    }

    /// An offer from a peer the swarm does not track. Accepted only if there is room for one
    /// more peer, a place among the connections being set up is free now, and the topology
    /// wants it; otherwise dropped without an answer (see the module docs).
    fn stranger_offer(&mut self, now: Instant, offer: IncomingOffer) {
        if self.peers.len() >= self.config.max_peers || !self.limiter.has_room() {
            return;
        }
        let state = self.state(now);
        if self.topology.on_offer(now, &state, offer.from) {
            self.accept(now, offer);
        }
    }

    /// Takes `from`'s offer: a responder connection that answers once it has a place, and gives
    /// up if it waits for one longer than the initiator waits for the answer.
    fn accept(&mut self, now: Instant, offer: IncomingOffer) {
        let IncomingOffer { from, session, offer_id, remote_nonce } = offer;
        let mut connection = Connection::new(session, false, self.config.signal_batch_initial);
        connection.answer_to = Some(offer_id);
        connection.deadline = Some(now + self.config.answer_timeout);
        connection.remote_nonce = remote_nonce;
        // Only a remote that sent a nonce gets one back; DXOS peers see the answers they expect.
        connection.own_nonce = if remote_nonce.is_some() { self.link_nonce() } else { None };
        let peer = self.peers.entry(from).or_default();
        peer.initiate_at = None;
        peer.connection = Some(connection);
        self.outputs.push_back(Output::Event(Event::State {
            peer: from,
            session,
            state: ConnectionState::Created,
        }));
        if self.limiter.request(from, session) {
            self.proceed(now, from);
        }
    }

    fn answer(&mut self, now: Instant, from: PublicKey, session: PublicKey, answer: Answer) {
        let offer_id = answer.offer_message_id.as_ref().and_then(|id| id.to_key().ok());
        let Ok(remote_nonce) = link_nonce(&answer.link_nonce) else { return };
        let Some(connection) = self.connection_mut(&from, &session) else { return };
        if connection.state != ConnectionState::Initial
            || connection.offer_id.is_none()
            || connection.offer_id != offer_id
        {
            return;
        }
        connection.remote_nonce = remote_nonce;
        if answer.accept {
            self.open_transport(now, from);
        } else {
            self.close(now, from, CloseReason::Rejected);
        }
    }

    fn remote_signals(&mut self, now: Instant, from: PublicKey, session: PublicKey, signals: Vec<Signal>) {
        let (max_count, max_bytes) =
            (self.config.max_buffered_signals, self.config.max_buffered_signal_bytes);
        // Signals for a session this side does not have are dropped.
        let Some(connection) = self.connection_mut(&from, &session) else { return };
        let payloads = signals.into_iter().filter_map(|signal| signal.payload);
        if connection.has_transport() {
            for payload in payloads {
                self.outputs.push_back(Output::SignalTransport { peer: from, session, payload });
            }
            return;
        }
        for payload in payloads {
            if !connection.buffer_signal(payload, max_count, max_bytes) {
                self.close(now, from, CloseReason::SignalOverflow);
                return;
            }
        }
    }

    /// Ends the connection to `peer`, if any, and sets when to try again.
    fn close(&mut self, now: Instant, peer: PublicKey, reason: CloseReason) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        let Some(connection) = state.connection.take() else { return };
        let session = connection.session;
        if connection.has_transport() {
            self.outputs.push_back(Output::CloseTransport { peer, session });
        }
        let failed = !reason.is_clean();
        let final_state = if failed { ConnectionState::Aborted } else { ConnectionState::Closed };
        self.outputs.push_back(Output::Event(Event::State { peer, session, state: final_state }));
        let was_connected = connection.state == ConnectionState::Connected;
        if was_connected {
            self.outputs.push_back(Output::Event(Event::Disconnected { peer, reason: reason.clone() }));
        }
        if !matches!(reason, CloseReason::Displaced) {
            let stable = connection
                .connected_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.config.stable_after);
            state.failures = if stable { 0 } else { state.failures + 1 };
            let backoff = &self.config.reconnect_backoff;
            let delay =
                backoff.get(state.failures.min(backoff.len().saturating_sub(1))).copied().unwrap_or_default();
            state.available_at = Some(now + delay);
        }
        self.forget_if_idle(peer);
        self.release(now, session);
    }

    /// Stops tracking `peer` if signaling does not advertise it and it has no connection: such
    /// an entry would only be a remote's way to grow the map.
    fn forget_if_idle(&mut self, peer: PublicKey) {
        if self.peers.get(&peer).is_some_and(|p| !p.advertising && p.connection.is_none()) {
            self.peers.remove(&peer);
        }
    }

    /// Frees `session`'s place among the connections being set up and lets waiting ones proceed.
    fn release(&mut self, now: Instant, session: PublicKey) {
        for (peer, _) in self.limiter.done(session) {
            self.proceed(now, peer);
        }
    }

    fn state(&self, now: Instant) -> SwarmState {
        let connected: Vec<PublicKey> =
            self.peers.iter().filter(|(_, peer)| peer.connection.is_some()).map(|(key, _)| *key).collect();
        let candidates = self
            .peers
            .iter()
            .filter(|(_, peer)| {
                peer.connection.is_none()
                    && peer.advertising
                    && peer.initiate_at.is_none()
                    && peer.available_at.is_none_or(|at| at <= now)
            })
            .map(|(key, _)| *key)
            .collect();
        SwarmState { own: self.own, connected, candidates, all: self.peers.keys().copied().collect() }
    }

    /// Asks the topology what to do and does it.
    fn update(&mut self, now: Instant) {
        if self.left {
            return;
        }
        for peer in self.peers.values_mut() {
            if peer.available_at.is_some_and(|at| at <= now) {
                peer.available_at = None;
            }
        }
        let state = self.state(now);
        for action in self.topology.update(now, &state) {
            match action {
                Action::Connect(peer) => {
                    let Some(state) = self.peers.get_mut(&peer) else { continue };
                    if state.connection.is_some() || state.initiate_at.is_some() {
                        continue;
                    }
                    if peer < self.own {
                        // The remote holds the lower key and wins a glare: give its offer a head start.
                        state.initiate_at = Some(now + self.config.initiation_delay);
                    } else {
                        self.initiate(now, peer);
                    }
                }
                Action::Disconnect(peer) => self.close(now, peer, CloseReason::Requested),
            }
        }
    }
}

/// A link nonce from the wire: absent (empty), or exactly [`NONCE_LEN`] bytes.
fn link_nonce(bytes: &[u8]) -> Result<Option<[u8; NONCE_LEN]>, TryFromSliceError> {
    if bytes.is_empty() { Ok(None) } else { bytes.try_into().map(Some) }
}
