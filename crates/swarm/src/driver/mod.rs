//! The task that runs one [`Swarm`] on real signaling, messaging and transports.
//!
//! Each swarm reads its own inputs: the messenger listener that takes only its topic's swarm
//! messages (a message it cannot take is not acknowledged, so the sender resends it, and one
//! swarm never holds up another's) and its own receiver of signaling's events. If that receiver
//! falls behind and misses events, the swarm resubscribes, asks signaling for the topic's whole
//! membership ([`Signal::members`]), applies it, and only then the events that came after.
//!
//! The loop never awaits anything a peer controls: it waits only for its inputs, its timer, and
//! the tasks it owns. Each connection has its own task (`connection.rs`) that runs the
//! transport and the protocol and hands the remote's signals to the transport from a bounded
//! queue the loop fills with `try_send`; a connection whose transport falls behind is closed.
//! Swarm messages go out on tasks of their own, at most
//! [`SwarmConfig::max_messages_in_flight`](crate::SwarmConfig::max_messages_in_flight) at once;
//! beyond that a message fails at once as undeliverable. Every task the loop spawns is in one of
//! its [`JoinSet`]s, so it ends when the loop does.

mod connection;

use std::{collections::HashMap, sync::Arc, time::Duration};

use mesh_keys::{DiscoveryKey, PublicKey};
use mesh_proto::{Struct, any, dxos::mesh::swarm::SwarmMessage};
use mesh_signal::{Event as SignalEvent, Messenger, Signal, SignalError, SignalMessage};
use mesh_transport::{LinkAuth, SignalSink, TransportFactory, TransportOptions};
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinSet,
    time::{sleep_until, timeout},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::connection::ConnectionTask;
use crate::{ConnectionError, ConnectionInfo, Event, Output, Protocol, Swarm};

/// What the swarm's own tasks and handle tell its loop.
#[derive(Debug)]
pub(crate) enum Input {
    TransportSignal(PublicKey, PublicKey, Struct),
    Connected(PublicKey, PublicKey),
    Closed(PublicKey, PublicKey, Option<ConnectionError>),
    /// The application left (signaling already knows): close everything and end.
    Leave,
}

/// Inputs waiting for a swarm's task at most.
pub(crate) const INPUT_QUEUE: usize = 1024;

/// How long a protocol may take to finish once its connection is asked to close (Teleport's
/// graceful close waits up to 3 s for the remote) before the connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a swarm that is shutting down waits for its connections beyond [`CLOSE_GRACE`]
/// (for transports to close) before it aborts what is left.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

/// What a swarm's task runs on.
pub(crate) struct Services {
    pub(crate) signal: Arc<dyn Signal>,
    pub(crate) messenger: Messenger,
    pub(crate) transports: Arc<dyn TransportFactory>,
    pub(crate) protocol: Arc<dyn Protocol>,
}

/// What a swarm hears from signaling and the messenger, for its topic only.
pub(crate) struct Feeds {
    /// Swarm messages for this topic (a messenger listener filtered by topic).
    pub(crate) messages: mpsc::Receiver<SignalMessage>,
    /// Signaling's events (all topics; the loop keeps its own).
    pub(crate) events: broadcast::Receiver<SignalEvent>,
}

/// How a swarm's task learns to stop, and how it says it stopped.
pub(crate) struct Lifetime {
    /// Cancelled when the application dropped its handle without leaving.
    pub(crate) stop: CancellationToken,
    /// Dropped when the task ends (or is aborted).
    pub(crate) done: oneshot::Sender<()>,
}

/// A connection whose transport was asked for, as the loop sees it.
struct OpenConnection {
    /// The remote's signals, on their way to the transport.
    signals: mpsc::Sender<Struct>,
    /// Asks the connection's task to close the protocol, then the transport.
    close: CancellationToken,
}

