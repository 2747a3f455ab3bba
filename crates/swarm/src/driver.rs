//! The task that runs one [`Swarm`] on real signaling, messaging and transports.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{Struct, any, dxos::mesh::swarm::SwarmMessage};
use mesh_signal::Messenger;
use mesh_transport::{LinkAuth, SignalSink, Transport, TransportFactory, TransportOptions};
use tokio::{
    sync::{broadcast, mpsc},
    time::sleep_until,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::debug;

use crate::{ConnectionInfo, Event, Output, Protocol, Swarm};

/// What reaches a swarm's task.
#[derive(Debug)]
pub(crate) enum Input {
    Available(PublicKey),
    Left(PublicKey),
    Message(PublicKey, SwarmMessage),
    TransportSignal(PublicKey, PublicKey, Struct),
    Connected(PublicKey, PublicKey),
    Closed(PublicKey, PublicKey, Option<String>),
    Undeliverable(PublicKey, PublicKey),
    Leave,
}

/// Inputs waiting for a swarm's task at most.
pub(crate) const INPUT_QUEUE: usize = 1024;

/// How long a protocol may take to finish once its connection is asked to close (Teleport's
/// graceful close waits up to 3 s for the remote) before the connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A connection in the swarm's hands. Its task (on `Driver::connections`) runs the transport
/// and the protocol, and closes the transport when the protocol is done, so a graceful close
/// reaches the remote before the transport goes.
struct OpenTransport {
    transport: Arc<dyn Transport>,
    close: CancellationToken,
}

pub(crate) struct Driver {
    pub(crate) swarm: Swarm,
    pub(crate) inputs: mpsc::Receiver<Input>,
    /// For the tasks this driver spawns to report back.
    pub(crate) feedback: mpsc::Sender<Input>,
    pub(crate) messenger: Messenger,
    pub(crate) transports: Arc<dyn TransportFactory>,
    pub(crate) protocol: Arc<dyn Protocol>,
    pub(crate) events: broadcast::Sender<Event>,
    /// Every connection's task, also those still closing.
    pub(crate) connections: TaskTracker,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut open: HashMap<(PublicKey, PublicKey), OpenTransport> = HashMap::new();
        loop {
            while let Some(output) = self.swarm.poll_output() {
                self.execute(output, &mut open).await;
            }
            let deadline = self.swarm.poll_timeout().map(tokio::time::Instant::from_std);
            let input = tokio::select! {
                input = self.inputs.recv() => input,
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.swarm.handle_timeout(now());
                    continue;
                }
            };
            let now = now();
            match input {
                None | Some(Input::Leave) => {
                    self.swarm.leave(now);
                    while let Some(output) = self.swarm.poll_output() {
                        self.execute(output, &mut open).await;
                    }
                    break;
                }
                Some(Input::Available(peer)) => self.swarm.handle_peer_available(now, peer),
                Some(Input::Left(peer)) => self.swarm.handle_peer_left(now, peer),
                Some(Input::Message(from, message)) => self.swarm.handle_message(now, from, message),
                Some(Input::TransportSignal(peer, session, payload)) => {
                    self.swarm.handle_transport_signal(now, peer, session, payload);
                }
                Some(Input::Connected(peer, session)) => {
                    self.swarm.handle_transport_connected(now, peer, session)
                }
                Some(Input::Closed(peer, session, error)) => {
                    open.remove(&(peer, session));
                    self.swarm.handle_transport_closed(now, peer, session, error);
                }
                Some(Input::Undeliverable(peer, session)) => {
                    self.swarm.handle_undeliverable(now, peer, session)
                }
            }
        }
        // Connection tasks report back through the inputs; nobody reads them any more.
        self.inputs.close();
        debug!(topic = %self.swarm.topic().short(), connections = self.connections.len(), "left the swarm");
        for connection in open.values() {
            connection.close.cancel();
        }
        self.connections.close();
        self.connections.wait().await;
    }

    async fn execute(&mut self, output: Output, open: &mut HashMap<(PublicKey, PublicKey), OpenTransport>) {
        match output {
            Output::Send { to, message } => {
                let session = message.session_id.as_ref().and_then(|s| s.to_key().ok());
                let (messenger, feedback, own) =
                    (self.messenger.clone(), self.feedback.clone(), self.swarm.own());
                tokio::spawn(async move {
                    if let Err(err) = messenger.send(own, to, any::pack(&message)).await {
                        debug!(%err, to = %to.short(), "swarm message not delivered");
                        if let Some(session) = session {
                            let _ = feedback.send(Input::Undeliverable(to, session)).await;
                        }
                    }
                });
            }
            Output::OpenTransport { peer, session, initiator, link } => {
                let transport = self.open_transport(peer, session, initiator, link);
                open.insert((peer, session), transport);
            }
            Output::SignalTransport { peer, session, payload } => {
                if let Some(open) = open.get(&(peer, session))
                    && let Err(err) = open.transport.signal(payload).await
                {
                    debug!(%err, "transport refused a signal");
                    let _ = self.feedback.try_send(Input::Closed(peer, session, Some(err.to_string())));
                }
            }
            Output::CloseTransport { peer, session } => {
                // The connection's task closes the transport once the protocol has closed.
                if let Some(open) = open.remove(&(peer, session)) {
                    open.close.cancel();
                }
            }
            Output::Event(event) => {
                let _ = self.events.send(event);
            }
        }
    }

    /// Creates and opens a transport, forwards its signals, and once it is up runs the protocol
    /// over it; the connection's end comes back as [`Input::Closed`].
    fn open_transport(
        &self,
        peer: PublicKey,
        session: PublicKey,
        initiator: bool,
        link: Option<LinkAuth>,
    ) -> OpenTransport {
        let (own, topic) = (self.swarm.own(), self.swarm.topic());
        let (signals, mut outgoing) = SignalSink::channel();
        let options = TransportOptions { own, remote: peer, topic, initiator, session, signals, link };
        let transport = self.transports.create(options);
        let close = CancellationToken::new();

        let feedback = self.feedback.clone();
        tokio::spawn(async move {
            while let Some(signal) = outgoing.recv().await {
                if feedback.send(Input::TransportSignal(peer, session, signal)).await.is_err() {
                    return;
                }
            }
        });

        let info = ConnectionInfo { own, remote: peer, topic, session, initiator };
        let (transport_task, protocol, feedback, stop) =
            (transport.clone(), self.protocol.clone(), self.feedback.clone(), close.clone());
        self.connections.spawn(async move {
            let result = run_connection(&transport_task, protocol, info, stop, &feedback).await;
            debug!(peer = %peer.short(), ?result, "connection over; closing its transport");
            transport_task.close().await;
            let _ = feedback.send(Input::Closed(peer, session, result.err())).await;
        });
        OpenTransport { transport, close }
    }
}

async fn run_connection(
    transport: &Arc<dyn Transport>,
    protocol: Arc<dyn Protocol>,
    info: ConnectionInfo,
    close: CancellationToken,
    feedback: &mpsc::Sender<Input>,
) -> Result<(), String> {
    transport.open().await.map_err(|err| err.to_string())?;
    let stream = tokio::select! {
        () = close.cancelled() => return Ok(()),
        stream = transport.connected() => stream.map_err(|err| err.to_string())?,
    };
    let _ = feedback.send(Input::Connected(info.remote, info.session)).await;
    let run = protocol.run(info, stream, close.clone());
    let overdue = async {
        close.cancelled().await;
        tokio::time::sleep(CLOSE_GRACE).await;
    };
    tokio::select! {
        result = run => result,
        () = overdue => Err("the protocol did not finish closing in time".into()),
    }
}

/// Topic of a swarm message, if it names one.
pub(crate) fn message_topic(message: &SwarmMessage) -> Option<DiscoveryKey> {
    message.topic.as_ref().and_then(|t| t.to_key().ok()).map(DiscoveryKey::from)
}
