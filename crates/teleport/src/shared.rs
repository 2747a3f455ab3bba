//! The state a connection's driver task shares with its channel handles: the sans-IO [`Muxer`]
//! plus, per channel, an inbox and the wakers of tasks waiting to read or write.
//!
//! The lock is a plain `std::sync::Mutex`, held only for short, non-blocking steps and never across
//! an `.await`. Inboxes are bounded by the muxer's receive budget: every message taken out of an
//! inbox (or dropped with it) is reported to the muxer as consumed, and while unread data pauses
//! the muxer's input the driver stops reading the socket until a reader catches up (the wire has
//! no per-channel flow control, so TCP's is the only way to slow a remote down).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::muxer::{ChannelId, CloseReason, Event, Muxer};
use crate::payload::Payload;

/// What a connection is doing, as seen by the extension host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Open,
    Closing,
    Closed(CloseReason),
}

#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) queue: VecDeque<Payload>,
    pub(crate) readers: Vec<Waker>,
    pub(crate) writers: Vec<Waker>,
    pub(crate) opened: Vec<Waker>,
    /// Tasks waiting until everything queued on the channel went to the transport.
    pub(crate) flushers: Vec<Waker>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) muxer: Muxer,
    pub(crate) inboxes: HashMap<ChannelId, Inbox>,
    pub(crate) closed: Option<CloseReason>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: something to send, room in an inbox, a close.
    pub(crate) wake_driver: Notify,
    pub(crate) phase: watch::Sender<Phase>,
}

pub(crate) fn add_waker(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

/// The time the driver runs on (tokio's clock, so paused-time tests see it).
pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn wake_all(list: &mut Vec<Waker>) {
    for waker in list.drain(..) {
        waker.wake();
    }
}

impl Shared {
    pub(crate) fn new(muxer: Muxer) -> Self {
        Self {
            state: Mutex::new(State { muxer, inboxes: HashMap::new(), closed: None }),
            wake_driver: Notify::new(),
            phase: watch::Sender::new(Phase::Open),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this crate; keep serving the other handles.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Drains the muxer's events into the inboxes and wakes whoever waits. Returns the phase to
    /// publish when it changed.
    pub(crate) fn dispatch_events(&mut self) -> Option<Phase> {
        let mut phase = None;
        while let Some(event) = self.muxer.poll_event() {
            match event {
                Event::Data { channel, data } => match self.inboxes.get_mut(&channel) {
                    Some(inbox) => {
                        inbox.queue.push_back(data);
                        wake_all(&mut inbox.readers);
                    }
                    None => {
                        self.muxer.consumed(now(), channel, data.len());
                    }
                },
                Event::Writable { channel } => {
                    if let Some(inbox) = self.inboxes.get_mut(&channel) {
                        wake_all(&mut inbox.writers);
                    }
                }
                Event::RemoteOpened { channel, .. } => {
                    if let Some(inbox) = self.inboxes.get_mut(&channel) {
                        wake_all(&mut inbox.opened);
                    }
                }
                Event::RemoteClosing { .. } => phase = Some(Phase::Closing),
                Event::Closed { reason } => {
                    self.closed = Some(reason.clone());
                    for inbox in self.inboxes.values_mut() {
                        wake_all(&mut inbox.readers);
                        wake_all(&mut inbox.writers);
                        wake_all(&mut inbox.opened);
                        wake_all(&mut inbox.flushers);
                    }
                    phase = Some(Phase::Closed(reason));
                }
            }
        }
        for (channel, inbox) in &mut self.inboxes {
            if !inbox.flushers.is_empty() && self.muxer.queued_bytes(*channel) == 0 {
                wake_all(&mut inbox.flushers);
            }
        }
        phase
    }

    /// Takes the next message of `channel`'s inbox; tells whether the driver should be woken
    /// because this made room for the muxer's input.
    pub(crate) fn pop(&mut self, channel: ChannelId) -> (Option<Payload>, bool) {
        let Some(inbox) = self.inboxes.get_mut(&channel) else { return (None, false) };
        let Some(data) = inbox.queue.pop_front() else { return (None, false) };
        let resumed = self.muxer.consumed(now(), channel, data.len());
        (Some(data), resumed)
    }

    /// Forgets a channel's inbox when its handle is dropped; tells whether the driver should be
    /// woken because this made room for the muxer's input.
    pub(crate) fn release(&mut self, channel: ChannelId) -> bool {
        self.inboxes.remove(&channel);
        self.muxer.release_channel(now(), channel)
    }
}

impl Shared {
    /// Runs `f` on the state, delivers the events it caused, and wakes the driver.
    pub(crate) fn update_and_wake<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let result = self.update(f);
        self.wake_driver.notify_one();
        result
    }

    /// Runs `f` on the state, then delivers the events it caused (the driver's own step).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, phase) = {
            let mut state = self.lock();
            let result = f(&mut state);
            (result, state.dispatch_events())
        };
        if let Some(phase) = phase {
            self.publish(phase);
        }
        result
    }

    /// Publishes a phase change; `Closed` is final.
    pub(crate) fn publish(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            if matches!(current, Phase::Closed(_)) || *current == phase {
                return false;
            }
            *current = phase;
            true
        });
    }
}
