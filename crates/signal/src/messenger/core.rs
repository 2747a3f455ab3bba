//! Reliable delivery over best-effort signaling, without I/O.
//!
//! A message travels as a `ReliablePayload` with a random id. The sender resends it with a
//! doubling delay (1 s, 2 s, 4 s, …) until the recipient's `Acknowledgement` for that id arrives,
//! and gives up after 10 s. The recipient acknowledges every copy (an acknowledgement may be lost
//! too) but delivers each id once, remembering ids for a few minutes.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use mesh_keys::PublicKey;
use mesh_proto::{
    Any, any,
    dxos::mesh::messaging::{Acknowledgement, ReliablePayload},
};

use crate::{SignalError, SignalMessage};

/// Timing and memory bounds of the messenger.
#[derive(Debug, Clone, Copy)]
pub struct MessengerConfig {
    /// Delay before the first resend; it doubles after each.
    pub retry_initial: Duration,
    /// A message not acknowledged by then has failed.
    pub timeout: Duration,
    /// How long a received message id is remembered, at least, to drop duplicates.
    pub remember_for: Duration,
    /// Messages awaiting acknowledgement at most; more fail with [`SignalError::Busy`].
    pub max_pending: usize,
    /// Ids remembered at most per generation; past it the older generation is forgotten early.
    pub max_remembered: usize,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            remember_for: Duration::from_secs(120),
            max_pending: 4096,
            max_remembered: 65_536,
        }
    }
}

/// Identifies a send, so its result can be matched to the caller.
pub type Token = u64;

/// What the core reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A new message for a local peer: `payload` is the inner payload, unwrapped.
    Received(SignalMessage),
    /// The recipient acknowledged the message sent with this token.
    Delivered(Token),
    /// The message sent with this token was not acknowledged in time.
    Failed(Token, SignalError),
}

#[derive(Debug)]
struct Pending {
    token: Token,
    message: SignalMessage,
    next_attempt: Instant,
    delay: Duration,
    deadline: Instant,
}

/// Received ids in two generations: the current one, and the previous one, dropped at rotation.
#[derive(Debug)]
struct Remembered {
    current: HashSet<PublicKey>,
    previous: HashSet<PublicKey>,
    rotate_at: Instant,
}

/// The sans-IO reliable messenger.
#[derive(Debug)]
pub struct MessengerCore {
    config: MessengerConfig,
    pending: HashMap<PublicKey, Pending>,
    remembered: Remembered,
    transmit: VecDeque<SignalMessage>,
    output: VecDeque<Output>,
}

