//! Reliable delivery over best-effort signaling, without I/O.
//!
//! A message travels as a `ReliablePayload` with a random id. The sender resends it with a
//! doubling delay (1 s, 2 s, 4 s, …) until the recipient's `Acknowledgement` for that id arrives,
//! and gives up after 10 s.
//!
//! The recipient acknowledges only what its user took: a new message is reported as
//! [`Output::Received`], and the user answers [`MessengerCore::accepted`] (a listener's queue took
//! it: acknowledge it and remember its id) or [`MessengerCore::refused`] (no room, or nobody
//! listening: no acknowledgement and nothing remembered, so the sender's next copy is a new
//! chance). Once accepted, every further copy is acknowledged again (an acknowledgement may be
//! lost too) but not reported; ids are remembered for a few minutes.

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
#[non_exhaustive]
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
    /// Received messages waiting for the user's [`MessengerCore::accepted`] or
    /// [`MessengerCore::refused`] at most; past it new messages are dropped unacknowledged (their
    /// senders resend).
    pub max_unsettled: usize,
    /// Messages waiting to be handed to signaling at most before acknowledgements are dropped
    /// (the sender resends, and its copy is acknowledged then), so a flood of incoming messages
    /// cannot queue acknowledgements without bound while signaling is slow.
    pub max_queued_transmissions: usize,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            remember_for: Duration::from_secs(120),
            max_pending: 4096,
            max_remembered: 65_536,
            max_unsettled: 1024,
            max_queued_transmissions: 4096,
        }
    }
}

impl MessengerConfig {
    /// Sets [`MessengerConfig::retry_initial`].
    pub fn with_retry_initial(mut self, delay: Duration) -> Self {
        self.retry_initial = delay;
        self
    }

    /// Sets [`MessengerConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`MessengerConfig::max_unsettled`].
    pub fn with_max_unsettled(mut self, max: usize) -> Self {
        self.max_unsettled = max;
        self
    }

    /// Sets [`MessengerConfig::max_queued_transmissions`].
    pub fn with_max_queued_transmissions(mut self, max: usize) -> Self {
        self.max_queued_transmissions = max;
        self
    }
}

/// Identifies a send, so its result can be matched to the caller.
pub type Token = u64;

/// What the core reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A new message for a local peer: `payload` is the inner payload, unwrapped. Answer with
    /// [`MessengerCore::accepted`] or [`MessengerCore::refused`] for `id`.
    Received {
        /// The message's id.
        id: PublicKey,
        /// The message.
        message: SignalMessage,
    },
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

/// Where the acknowledgement of a received message goes, once its user accepted it.
#[derive(Debug)]
struct Unsettled {
    author: PublicKey,
    recipient: PublicKey,
}

