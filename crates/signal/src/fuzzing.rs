//! A doorway for fuzz targets and property tests (feature `fuzzing`; not a stable API).
//!
//! [`ClientCore`] is the sans-IO state of one client connection, the part of [`Client`](crate::Client)
//! that reads the server's frames, with the calls its driver makes.

use std::time::Instant;

use mesh_keys::{DiscoveryKey, Keypair, PublicKey};

use crate::{
    Event, SignalError, SignalMessage,
    client::core::{self, Core},
};

/// The authority the core believes it connected to.
const HOST: &str = "signal.invalid:443";

/// What the core hands back besides frames.
#[derive(Debug)]
pub enum Output {
    /// Something to tell the client's user.
    Event(Event),
    /// The outcome of the send made with this token.
    SendResult(u64, Result<(), SignalError>),
}

/// The client's protocol state for one server, driven by hand.
pub struct ClientCore(Core);

impl ClientCore {
    /// A core with default timeouts that proves `identities` after every connect.
    pub fn new(identities: Vec<Keypair>) -> Self {
        Self(Core::new(core::Timeouts::default(), HOST.to_owned(), identities))
    }

    /// A connection is up.
    pub fn on_connected(&mut self, now: Instant) {
        self.0.on_connected(now);
    }

    /// The connection is gone.
    pub fn on_disconnected(&mut self) {
        self.0.on_disconnected();
    }

    /// The user joins `topic` as `peer`.
    pub fn join(&mut self, now: Instant, topic: DiscoveryKey, peer: PublicKey) {
        self.0.join(now, topic, peer);
    }

    /// The user leaves `topic`.
    pub fn leave(&mut self, topic: DiscoveryKey, peer: PublicKey) {
        self.0.leave(topic, peer);
    }

    /// The user opens `peer`'s inbox.
    pub fn subscribe(&mut self, now: Instant, peer: PublicKey) {
        self.0.subscribe(now, peer);
    }

    /// The user closes `peer`'s inbox.
    pub fn unsubscribe(&mut self, peer: PublicKey) {
        self.0.unsubscribe(peer);
    }

    /// The user sends `message`; its result comes back as [`Output::SendResult`] with `token`.
    pub fn send(&mut self, now: Instant, token: u64, message: &SignalMessage) {
        self.0.send(now, token, message);
    }

    /// One frame from the server; an error means the driver drops the connection.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), mesh_proto::prost::DecodeError> {
        self.0.handle_frame(now, frame)
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }

    /// When [`ClientCore::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    /// The next frame for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.0.poll_transmit()
    }

    /// The next event or send result.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.0.poll_output().map(|output| match output {
            core::Output::Event(event) => Output::Event(event),
            core::Output::SendResult(token, result) => Output::SendResult(token, result),
        })
    }
}