impl MessengerCore {
    /// A messenger starting at `now`.
    pub fn new(config: MessengerConfig, now: Instant) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            remembered: Remembered {
                current: HashSet::new(),
                previous: HashSet::new(),
                rotate_at: now + config.remember_for,
            },
            transmit: VecDeque::new(),
            output: VecDeque::new(),
        }
    }

    /// Sends `payload` reliably from `author` to `recipient`, under the random id `message_id`.
    pub fn send(
        &mut self,
        now: Instant,
        token: Token,
        message_id: PublicKey,
        author: PublicKey,
        recipient: PublicKey,
        payload: Any,
    ) {
        if self.pending.len() >= self.config.max_pending {
            self.output.push_back(Output::Failed(token, SignalError::Busy));
            return;
        }
        let reliable = ReliablePayload { message_id: Some(message_id.into()), payload: Some(payload) };
        let message = SignalMessage { author, recipient, payload: any::pack(&reliable) };
        self.transmit.push_back(message.clone());
        let delay = self.config.retry_initial;
        self.pending.insert(
            message_id,
            Pending { token, message, next_attempt: now + delay, delay, deadline: now + self.config.timeout },
        );
    }

    /// Handles a message that signaling delivered to a local peer.
    pub fn handle_message(&mut self, now: Instant, message: SignalMessage) {
        self.rotate(now);
        if any::is::<ReliablePayload>(&message.payload) {
            let Ok(reliable) = any::decode_value::<ReliablePayload>(&message.payload) else { return };
            let Some(id) = reliable.message_id.as_ref().and_then(|id| id.to_key().ok()) else { return };
            // Acknowledge every copy: the acknowledgement of an earlier one may have been lost.
            let ack = Acknowledgement { message_id: Some(id.into()) };
            self.transmit.push_back(SignalMessage {
                author: message.recipient,
                recipient: message.author,
                payload: any::pack(&ack),
            });
            if self.remembered.previous.contains(&id) || !self.remembered.current.insert(id) {
                return;
            }
            self.output.push_back(Output::Received(SignalMessage {
                payload: reliable.payload.unwrap_or_default(),
                ..message
            }));
        } else if any::is::<Acknowledgement>(&message.payload) {
            let Ok(ack) = any::decode_value::<Acknowledgement>(&message.payload) else { return };
            let Some(id) = ack.message_id.as_ref().and_then(|id| id.to_key().ok()) else { return };
            if let Some(pending) = self.pending.remove(&id) {
                self.output.push_back(Output::Delivered(pending.token));
            }
        }
    }

    /// Resends what is due and fails what is late.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rotate(now);
        let mut failed = Vec::new();
        for (id, pending) in &mut self.pending {
            if pending.deadline <= now {
                failed.push(*id);
            } else if pending.next_attempt <= now {
                self.transmit.push_back(pending.message.clone());
                pending.delay *= 2;
                pending.next_attempt = now + pending.delay;
            }
        }
        for id in failed {
            if let Some(pending) = self.pending.remove(&id) {
                self.output
                    .push_back(Output::Failed(pending.token, SignalError::Timeout("not acknowledged")));
            }
        }
    }

    /// The next time [`MessengerCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.next_attempt.min(p.deadline));
        pending.chain(std::iter::once(self.remembered.rotate_at)).min()
    }

    /// The next message to hand to signaling.
    pub fn poll_transmit(&mut self) -> Option<SignalMessage> {
        self.transmit.pop_front()
    }

    /// The next result or received message.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.output.pop_front()
    }

    fn rotate(&mut self, now: Instant) {
        let remembered = &mut self.remembered;
        if now >= remembered.rotate_at || remembered.current.len() >= self.config.max_remembered {
            remembered.previous = std::mem::take(&mut remembered.current);
            remembered.rotate_at = now + self.config.remember_for;
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_keys::Keypair;

    use super::*;

    fn key() -> PublicKey {
        Keypair::generate().public()
    }

    fn text(body: &str) -> Any {
        Any { type_url: "test.Text".into(), value: body.as_bytes().to_vec() }
    }

    fn drain(core: &mut MessengerCore) -> (Vec<SignalMessage>, Vec<Output>) {
        (
            std::iter::from_fn(|| core.poll_transmit()).collect(),
            std::iter::from_fn(|| core.poll_output()).collect(),
        )
    }

    /// Two messengers joined by a lossy wire on a virtual clock; `drop_every` loses that share of
    /// transmissions in both directions.
    fn run_pair(drop: impl Fn(usize) -> bool, end: Duration) -> (Vec<Output>, Vec<Output>) {
        let start = Instant::now();
        let (alice, bob) = (key(), key());
        let mut a = MessengerCore::new(MessengerConfig::default(), start);
        let mut b = MessengerCore::new(MessengerConfig::default(), start);
        a.send(start, 1, key(), alice, bob, text("hi"));
        let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
        let mut now = start;
        let mut sent = 0;
        while now <= start + end {
            loop {
                let (to_b, out_a) = drain(&mut a);
                let (to_a, out_b) = drain(&mut b);
                a_out.extend(out_a);
                b_out.extend(out_b);
                if to_b.is_empty() && to_a.is_empty() {
                    break;
                }
                for message in to_b {
                    sent += 1;
                    if !drop(sent) {
                        b.handle_message(now, message);
                    }
                }
                for message in to_a {
                    sent += 1;
                    if !drop(sent) {
                        a.handle_message(now, message);
                    }
                }
            }
            let next = [a.poll_timeout(), b.poll_timeout()].into_iter().flatten().min().expect("timers");
            now = next.max(now + Duration::from_millis(1));
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
        (a_out, b_out)
    }

    #[test]
    fn delivered_once_and_acknowledged() {
        let (a_out, b_out) = run_pair(|_| false, Duration::from_secs(30));
        assert_eq!(a_out, vec![Output::Delivered(1)]);
        assert_eq!(b_out.len(), 1);
        assert!(matches!(&b_out[0], Output::Received(m) if m.payload == text("hi")));
    }

    #[test]
    fn first_transmission_lost_is_resent() {
        let (a_out, b_out) = run_pair(|n| n == 1, Duration::from_secs(30));
        assert_eq!(a_out, vec![Output::Delivered(1)]);
        assert_eq!(b_out.len(), 1);
    }

    #[test]
    fn lost_acknowledgement_means_duplicate_is_acknowledged_but_delivered_once() {
        // Transmission 2 is bob's first acknowledgement.
        let (a_out, b_out) = run_pair(|n| n == 2, Duration::from_secs(30));
        assert_eq!(a_out, vec![Output::Delivered(1)]);
        assert_eq!(b_out.len(), 1, "{b_out:?}");
    }

    #[test]
    fn one_in_three_lost_still_delivers() {
        let (a_out, b_out) = run_pair(|n| n % 3 == 1, Duration::from_secs(30));
        assert_eq!(a_out, vec![Output::Delivered(1)]);
        assert_eq!(b_out.len(), 1);
    }

    #[test]
    fn fails_after_the_timeout_with_resends_doubling() {
        let start = Instant::now();
        let mut core = MessengerCore::new(MessengerConfig::default(), start);
        core.send(start, 7, key(), key(), key(), text("lost"));
        let mut attempts = vec![Duration::ZERO];
        let _ = core.poll_transmit();
        let result = loop {
            let now = core.poll_timeout().expect("pending");
            core.handle_timeout(now);
            while core.poll_transmit().is_some() {
                attempts.push(now - start);
            }
            if let Some(output) = core.poll_output() {
                break (output, now - start);
            }
        };
        let seconds: Vec<u64> = attempts.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [0, 1, 3, 7]);
        assert_eq!(
            result,
            (Output::Failed(7, SignalError::Timeout("not acknowledged")), Duration::from_secs(10))
        );
    }

    #[test]
    fn remembered_ids_are_forgotten_after_two_generations() {
        let start = Instant::now();
        let config = MessengerConfig::default();
        let mut core = MessengerCore::new(config, start);
        let id = key();
        let reliable = ReliablePayload { message_id: Some(id.into()), payload: Some(text("x")) };
        let message = SignalMessage { author: key(), recipient: key(), payload: any::pack(&reliable) };
        core.handle_message(start, message.clone());
        core.handle_message(start + config.remember_for, message.clone());
        let received = std::iter::from_fn(|| core.poll_output()).count();
        assert_eq!(received, 1, "a repeat within the window is dropped");
        core.handle_message(start + config.remember_for * 3, message);
        assert_eq!(std::iter::from_fn(|| core.poll_output()).count(), 1, "long after, the id is forgotten");
    }
}
