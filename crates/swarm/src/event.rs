//! What a swarm core asks its driver to do, and what it tells the application.

use std::fmt;

use mesh_keys::PublicKey;
use mesh_proto::{Struct, dxos::mesh::swarm::SwarmMessage};
use mesh_transport::LinkAuth;

use crate::ConnectionError;

/// The states of a connection (DXOS's, in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Created, waiting for a place among the connections being set up.
    Created,
    /// Offer sent (initiator) or accepted (responder), transport not open yet.
    Initial,
    /// Transport opening.
    Connecting,
    /// Transport up, protocol running.
    Connected,
    /// Closing by choice.
    Closing,
    /// Closed.
    Closed,
    /// Failing.
    Aborting,
    /// Failed (error or timeout).
    Aborted,
}

/// Why a connection ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// The topology no longer wants it, or the swarm was left.
    Requested,
    /// The remote's offer displaced it (glare, or the remote restarted).
    Displaced,
    /// The remote refused the offer.
    Rejected,
    /// No answer, or no transport, in time.
    Timeout,
    /// The remote left the swarm before the connection was up.
    PeerLeft,
    /// The transport or protocol ended, with this error if any.
    Transport(Option<ConnectionError>),
    /// A signaling message could not be delivered.
    Undeliverable,
    /// The remote sent more signals than a connection holds before its transport exists
    /// ([`SwarmConfig::max_buffered_signals`](crate::SwarmConfig::max_buffered_signals)).
    SignalOverflow,
}

impl CloseReason {
    /// Whether the connection ended by choice (this side's or the glare rules'), not by failing.
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Requested | CloseReason::Displaced)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Requested => f.write_str("closed on request"),
            CloseReason::Displaced => f.write_str("displaced by a newer connection to the same peer"),
            CloseReason::Rejected => f.write_str("the remote refused the offer"),
            CloseReason::Timeout => f.write_str("timed out"),
            CloseReason::PeerLeft => f.write_str("the remote left the swarm"),
            CloseReason::Transport(None) => f.write_str("the connection ended"),
            CloseReason::Transport(Some(error)) => write!(f, "the connection failed: {error}"),
            CloseReason::Undeliverable => f.write_str("a signaling message could not be delivered"),
            CloseReason::SignalOverflow => f.write_str("the remote sent too many signals too early"),
        }
    }
}

/// Something an application following the swarm may want to know.
#[derive(Debug, Clone)]
pub enum Event {
    /// A connection to `peer` is up.
    Connected {
        /// The remote peer.
        peer: PublicKey,
        /// Whether this side initiated it.
        initiator: bool,
    },
    /// The connection to `peer` ended.
    Disconnected {
        /// The remote peer.
        peer: PublicKey,
        /// Why.
        reason: CloseReason,
    },
    /// A connection changed state.
    State {
        /// The remote peer.
        peer: PublicKey,
        /// The connection attempt.
        session: PublicKey,
        /// Its new state.
        state: ConnectionState,
    },
}

/// What the swarm core asks its driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send `message` to `to` reliably. If it cannot be delivered, report it with
    /// [`Swarm::handle_undeliverable`](crate::Swarm::handle_undeliverable).
    Send {
        /// The recipient.
        to: PublicKey,
        /// The message (its `message_id` is set).
        message: SwarmMessage,
    },
    /// Create and open a transport for this connection; feed its signals to
    /// [`Swarm::handle_transport_signal`](crate::Swarm::handle_transport_signal), and report it
    /// connected or closed.
    OpenTransport {
        /// The remote peer.
        peer: PublicKey,
        /// The connection attempt.
        session: PublicKey,
        /// Whether this side initiated.
        initiator: bool,
        /// The link nonces of both sides, when both sent one: the transport authenticates the
        /// link with them.
        link: Option<LinkAuth>,
    },
    /// Give a signal from the remote to the transport of this connection.
    SignalTransport {
        /// The remote peer.
        peer: PublicKey,
        /// The connection attempt.
        session: PublicKey,
        /// The signal.
        payload: Struct,
    },
    /// Close the transport (and protocol) of this connection.
    CloseTransport {
        /// The remote peer.
        peer: PublicKey,
        /// The connection attempt.
        session: PublicKey,
    },
    /// Tell the application.
    Event(Event),
}
