//! A channel of protobuf messages over a Teleport port, for extensions that speak one message
//! type: a bounded queue to send from, and a handler for what arrives.

use std::sync::Arc;

use mesh_proto::Message;
use mesh_teleport::Port;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

/// The tasks that move one port's messages; dropping it stops them.
#[derive(Debug)]
pub(crate) struct MessagePort {
    _writing: AbortOnDropHandle<()>,
    _reading: AbortOnDropHandle<()>,
}

impl MessagePort {
    /// Sends what arrives on `outgoing` and hands each message read to `handle`, until the port
    /// closes or `handle` returns `false`. Undecodable messages are skipped.
    pub(crate) fn run<M>(
        port: Port,
        mut outgoing: mpsc::Receiver<M>,
        handle: impl Fn(M) -> bool + Send + 'static,
    ) -> Self
    where
        M: Message + Default + Send + 'static,
    {
        let port = Arc::new(port);
        let writer = port.clone();
        let writing = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if writer.send(message.encode_to_vec().into()).await.is_err() {
                    return;
                }
            }
        });
        let reading = tokio::spawn(async move {
            while let Some(bytes) = port.recv().await {
                match M::decode(bytes) {
                    Ok(message) => {
                        if !handle(message) {
                            return;
                        }
                    }
                    Err(err) => debug!(%err, "undecodable message"),
                }
            }
        });
        Self { _writing: AbortOnDropHandle::new(writing), _reading: AbortOnDropHandle::new(reading) }
    }
}
