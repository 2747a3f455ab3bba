//! The state a connection's driver task shares with its channel handles: the sans-IO [`Muxer`]
//! plus, per channel, an inbox and the wakers of tasks waiting to read or write.
//!
//! The lock is a plain `std::sync::Mutex`, held only for short, non-blocking steps and never across
//! an `.await`. Inboxes are bounded: when any inbox holds more than `recv_buffer` bytes the driver
//! stops reading the socket until a reader catches up (the wire has no per-channel flow control, so
//! TCP's is the only way to slow a remote down).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::{Notify, watch};

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
    pub(crate) bytes: usize,
    pub(crate) readers: Vec<Waker>,
    pub(crate) writers: Vec<Waker>,
    pub(crate) opened: Vec<Waker>,
    /// Tasks waiting until everything queued on the channel went to the transport.
    pub(crate) flushers: Vec<Waker>,
    /// Set while this inbox holds more than the limit (counted in `State::full_inboxes`).
    pub(crate) full: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) muxer: Muxer,
    pub(crate) inboxes: HashMap<ChannelId, Inbox>,
    pub(crate) recv_buffer: usize,
    pub(crate) full_inboxes: usize,
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

fn wake_all(list: &mut Vec<Waker>) {
    for waker in list.drain(..) {
        waker.wake();
    }
}

impl Shared {
    pub(crate) fn new(muxer: Muxer, recv_buffer: usize) -> Self {
        Self {
            state: Mutex::new(State {
                muxer,
                inboxes: HashMap::new(),
                recv_buffer,
                full_inboxes: 0,
                closed: None,
            }),
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
                Event::Data { channel, data } => {
                    if let Some(inbox) = self.inboxes.get_mut(&channel) {
                        inbox.bytes += data.len();
                        inbox.queue.push_back(data);
                        if !inbox.full && inbox.bytes > self.recv_buffer {
                            inbox.full = true;
                            self.full_inboxes += 1;
                        }
                        wake_all(&mut inbox.readers);
                    }
                }
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
    /// because the inbox dropped back under the limit.
    pub(crate) fn pop(&mut self, channel: ChannelId) -> (Option<Payload>, bool) {
        let Some(inbox) = self.inboxes.get_mut(&channel) else { return (None, false) };
        let data = inbox.queue.pop_front();
        if let Some(data) = &data {
            inbox.bytes -= data.len();
        }
        let mut wake = false;
        if inbox.full && inbox.bytes <= self.recv_buffer {
            inbox.full = false;
            self.full_inboxes -= 1;
            wake = true;
        }
        (data, wake)
    }

    /// Forgets a channel's inbox when its handle is dropped.
    pub(crate) fn release(&mut self, channel: ChannelId) -> bool {
        self.muxer.release_channel(channel);
        match self.inboxes.remove(&channel) {
            Some(inbox) if inbox.full => {
                self.full_inboxes -= 1;
                true
            }
            _ => false,
        }
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