pub(crate) struct Driver {
    swarm: Swarm,
    services: Services,
    inputs: mpsc::Receiver<Input>,
    /// For the tasks this driver spawns to report back.
    feedback: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    feeds: Feeds,
    /// A membership snapshot being fetched after signaling events were missed; events wait
    /// until it is applied.
    resync: JoinSet<Result<Vec<PublicKey>, SignalError>>,
    /// Signaling's event stream ended (its last handle is gone).
    signaling_gone: bool,
    stop: CancellationToken,
    _done: oneshot::Sender<()>,
    open: HashMap<(PublicKey, PublicKey), OpenConnection>,
    /// Every connection's task, also those still closing.
    connections: JoinSet<()>,
    /// Swarm messages on their way; each yields (recipient, session) if it was not delivered.
    sends: JoinSet<Option<(PublicKey, PublicKey)>>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(crate) fn new(
        swarm: Swarm,
        services: Services,
        (feedback, inputs): (mpsc::Sender<Input>, mpsc::Receiver<Input>),
        feeds: Feeds,
        events: broadcast::Sender<Event>,
        lifetime: Lifetime,
    ) -> Self {
        Self {
            swarm,
            services,
            inputs,
            feedback,
            events,
            feeds,
            resync: JoinSet::new(),
            signaling_gone: false,
            stop: lifetime.stop,
            _done: lifetime.done,
            open: HashMap::new(),
            connections: JoinSet::new(),
            sends: JoinSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let dropped = loop {
            self.drain();
            let deadline = self.swarm.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                input = self.inputs.recv() => match input {
                    // `None` cannot happen while this task holds `feedback`; treat it as a leave.
                    None | Some(Input::Leave) => break false,
                    Some(input) => self.handle(input),
                },
                () = self.stop.cancelled() => break true,
                Some(message) = self.feeds.messages.recv() => self.handle_message(message),
                event = self.feeds.events.recv(), if self.resync.is_empty() && !self.signaling_gone => {
                    match event {
                        Ok(event) => self.handle_signal_event(event),
                        Err(broadcast::error::RecvError::Lagged(missed)) => self.start_resync(missed),
                        // The swarm keeps its connections until it is left.
                        Err(broadcast::error::RecvError::Closed) => self.signaling_gone = true,
                    }
                }
                Some(members) = self.resync.join_next(), if !self.resync.is_empty() => {
                    self.finish_resync(members);
                }
                Some(sent) = self.sends.join_next(), if !self.sends.is_empty() => {
                    if let Ok(Some((peer, session))) = sent {
                        self.swarm.handle_undeliverable(now(), peer, session);
                    }
                }
                Some(ended) = self.connections.join_next(), if !self.connections.is_empty() => {
                    if let Err(err) = ended {
                        warn!(%err, "a connection's task failed");
                    }
                }
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => self.swarm.handle_timeout(now()),
            }
        };
        self.shut_down(dropped).await;
    }

    /// A swarm message the messenger took for this topic.
    fn handle_message(&mut self, message: SignalMessage) {
        match any::decode_value::<SwarmMessage>(&message.payload) {
            Ok(swarm_message) => self.swarm.handle_message(now(), message.author, swarm_message),
            Err(err) => debug!(%err, "dropped an undecodable swarm message"),
        }
    }

    /// A peer's arrival or departure, if it is in this swarm's topic.
    fn handle_signal_event(&mut self, event: SignalEvent) {
        let topic = self.swarm.topic();
        match event {
            SignalEvent::PeerAvailable { topic: t, peer, .. } if t == topic => {
                self.swarm.handle_peer_available(now(), peer)
            }
            SignalEvent::PeerLeft { topic: t, peer } if t == topic => {
                self.swarm.handle_peer_left(now(), peer)
            }
            _ => {}
        }
    }

    /// Signaling events were missed: follow the events from now on, but apply them only after
    /// the whole membership, fetched now. (Events between the new subscription and the snapshot
    /// are in both; applying them again after it leaves the same membership.)
    fn start_resync(&mut self, missed: u64) {
        let topic = self.swarm.topic();
        warn!(topic = %topic.short(), missed, "missed signaling events; resynchronising the membership");
        self.feeds.events = self.services.signal.events();
        let signal = self.services.signal.clone();
        self.resync.spawn(async move { signal.members(topic).await });
    }

    fn finish_resync(
        &mut self,
        members: Result<Result<Vec<PublicKey>, SignalError>, tokio::task::JoinError>,
    ) {
        match members {
            Ok(Ok(members)) => self.swarm.handle_members(now(), &members),
            // Signaling is closing; the events that follow (if any) are all there is.
            Ok(Err(err)) => debug!(%err, "no membership snapshot"),
            Err(err) => warn!(%err, "the membership snapshot task failed"),
        }
    }

    fn handle(&mut self, input: Input) {
        let now = now();
        match input {
            Input::TransportSignal(peer, session, payload) => {
                self.swarm.handle_transport_signal(now, peer, session, payload);
            }
            Input::Connected(peer, session) => self.swarm.handle_transport_connected(now, peer, session),
            Input::Closed(peer, session, error) => {
                self.open.remove(&(peer, session));
                self.swarm.handle_transport_closed(now, peer, session, error);
            }
            Input::Leave => {}
        }
    }

