//! Peer connection callbacks, turned into a stream of events for the session task.
//!
//! webrtc calls the handler on its driver task and waits for it, so a handler that blocks stalls
//! the connection (and `on_data_channel` must return before the channel delivers anything). The
//! handler therefore only forwards into an unbounded queue. That queue stays small: a connection
//! has a handful of candidates, a few state changes and one data channel, and the session task
//! drains it until the transport closes.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;
use webrtc::{
    data_channel::DataChannel,
    peer_connection::{
        PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    },
};

/// What the peer connection reports.
pub(crate) enum PeerEvent {
    /// A local candidate to trickle to the remote.
    Candidate(RTCIceCandidateInit),
    /// The connection's overall state changed.
    State(RTCPeerConnectionState),
    /// The remote opened a data channel.
    Channel(Arc<dyn DataChannel>),
}

/// Forwards peer connection callbacks as [`PeerEvent`]s.
pub(crate) struct Forwarder(mpsc::UnboundedSender<PeerEvent>);

impl Forwarder {
    /// A handler and the events it forwards.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<PeerEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(sender), receiver)
    }

    fn forward(&self, event: PeerEvent) {
        // The session task is gone once the transport closed; late events do not matter then.
        let _ = self.0.send(event);
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Forwarder {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(candidate) => self.forward(PeerEvent::Candidate(candidate)),
            Err(err) => debug!(%err, "local ICE candidate cannot be signalled"),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.forward(PeerEvent::State(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        self.forward(PeerEvent::Channel(channel));
    }
}
