//! Reliable messages between peers over any [`Signal`]: the DXOS `Messenger`.
//!
//! One task runs the [`MessengerCore`]: it feeds it commands, received messages and time, hands
//! its transmissions to signaling (at most [`CONCURRENT_SENDS`] at once, each in a task it owns),
//! and offers each received message to the listeners it is for. A message is acknowledged only
//! when every matching listener's queue took it; otherwise none gets it and the sender's resend
//! is the next chance.

mod core;

use std::{sync::Arc, time::Instant};

use mesh_keys::PublicKey;
use mesh_proto::Any;
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinSet,
    time::sleep_until,
};
use tracing::{debug, warn};

pub use self::core::{MessengerConfig, MessengerCore, Output, Token};
use crate::{Event, Signal, SignalError, SignalMessage};

/// Messages buffered per listener; while a listener's queue is full, messages for it are not
/// acknowledged, so their senders resend them.
const LISTENER_QUEUE: usize = 256;
/// Sends handed to signaling at once; more wait in the core.
const CONCURRENT_SENDS: usize = 64;
/// Commands waiting for the messenger's task at most; callers wait beyond it.
const COMMAND_QUEUE: usize = 256;

/// Picks, among the messages a listener's recipient and payload type match, those it takes.
type Filter = Box<dyn Fn(&SignalMessage) -> bool + Send + Sync>;

enum Command {
    Send {
        author: PublicKey,
        recipient: PublicKey,
        payload: Any,
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    /// Adds a listener; `added` is answered once it is in place, so that every message that
    /// arrives after `listen` returns finds it.
    Listen { listener: Listener, added: oneshot::Sender<()> },
}

/// Where received messages go.
struct Listener {
    recipient: PublicKey,
    /// The payload's `type_url` it takes, or all of them.
    payload_type: Option<String>,
    filter: Option<Filter>,
    sender: mpsc::Sender<SignalMessage>,
}

impl Listener {
    fn takes(&self, message: &SignalMessage, payload_type: &str) -> bool {
        message.recipient == self.recipient
            && self.payload_type.as_deref().is_none_or(|wanted| wanted == payload_type)
            && self.filter.as_ref().is_none_or(|filter| filter(message))
    }
}

/// Reliable messaging over a [`Signal`] implementation: acknowledged, resent, deduplicated, and
/// routed to listeners by recipient, payload type and an optional filter. Cloning gives another
/// handle; the messenger (and every send it has under way) stops when the last handle is dropped.
#[derive(Clone)]
pub struct Messenger {
    signal: Arc<dyn Signal>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger").finish_non_exhaustive()
    }
}

impl Messenger {
    /// A messenger with the DXOS timings (resend from 1 s, fail after 10 s).
    pub fn new(signal: Arc<dyn Signal>) -> Self {
        Self::with_config(signal, MessengerConfig::default())
    }

    /// A messenger with its own timings and bounds.
    pub fn with_config(signal: Arc<dyn Signal>, config: MessengerConfig) -> Self {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let task = Task {
            core: MessengerCore::new(config, now()),
            signal: signal.clone(),
            events: signal.events(),
            commands: receiver,
            listeners: Vec::new(),
            replies: std::collections::HashMap::new(),
            next_token: 0,
            sends: JoinSet::new(),
        };
        // The task ends when the last handle is dropped: its command channel closes.
        tokio::spawn(task.run());
        Self { signal, commands }
    }

    /// Sends `payload` from `author` to `recipient`; resolves when the recipient acknowledged it,
    /// or fails with [`SignalError::Timeout`] after the configured timeout (10 s).
    pub async fn send(
        &self,
        author: PublicKey,
        recipient: PublicKey,
        payload: Any,
    ) -> Result<(), SignalError> {
        let (reply, result) = oneshot::channel();
        self.commands
            .send(Command::Send { author, recipient, payload, reply })
            .await
            .map_err(|_| SignalError::Closed)?;
        result.await.map_err(|_| SignalError::Closed)?
    }

    /// Opens `recipient`'s inbox and returns its messages whose payload has `payload_type`
    /// (a `type_url`), or all of them when `payload_type` is `None`.
    pub async fn listen(
        &self,
        recipient: PublicKey,
        payload_type: Option<&str>,
    ) -> Result<mpsc::Receiver<SignalMessage>, SignalError> {
        self.add_listener(recipient, payload_type, None).await
    }

