//! One connection attempt to a peer: its state, deadlines, and the transport signals buffered on
//! their way in (before the transport exists) and out (batched).

use std::time::{Duration, Instant};

use mesh_keys::PublicKey;
use mesh_proto::{Message, Struct};
use mesh_transport::{LinkAuth, NONCE_LEN};

use crate::ConnectionState;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) session: PublicKey,
    pub(crate) initiator: bool,
    pub(crate) state: ConnectionState,
    /// Initiator: the id of the offer awaiting an answer.
    pub(crate) offer_id: Option<PublicKey>,
    /// Responder: the id of the offer to answer once the connection has a place.
    pub(crate) answer_to: Option<PublicKey>,
    /// When the current step (a place among those being set up, the answer, or the transport)
    /// times out.
    pub(crate) deadline: Option<Instant>,
    /// When the connection came up.
    pub(crate) connected_at: Option<Instant>,
    /// Signals from the remote that arrived before the transport was opened, and their encoded
    /// size in bytes; both are capped (see [`Connection::buffer_signal`]).
    incoming: Vec<Struct>,
    incoming_bytes: usize,
    /// Signals for the remote waiting for the next batch.
    pub(crate) outgoing: Vec<Struct>,
    pub(crate) flush_at: Option<Instant>,
    pub(crate) batch_delay: Duration,
    /// The link nonce this side sent in its offer or answer.
    pub(crate) own_nonce: Option<[u8; NONCE_LEN]>,
    /// The link nonce the remote sent in its offer or answer.
    pub(crate) remote_nonce: Option<[u8; NONCE_LEN]>,
}

impl Connection {
    pub(crate) fn new(session: PublicKey, initiator: bool, batch_delay: Duration) -> Self {
        Self {
            session,
            initiator,
            state: ConnectionState::Created,
            offer_id: None,
            answer_to: None,
            deadline: None,
            connected_at: None,
            incoming: Vec::new(),
            incoming_bytes: 0,
            outgoing: Vec::new(),
            flush_at: None,
            batch_delay,
            own_nonce: None,
            remote_nonce: None,
        }
    }

    /// What the transport needs to authenticate the link: both nonces, when both sides sent one.
    pub(crate) fn link(&self) -> Option<LinkAuth> {
        Some(LinkAuth { own_nonce: self.own_nonce?, remote_nonce: self.remote_nonce? })
    }

    /// Whether the connection is still being set up (DXOS's "establishment in progress").
    pub(crate) fn establishing(&self) -> bool {
        matches!(
            self.state,
            ConnectionState::Created | ConnectionState::Initial | ConnectionState::Connecting
        )
    }

    /// Whether a transport was asked for (so it must be closed).
    pub(crate) fn has_transport(&self) -> bool {
        matches!(self.state, ConnectionState::Connecting | ConnectionState::Connected)
    }

    /// Holds a signal from the remote until the transport exists; false (and nothing held) if
    /// that would make more than `max_count` signals or `max_bytes` encoded bytes.
    pub(crate) fn buffer_signal(&mut self, payload: Struct, max_count: usize, max_bytes: usize) -> bool {
        let bytes = self.incoming_bytes.saturating_add(payload.encoded_len());
        if self.incoming.len() >= max_count || bytes > max_bytes {
            return false;
        }
        self.incoming_bytes = bytes;
        self.incoming.push(payload);
        true
    }

    /// Takes the signals held until the transport exists.
    pub(crate) fn take_buffered(&mut self) -> Vec<Struct> {
        self.incoming_bytes = 0;
        std::mem::take(&mut self.incoming)
    }

    /// Queues an outgoing signal and schedules a flush if none is.
    pub(crate) fn queue_signal(&mut self, now: Instant, payload: Struct) {
        self.outgoing.push(payload);
        if self.flush_at.is_none() {
            self.flush_at = Some(now + self.batch_delay);
        }
    }

    /// Takes the batch to send and doubles the delay before the next one, up to `max`.
    pub(crate) fn take_batch(&mut self, max: Duration) -> Vec<Struct> {
        self.flush_at = None;
        self.batch_delay = (self.batch_delay * 2).min(max);
        std::mem::take(&mut self.outgoing)
    }
}
