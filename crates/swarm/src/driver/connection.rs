//! One connection's task: opens the transport, runs the protocol over it once it is up, and
//! meanwhile carries signals both ways between the transport and the swarm's loop.
//!
//! Everything that may block on the transport or the remote happens here, never in the loop:
//! if the transport stops taking signals, only this task waits, and the loop closes the
//! connection once its queue is full.

use std::{convert::Infallible, sync::Arc};

use mesh_keys::PublicKey;
use mesh_proto::Struct;
use mesh_transport::{ByteStream, Transport, TransportError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{CLOSE_GRACE, Input};
use crate::{ConnectionError, ConnectionInfo, Protocol};

/// What a connection's task needs.
pub(super) struct ConnectionTask {
    pub(super) info: ConnectionInfo,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) protocol: Arc<dyn Protocol>,
    /// Cancelled when the swarm closes the connection.
    pub(super) close: CancellationToken,
    /// The swarm's inputs.
    pub(super) feedback: mpsc::Sender<Input>,
}

impl ConnectionTask {
    /// Runs the connection to its end, hands the remote's signals (`incoming`) to the transport
    /// and the transport's (`outgoing`) to the swarm, closes the transport once the protocol is
    /// done (so a graceful close reaches the remote first), and reports the end.
    pub(super) async fn run(self, incoming: mpsc::Receiver<Struct>, outgoing: mpsc::Receiver<Struct>) {
        let (peer, session) = (self.info.remote, self.info.session);
        let result = tokio::select! {
            result = self.lifecycle() => result,
            Err(err) = deliver_signals(&*self.transport, incoming) => Err(err.into()),
            never = forward_signals(outgoing, &self.feedback, peer, session) => match never {},
        };
        debug!(peer = %peer.short(), ?result, "connection over; closing its transport");
        self.transport.close().await;
        let _ = self.feedback.send(Input::Closed(peer, session, result.err())).await;
    }

    /// Opens the transport and runs the protocol once it is up. Closing before that ends it at
    /// once; closing after asks the protocol to finish, for [`CLOSE_GRACE`] at most.
    async fn lifecycle(&self) -> Result<(), ConnectionError> {
        let stream = tokio::select! {
            () = self.close.cancelled() => return Ok(()),
            stream = connect(&*self.transport) => stream?,
        };
        let _ = self.feedback.send(Input::Connected(self.info.remote, self.info.session)).await;
        let info = ConnectionInfo { binding: self.transport.binding(), ..self.info };
        let run = self.protocol.run(info, stream, self.close.clone());
        let overdue = async {
            self.close.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        tokio::select! {
            result = run => result.map_err(ConnectionError::Protocol),
            () = overdue => Err(ConnectionError::CloseTimeout(CLOSE_GRACE)),
        }
    }
}

async fn connect(transport: &dyn Transport) -> Result<ByteStream, TransportError> {
    transport.open().await?;
    transport.connected().await
}

/// Hands the remote's signals to the transport, one at a time. Returns only if the transport
/// refuses one; once the swarm stops sending (the queue closes) it waits forever.
async fn deliver_signals(
    transport: &dyn Transport,
    mut incoming: mpsc::Receiver<Struct>,
) -> Result<Infallible, TransportError> {
    while let Some(signal) = incoming.recv().await {
        transport.signal(signal).await?;
    }
    std::future::pending().await
}

/// Hands the transport's signals to the swarm (which batches them to the remote). Never returns:
/// once the transport drops its sink there is nothing more to do.
async fn forward_signals(
    mut outgoing: mpsc::Receiver<Struct>,
    feedback: &mpsc::Sender<Input>,
    peer: PublicKey,
    session: PublicKey,
) -> Infallible {
    while let Some(signal) = outgoing.recv().await {
        if feedback.send(Input::TransportSignal(peer, session, signal)).await.is_err() {
            break;
        }
    }
    std::future::pending().await
}