    /// Like [`Messenger::listen`], for the messages `filter` picks among those. Listeners are
    /// independent: a message goes to every listener whose recipient, payload type and filter
    /// match, and is acknowledged only when all of their queues had room (else none gets it, and
    /// the sender resends). So listeners with disjoint filters (one per swarm topic, say) never
    /// hold up or drop each other's messages. Dropping the receiver removes the listener.
    pub async fn listen_where(
        &self,
        recipient: PublicKey,
        payload_type: Option<&str>,
        filter: impl Fn(&SignalMessage) -> bool + Send + Sync + 'static,
    ) -> Result<mpsc::Receiver<SignalMessage>, SignalError> {
        self.add_listener(recipient, payload_type, Some(Box::new(filter))).await
    }

    async fn add_listener(
        &self,
        recipient: PublicKey,
        payload_type: Option<&str>,
        filter: Option<Filter>,
    ) -> Result<mpsc::Receiver<SignalMessage>, SignalError> {
        let (sender, receiver) = mpsc::channel(LISTENER_QUEUE);
        let listener = Listener { recipient, payload_type: payload_type.map(str::to_owned), filter, sender };
        let (added, in_place) = oneshot::channel();
        self.commands.send(Command::Listen { listener, added }).await.map_err(|_| SignalError::Closed)?;
        in_place.await.map_err(|_| SignalError::Closed)?;
        self.signal.subscribe(recipient).await?;
        Ok(receiver)
    }
}

struct Task {
    core: MessengerCore,
    signal: Arc<dyn Signal>,
    events: broadcast::Receiver<Event>,
    commands: mpsc::Receiver<Command>,
    listeners: Vec<Listener>,
    replies: std::collections::HashMap<Token, oneshot::Sender<Result<(), SignalError>>>,
    next_token: Token,
    /// Sends under way; dropping the task aborts them.
    sends: JoinSet<()>,
}

impl Task {
    async fn run(mut self) {
        loop {
            self.handle_outputs();
            self.start_sends();
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Send { author, recipient, payload, reply }) => {
                        self.next_token += 1;
                        self.replies.insert(self.next_token, reply);
                        let id = PublicKey::random();
                        self.core.send(now(), self.next_token, id, author, recipient, payload);
                    }
                    Some(Command::Listen { listener, added }) => {
                        self.listeners.retain(|listener| !listener.sender.is_closed());
                        self.listeners.push(listener);
                        let _ = added.send(());
                    }
                },
                event = self.events.recv() => match event {
                    Ok(Event::Message(message)) => self.core.handle_message(now(), message),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "messenger fell behind signaling; missed messages will be resent");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                // A finished send frees a slot for the next transmission.
                Some(_) = self.sends.join_next(), if !self.sends.is_empty() => {}
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => self.core.handle_timeout(now()),
            }
        }
    }

    /// Hands transmissions to signaling while fewer than [`CONCURRENT_SENDS`] are under way; the
    /// rest wait in the core (which bounds them) for a send to finish.
    fn start_sends(&mut self) {
        while self.sends.len() < CONCURRENT_SENDS {
            let Some(message) = self.core.poll_transmit() else { return };
            let signal = self.signal.clone();
            self.sends.spawn(async move {
                // A failed send is covered by the resend schedule.
                let _ = signal.send(message).await;
            });
        }
    }

    /// Hands results to their callers and received messages to their listeners.
    fn handle_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Delivered(token) => self.reply(token, Ok(())),
                Output::Failed(token, err) => self.reply(token, Err(err)),
                Output::Received { id, message } => {
                    if self.offer(message) {
                        self.core.accepted(id);
                    } else {
                        self.core.refused(id);
                    }
                }
            }
        }
    }

    fn reply(&mut self, token: Token, result: Result<(), SignalError>) {
        if let Some(reply) = self.replies.remove(&token) {
            let _ = reply.send(result);
        }
    }

    /// Offers `message` to every listener that takes it: all get it if all have room; returns
    /// whether they did (false too when no listener takes it).
    fn offer(&mut self, message: SignalMessage) -> bool {
        let payload_type = mesh_proto::any::type_name(&message.payload.type_url);
        let mut permits = Vec::new();
        for listener in self.listeners.iter().filter(|listener| listener.takes(&message, payload_type)) {
            match listener.sender.try_reserve() {
                Ok(permit) => permits.push(permit),
                Err(mpsc::error::TrySendError::Full(())) => {
                    debug!(recipient = %message.recipient.short(), "a listener is full; the sender will resend");
                    return false;
                }
                // Its receiver was dropped; it is removed with the next listener added.
                Err(mpsc::error::TrySendError::Closed(())) => {}
            }
        }
        if permits.is_empty() {
            debug!(recipient = %message.recipient.short(), payload_type, "no listener for a message");
            return false;
        }
        for permit in permits {
            permit.send(message.clone());
        }
        true
    }
}

/// The current time on tokio's clock, which tests may pause and advance.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