/// The sans-IO reliable messenger.
#[derive(Debug)]
pub struct MessengerCore {
    config: MessengerConfig,
    pending: HashMap<PublicKey, Pending>,
    remembered: Remembered,
    /// Received messages reported to the user and not yet accepted or refused.
    unsettled: HashMap<PublicKey, Unsettled>,
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
            unsettled: HashMap::new(),
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
            if self.remembered.previous.contains(&id) || self.remembered.current.contains(&id) {
                // Accepted before: acknowledge again, as the earlier acknowledgement may be lost.
                self.acknowledge(id, message.recipient, message.author);
                return;
            }
            // A copy of a message being decided on is dropped: the decision acknowledges it.
            if self.unsettled.contains_key(&id) {
                return;
            }
            if self.unsettled.len() >= self.config.max_unsettled {
                tracing::debug!("too many received messages undecided; dropped one unacknowledged");
                return;
            }
            self.unsettled.insert(id, Unsettled { author: message.author, recipient: message.recipient });
            self.output.push_back(Output::Received {
                id,
                message: SignalMessage { payload: reliable.payload.unwrap_or_default(), ..message },
            });
        } else if any::is::<Acknowledgement>(&message.payload) {
            let Ok(ack) = any::decode_value::<Acknowledgement>(&message.payload) else { return };
            let Some(id) = ack.message_id.as_ref().and_then(|id| id.to_key().ok()) else { return };
            if let Some(pending) = self.pending.remove(&id) {
                self.output.push_back(Output::Delivered(pending.token));
            }
        }
    }

    /// The user took the received message `id` (a listener's queue had room): acknowledge it and
    /// remember its id, so copies are acknowledged but not reported again.
    pub fn accepted(&mut self, id: PublicKey) {
        let Some(unsettled) = self.unsettled.remove(&id) else { return };
        self.remembered.current.insert(id);
        self.acknowledge(id, unsettled.recipient, unsettled.author);
    }

    /// The user could not take the received message `id` (no room, or nobody listening): no
    /// acknowledgement, nothing remembered, so the sender's next copy is reported anew.
    pub fn refused(&mut self, id: PublicKey) {
        self.unsettled.remove(&id);
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

    /// Queues the acknowledgement of `id` from `from` (the recipient) to `to` (the sender), unless
    /// too much is waiting for signaling already.
    fn acknowledge(&mut self, id: PublicKey, from: PublicKey, to: PublicKey) {
        if self.transmit.len() >= self.config.max_queued_transmissions {
            tracing::debug!("signaling is behind; dropped an acknowledgement (the sender resends)");
            return;
        }
        let ack = Acknowledgement { message_id: Some(id.into()) };
        self.transmit.push_back(SignalMessage { author: from, recipient: to, payload: any::pack(&ack) });
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

    /// The core's outputs, each received message accepted, then its transmissions.
    fn drain(core: &mut MessengerCore) -> (Vec<SignalMessage>, Vec<Output>) {
        let outputs = accept_all(core);
        (std::iter::from_fn(|| core.poll_transmit()).collect(), outputs)
    }

    /// The core's outputs, each received message accepted.
    fn accept_all(core: &mut MessengerCore) -> Vec<Output> {
        let outputs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
        for output in &outputs {
            if let Output::Received { id, .. } = output {
                core.accepted(*id);
            }
        }
        outputs
    }

    fn reliable(id: PublicKey, body: &str) -> SignalMessage {
        let reliable = ReliablePayload { message_id: Some(id.into()), payload: Some(text(body)) };
        SignalMessage { author: key(), recipient: key(), payload: any::pack(&reliable) }
    }

    fn is_ack(message: &SignalMessage) -> bool {
        any::is::<Acknowledgement>(&message.payload)
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
        assert!(matches!(&b_out[0], Output::Received { message, .. } if message.payload == text("hi")));
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
        let message = reliable(key(), "x");
        core.handle_message(start, message.clone());
        assert_eq!(drain(&mut core).1.len(), 1);
        core.handle_message(start + config.remember_for, message.clone());
        assert_eq!(drain(&mut core).1.len(), 0, "a repeat within the window is dropped");
        core.handle_message(start + config.remember_for * 3, message);
        assert_eq!(drain(&mut core).1.len(), 1, "long after, the id is forgotten");
    }

    #[test]
    fn a_refused_message_is_not_acknowledged_and_its_next_copy_is_reported_again() {
        let now = Instant::now();
        let mut core = MessengerCore::new(MessengerConfig::default(), now);
        let (id, message) = {
            let id = key();
            (id, reliable(id, "later"))
        };
        core.handle_message(now, message.clone());
        assert!(matches!(core.poll_output(), Some(Output::Received { id: got, .. }) if got == id));
        core.refused(id);
        assert_eq!(core.poll_transmit(), None, "no acknowledgement for a refused message");

        core.handle_message(now, message.clone());
        assert!(matches!(core.poll_output(), Some(Output::Received { .. })), "the resend is a new chance");
        core.accepted(id);
        assert!(core.poll_transmit().is_some_and(|ack| is_ack(&ack) && ack.recipient == message.author));
        core.handle_message(now, message);
        assert_eq!(core.poll_output(), None, "accepted once, reported once");
        assert!(core.poll_transmit().is_some_and(|ack| is_ack(&ack)), "but every copy is acknowledged");
    }

    #[test]
    fn a_copy_arriving_while_its_message_is_undecided_is_dropped() {
        let now = Instant::now();
        let mut core = MessengerCore::new(MessengerConfig::default(), now);
        let id = key();
        core.handle_message(now, reliable(id, "once"));
        core.handle_message(now, reliable(id, "once"));
        let (transmitted, outputs) = {
            let outputs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
            (std::iter::from_fn(|| core.poll_transmit()).count(), outputs)
        };
        assert_eq!((transmitted, outputs.len()), (0, 1));
        core.accepted(id);
        assert_eq!(std::iter::from_fn(|| core.poll_transmit()).count(), 1, "one acknowledgement");
    }

    #[test]
    fn undecided_messages_are_bounded() {
        let now = Instant::now();
        let config = MessengerConfig { max_unsettled: 2, ..MessengerConfig::default() };
        let mut core = MessengerCore::new(config, now);
        for _ in 0..5 {
            core.handle_message(now, reliable(key(), "flood"));
        }
        assert_eq!(std::iter::from_fn(|| core.poll_output()).count(), 2);
        assert_eq!(core.poll_transmit(), None, "the dropped ones are not acknowledged either");
    }

    #[test]
    fn acknowledgements_waiting_for_signaling_are_bounded() {
        let now = Instant::now();
        let config = MessengerConfig { max_queued_transmissions: 3, ..MessengerConfig::default() };
        let mut core = MessengerCore::new(config, now);
        for _ in 0..10 {
            core.handle_message(now, reliable(key(), "flood"));
            accept_all(&mut core);
        }
        assert_eq!(std::iter::from_fn(|| core.poll_transmit()).count(), 3);
    }
}
