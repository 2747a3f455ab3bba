//! How a connection attempt hands its stream over: pending until the transport connects, fails or
//! closes, then the stream goes to the first [`Handover::take`] and nobody else.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::{ByteStream, TransportError, lock};

/// Where a connection attempt stands.
#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Connected,
    Failed(TransportError),
}

/// The outcome of one connection attempt and, once connected, its stream until it is taken.
pub(crate) struct Handover {
    outcome: watch::Sender<Outcome>,
    stream: Mutex<Option<ByteStream>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover").field("outcome", &*self.outcome.borrow()).finish_non_exhaustive()
    }
}

impl Handover {
    pub(crate) fn new() -> Self {
        Self { outcome: watch::channel(Outcome::Pending).0, stream: Mutex::new(None) }
    }

    /// The stream is up. Dropped instead if the attempt already ended (it was closed meanwhile).
    pub(crate) fn connected(&self, stream: ByteStream) {
        // Held across the switch, so a `take` that sees `Connected` finds the stream.
        let mut slot = lock(&self.stream);
        let accepted = self.outcome.send_if_modified(|outcome| match outcome {
            Outcome::Pending => {
                *outcome = Outcome::Connected;
                true
            }
            _ => false,
        });
        if accepted {
            *slot = Some(stream);
        }
    }

    /// The attempt failed, unless it already ended.
    pub(crate) fn fail(&self, err: TransportError) {
        self.outcome.send_if_modified(|outcome| match outcome {
            Outcome::Pending => {
                *outcome = Outcome::Failed(err);
                true
            }
            _ => false,
        });
    }

    /// Ends the attempt as closed and drops a stream nobody took.
    pub(crate) fn close(&self) {
        self.fail(TransportError::Closed);
        lock(&self.stream).take();
    }

    /// Whether the attempt connected, failed or closed.
    pub(crate) fn ended(&self) -> bool {
        !matches!(*self.outcome.borrow(), Outcome::Pending)
    }

    /// Whether the stream went to a caller of [`Handover::take`].
    pub(crate) fn handed_over(&self) -> bool {
        matches!(*self.outcome.borrow(), Outcome::Connected) && lock(&self.stream).is_none()
    }

    /// Waits for the outcome: the stream for the first caller, [`TransportError::Closed`] for
    /// any later one, or the failure.
    pub(crate) async fn take(&self) -> Result<ByteStream, TransportError> {
        let mut outcome = self.outcome.subscribe();
        let outcome = outcome
            .wait_for(|o| !matches!(o, Outcome::Pending))
            .await
            .map_err(|_| TransportError::Closed)?
            .clone();
        match outcome {
            Outcome::Connected => lock(&self.stream).take().ok_or(TransportError::Closed),
            Outcome::Failed(err) => Err(err),
            Outcome::Pending => Err(TransportError::Closed),
        }
    }
}