    /// Leaves: signaling first if the application did not (it dropped its handle), then every
    /// connection closes, each protocol getting [`CLOSE_GRACE`] to finish.
    async fn shut_down(mut self, dropped: bool) {
        let (topic, own) = (self.swarm.topic(), self.swarm.own());
        if dropped {
            // Best effort: the application is gone and cannot be told if this fails.
            let _ = timeout(CLOSE_GRACE, self.services.signal.leave(topic, own)).await;
        }
        self.swarm.leave(now());
        self.drain();
        // Connection tasks report back through the inputs; nobody reads them any more.
        self.inputs.close();
        self.sends.abort_all();
        self.resync.abort_all();
        for connection in self.open.values() {
            connection.close.cancel();
        }
        debug!(topic = %topic.short(), connections = self.connections.len(), "left the swarm");
        let closing = async { while self.connections.join_next().await.is_some() {} };
        if timeout(CLOSE_GRACE + CLOSE_MARGIN, closing).await.is_err() {
            warn!(topic = %topic.short(), "connections still closing after the grace period; aborting them");
        }
    }

    /// Does everything the swarm asked for.
    fn drain(&mut self) {
        while let Some(output) = self.swarm.poll_output() {
            self.execute(output);
        }
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::Send { to, message } => self.send(to, message),
            Output::OpenTransport { peer, session, initiator, link } => {
                self.open_transport(peer, session, initiator, link)
            }
            Output::SignalTransport { peer, session, payload } => {
                self.signal_transport(peer, session, payload)
            }
            Output::CloseTransport { peer, session } => {
                // The connection's task closes the transport once the protocol has closed.
                if let Some(open) = self.open.remove(&(peer, session)) {
                    open.close.cancel();
                }
            }
            Output::Event(event) => {
                let _ = self.events.send(event);
            }
        }
    }

    /// Sends a swarm message on a task of its own, unless too many are on their way already: then
    /// it fails at once.
    fn send(&mut self, to: PublicKey, message: SwarmMessage) {
        let session = message.session_id.as_ref().and_then(|s| s.to_key().ok());
        if self.sends.len() >= self.swarm.config().max_messages_in_flight {
            debug!(to = %to.short(), "too many swarm messages on their way; this one fails");
            if let Some(session) = session {
                self.swarm.handle_undeliverable(now(), to, session);
            }
            return;
        }
        let (messenger, own) = (self.services.messenger.clone(), self.swarm.own());
        self.sends.spawn(async move {
            let err = messenger.send(own, to, any::pack(&message)).await.err()?;
            debug!(%err, to = %to.short(), "swarm message not delivered");
            session.map(|session| (to, session))
        });
    }

    /// Queues a signal for the connection's transport; a transport that fell a whole queue
    /// behind fails its connection.
    fn signal_transport(&mut self, peer: PublicKey, session: PublicKey, payload: Struct) {
        let Some(open) = self.open.get(&(peer, session)) else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = open.signals.try_send(payload) {
            let backlog = open.signals.max_capacity();
            debug!(peer = %peer.short(), backlog, "a transport does not take its signals; closing it");
            let error = ConnectionError::SignalBacklog(backlog);
            self.swarm.handle_transport_closed(now(), peer, session, Some(error));
        }
        // A closed queue means the connection's task ended; its report is on its way.
    }

    /// Creates a transport and starts the connection's task, which opens it, runs the protocol
    /// over it once it is up, and reports the end as [`Input::Closed`].
    fn open_transport(
        &mut self,
        peer: PublicKey,
        session: PublicKey,
        initiator: bool,
        link: Option<LinkAuth>,
    ) {
        let (own, topic) = (self.swarm.own(), self.swarm.topic());
        let (sink, outgoing) = SignalSink::channel();
        let options = TransportOptions { own, remote: peer, topic, initiator, session, signals: sink, link };
        let transport = self.services.transports.create(options);
        let (signals, incoming) = mpsc::channel(self.swarm.config().transport_signal_queue.max(1));
        let close = CancellationToken::new();
        let task = ConnectionTask {
            info: ConnectionInfo { own, remote: peer, topic, session, initiator, binding: None },
            transport,
            protocol: self.services.protocol.clone(),
            close: close.clone(),
            feedback: self.feedback.clone(),
        };
        self.connections.spawn(task.run(incoming, outgoing));
        self.open.insert((peer, session), OpenConnection { signals, close });
    }
}

/// Topic of a swarm message, if it names one.
pub(crate) fn message_topic(message: &SwarmMessage) -> Option<DiscoveryKey> {
    message.topic.as_ref().and_then(|t| t.to_key().ok()).map(DiscoveryKey::from)
}
