//! Reliable messages between peers over any [`Signal`]: the DXOS `Messenger`.

mod core;

use std::{collections::HashMap, sync::Arc, time::Instant};

use mesh_keys::PublicKey;
use mesh_proto::Any;
use tokio::{
    sync::{Semaphore, broadcast, mpsc, oneshot},
    time::sleep_until,
};
use tracing::warn;

pub use self::core::{MessengerConfig, MessengerCore, Output, Token};
use crate::{Event, Signal, SignalError, SignalMessage};

/// Messages buffered per listener; a listener that falls further behind loses messages.
const LISTENER_QUEUE: usize = 256;
/// Sends handed to signaling at once.
const CONCURRENT_SENDS: usize = 64;

enum Command {
    Send {
        author: PublicKey,
        recipient: PublicKey,
        payload: Any,
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    Listen {
        recipient: PublicKey,
        payload_type: Option<String>,
        sender: mpsc::Sender<SignalMessage>,
    },
}

/// Reliable messaging over a [`Signal`] implementation: acknowledged, resent, deduplicated, and
/// routed to listeners by recipient and payload type. Cloning gives another handle; the messenger
/// stops when the last handle is dropped.
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
        let (commands, receiver) = mpsc::channel(256);
        let task = Task {
            core: MessengerCore::new(config, now()),
            signal: signal.clone(),
            events: signal.events(),
            commands: receiver,
            listeners: HashMap::new(),
            replies: HashMap::new(),
            next_token: 0,
            sends: Arc::new(Semaphore::new(CONCURRENT_SENDS)),
        };
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
        let (sender, receiver) = mpsc::channel(LISTENER_QUEUE);
        let payload_type = payload_type.map(str::to_owned);
        self.commands
            .send(Command::Listen { recipient, payload_type, sender })
            .await
            .map_err(|_| SignalError::Closed)?;
        self.signal.subscribe(recipient).await?;
        Ok(receiver)
    }
}

struct Task {
    core: MessengerCore,
    signal: Arc<dyn Signal>,
    events: broadcast::Receiver<Event>,
    commands: mpsc::Receiver<Command>,
    listeners: HashMap<(PublicKey, Option<String>), Vec<mpsc::Sender<SignalMessage>>>,
    replies: HashMap<Token, oneshot::Sender<Result<(), SignalError>>>,
    next_token: Token,
    sends: Arc<Semaphore>,
}

impl Task {
    async fn run(mut self) {
        loop {
            self.flush().await;
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
                    Some(Command::Listen { recipient, payload_type, sender }) => {
                        self.listeners.entry((recipient, payload_type)).or_default().push(sender);
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
                () = async {
                    match deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => self.core.handle_timeout(now()),
            }
        }
    }

    /// Hands transmissions to signaling and results to their callers and listeners.
    async fn flush(&mut self) {
        while let Some(message) = self.core.poll_transmit() {
            // Waits only when CONCURRENT_SENDS are already under way.
            let Ok(permit) = self.sends.clone().acquire_owned().await else { return };
            let signal = self.signal.clone();
            tokio::spawn(async move {
                // A failed send is covered by the resend schedule.
                let _ = signal.send(message).await;
                drop(permit);
            });
        }
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Delivered(token) => self.reply(token, Ok(())),
                Output::Failed(token, err) => self.reply(token, Err(err)),
                Output::Received(message) => self.deliver(message),
            }
        }
    }

    fn reply(&mut self, token: Token, result: Result<(), SignalError>) {
        if let Some(reply) = self.replies.remove(&token) {
            let _ = reply.send(result);
        }
    }

    fn deliver(&mut self, message: SignalMessage) {
        let payload_type = mesh_proto::any::type_name(&message.payload.type_url).to_owned();
        for key in [(message.recipient, Some(payload_type)), (message.recipient, None)] {
            if let Some(senders) = self.listeners.get_mut(&key) {
                senders.retain(|sender| match sender.try_send(message.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        warn!(recipient = %message.recipient.short(), "listener is full; message dropped");
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
        }
    }
}

/// The current time on tokio's clock, which tests may pause and advance.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
