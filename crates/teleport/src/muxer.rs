//! The sans-IO Teleport core: framer + balancer + muxer in one `&mut self` state machine.
//!
//! Inputs: [`Muxer::handle_input`] (bytes from the remote), [`Muxer::handle_eof`],
//! [`Muxer::handle_timeout`], and the local calls [`Muxer::open_channel`], [`Muxer::send`],
//! [`Muxer::consumed`] (delivered data was read), [`Muxer::release_channel`], [`Muxer::close`],
//! [`Muxer::destroy`]. Outputs, to drain after every input in this order:
//! [`Muxer::poll_transmit`] (bytes for the remote), [`Muxer::poll_event`], [`Muxer::poll_timeout`];
//! [`Muxer::wants_input`] says whether to read more from the transport. Time is a parameter;
//! nothing here reads a clock, spawns or touches a socket.
//!
//! Channels are keyed by tag. Our ids start at 1 (0 is the command channel). A channel's data
//! waits until the remote's `OpenChannel` for the same tag tells us its id, which every `Data` we
//! send carries. `Data` for a channel we do not have (or no longer read) is dropped.
//!
//! Each channel's send buffer is bounded ([`Config::channel_send_buffer`]): [`Muxer::send`] refuses
//! with [`SendError::Full`] while the channel has that much queued, and reports
//! [`Event::Writable`] once it drained below it. The balancer serves channels in turn, so one busy
//! channel cannot starve the others.
//!
//! Receiving is bounded by one budget per connection ([`Config::receive_budget`]): bytes of partial
//! messages plus bytes delivered as [`Event::Data`] that the owner has not reported
//! [`Muxer::consumed`] yet. Unread bytes over a channel's limit or over half the budget pause the
//! input: frames already handed in wait, [`Muxer::wants_input`] turns false, and the owner stops
//! reading its transport until readers catch up. Only unread bytes pause, never partial ones, so a
//! pause always ends when the owner reads, and a large message interleaved with others can always
//! complete. Partial messages that would take the connection over the budget, or that get no chunk
//! for [`Config::reassembly_timeout`] while input is not paused, end the connection with
//! [`CloseReason::Protocol`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mesh_proto::dxos::mesh::muxer::{Close, Command, OpenChannel, command};

use crate::balancer::{Balancer, MAX_CHUNK, SYSTEM_CHANNEL};
use crate::command::{self as codec, Incoming};
use crate::error::{ChannelError, ProtocolError};
use crate::framer::{Frame, FrameDecoder};
use crate::payload::{FrameSink, Payload};

/// The content type DXOS gives RPC ports.
pub const RPC_CONTENT_TYPE: &str = "application/x-protobuf; messageType=\"dxos.rpc.Message\"";

/// A channel's id on this side. `Data` from the remote names it; it is also the balancer id our
/// chunks travel under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

/// Limits and timings of a [`Muxer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest message (a channel write, or a reassembled incoming command) in bytes.
    pub max_message_size: usize,
    /// Bytes a channel may have queued for sending before [`Muxer::send`] refuses more.
    pub channel_send_buffer: usize,
    /// The most channels (ours and the remote's) one connection may have.
    pub max_channels: usize,
    /// How long a graceful close waits for the remote's `Close` (DXOS: 3 s).
    pub close_timeout: Duration,
    /// Bytes delivered on a channel and not yet read that pause the connection's input (it stops
    /// reading its transport until the channel's reader catches up; the wire has no per-channel
    /// flow control).
    pub channel_recv_buffer: usize,
    /// Bytes the remote may make the connection hold at once: partial messages plus delivered
    /// messages not yet read. Unread bytes over half of it pause the input; partial messages that
    /// would take the total over it end the connection as a protocol violation, so the remote may
    /// always have half of it in partial messages. Raised to at least twice the largest message
    /// plus a chunk, so the largest message can always arrive.
    pub receive_budget: usize,
    /// How long a partial message may go without a chunk while the input is not paused before the
    /// connection ends as a protocol violation.
    pub reassembly_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 4 << 20,
            channel_send_buffer: 256 << 10,
            max_channels: 1024,
            close_timeout: Duration::from_secs(3),
            channel_recv_buffer: 1 << 20,
            receive_budget: 16 << 20,
            reassembly_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Sets [`Config::max_message_size`].
    pub fn with_max_message_size(mut self, size: usize) -> Self {
        self.max_message_size = size;
        self
    }

    /// Sets [`Config::channel_send_buffer`].
    pub fn with_channel_send_buffer(mut self, bytes: usize) -> Self {
        self.channel_send_buffer = bytes;
        self
    }

    /// Sets [`Config::max_channels`].
    pub fn with_max_channels(mut self, max: usize) -> Self {
        self.max_channels = max;
        self
    }

    /// Sets [`Config::channel_recv_buffer`].
    pub fn with_channel_recv_buffer(mut self, bytes: usize) -> Self {
        self.channel_recv_buffer = bytes;
        self
    }

    /// Sets [`Config::receive_budget`].
    pub fn with_receive_budget(mut self, bytes: usize) -> Self {
        self.receive_budget = bytes;
        self
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it; the remote acknowledged (or the wait ran out, or the remote hung up).
    Local,
    /// The remote sent `Close` (with its error message, if any) and we answered.
    Remote(Option<String>),
    /// The byte stream ended without a `Close`.
    Eof,
    /// Destroyed locally without waiting (with the given reason, if any).
    Destroyed(Option<String>),
    /// The remote sent bytes that break the protocol.
    Protocol(ProtocolError),
    /// The transport failed.
    Io(String),
    /// The control extension's heartbeat went unanswered.
    HeartbeatTimeout,
}

/// Plain sentences (the text a `Close` carries to the remote when we abort, and what extensions
/// are told).
impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed"),
            CloseReason::Remote(None) => f.write_str("closed by the remote"),
            CloseReason::Remote(Some(error)) => write!(f, "closed by the remote: {error}"),
            CloseReason::Eof => f.write_str("the transport ended"),
            CloseReason::Destroyed(None) => f.write_str("destroyed"),
            CloseReason::Destroyed(Some(error)) => write!(f, "destroyed: {error}"),
            CloseReason::Protocol(error) => write!(f, "protocol violation: {error}"),
            CloseReason::Io(error) => write!(f, "transport error: {error}"),
            CloseReason::HeartbeatTimeout => f.write_str("heartbeat timed out"),
        }
    }
}

impl CloseReason {
    /// Whether the connection ended by a close both sides agreed on (or the remote hanging up).
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Local | CloseReason::Remote(_) | CloseReason::Eof)
    }
}

/// A close that is not [clean](CloseReason::is_clean) is an error, e.g. of a swarm's protocol;
/// its message already includes any inner error's.
impl std::error::Error for CloseReason {}

/// Something the muxer reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The remote opened `tag`: our writes on it now flow.
    RemoteOpened {
        /// Our id for the tag.
        channel: ChannelId,
        /// The tag.
        tag: String,
    },
    /// A message arrived on one of our open channels.
    Data {
        /// The channel.
        channel: ChannelId,
        /// The message, in the pieces it arrived in.
        data: Payload,
    },
    /// A channel that was refused with [`SendError::Full`] can take more.
    Writable {
        /// The channel.
        channel: ChannelId,
    },
    /// The remote asked to close; we are closing too.
    RemoteClosing {
        /// The remote's reason, if it gave one.
        error: Option<String>,
    },
    /// The connection is over; nothing more will be sent or received. Reported once.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why [`Muxer::send`] did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel's send buffer is full; wait for [`Event::Writable`] and try again.
    #[error("the channel's send buffer is full")]
    Full,
    /// The message can never be sent.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

#[derive(Debug)]
struct Channel {
    /// The remote's id for the tag, once it opened it.
    remote_id: Option<i32>,
    /// We sent `OpenChannel` (a port or stream reads it).
    local_open: bool,
    /// Writes made before the remote opened the tag.
    held: VecDeque<Bytes>,
    /// Bytes queued for sending: held data plus encoded commands in the balancer.
    queued: usize,
    /// A send of this many bytes was refused; report Writable when it would fit (and the queue
    /// drained to half, so writers wake once per batch rather than once per chunk).
    blocked: Option<usize>,
    /// Bytes delivered as [`Event::Data`] and not yet reported consumed.
    unread: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We are closing: queued data first, then our `Close`, then waiting for the remote's.
    Closing {
        deadline: Instant,
        close_queued: bool,
        remote_closed: bool,
    },
    /// Only a courtesy `Close` may still be in the balancer.
    Closed,
}

/// Framer, balancer and muxer for one connection, as a sans-IO state machine.
#[derive(Debug)]
pub struct Muxer {
    config: Config,
    decoder: FrameDecoder,
    balancer: Balancer,
    channels: HashMap<ChannelId, Channel>,
    by_tag: HashMap<String, ChannelId>,
    next_id: u32,
    state: State,
    events: VecDeque<Event>,
    /// We started the close (rather than answering the remote's).
    local_close: bool,
    /// The reason the remote's `Close` gave.
    remote_error: Option<String>,
    closed_reported: bool,
    /// The effective receive budget (see [`Config::receive_budget`]).
    receive_budget: usize,
    /// Bytes delivered on all channels and not yet consumed.
    unread: usize,
    /// Channels whose unread bytes are over [`Config::channel_recv_buffer`].
    channels_over: usize,
    /// The stream ended while frames were held back; end the connection once they are taken.
    eof_held: bool,
}

/// The longest channel tag a remote may open (tags are kept for the connection's life).
const MAX_TAG_LEN: usize = 1024;

/// An upper bound of a `Data` command's bytes around its payload, for held data.
const DATA_OVERHEAD: usize = 24;

impl Muxer {
    /// A fresh muxer.
    pub fn new(config: Config) -> Self {
        let max_message = config.max_message_size + DATA_OVERHEAD;
        let balancer = Balancer::new(max_message, config.max_channels + 1);
        let receive_budget = config.receive_budget.max(2 * (max_message + MAX_CHUNK));
        Self {
            config,
            decoder: FrameDecoder::new(),
            balancer,
            channels: HashMap::new(),
            by_tag: HashMap::new(),
            next_id: 1,
            state: State::Open,
            events: VecDeque::new(),
            local_close: false,
            remote_error: None,
            closed_reported: false,
            receive_budget,
            unread: 0,
            channels_over: 0,
            eof_held: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the connection is still open (not closing, not closed).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Opens the channel `tag` on our side: sends `OpenChannel` and returns our id for it.
    pub fn open_channel(&mut self, tag: &str, content_type: Option<&str>) -> Result<ChannelId, ChannelError> {
        if !self.is_open() {
            return Err(ChannelError::Closed);
        }
        let id = match self.by_tag.get(tag) {
            Some(&id) => {
                let channel = self.channels.get_mut(&id).ok_or(ChannelError::Closed)?;
                if channel.local_open {
                    return Err(ChannelError::AlreadyOpen(tag.to_owned()));
                }
                channel.local_open = true;
                id
            }
            None => {
                if self.channels.len() >= self.config.max_channels {
                    return Err(ChannelError::TooManyChannels(self.config.max_channels));
                }
                let id = self.create_channel(tag);
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.local_open = true;
                }
                id
            }
        };
        let cmd = Command {
            payload: Some(command::Payload::OpenChannel(OpenChannel {
                id: id.0 as i32,
                tag: tag.to_owned(),
                content_type: content_type.map(str::to_owned),
            })),
        };
        self.balancer.push(SYSTEM_CHANNEL, Bytes::new(), codec::encode(&cmd));
        Ok(id)
    }

    /// Stops reading `channel`: later data for it is dropped, and its unread data counts as
    /// consumed (the owner dropped it). Data already queued still goes out. Returns whether this
    /// resumed the input (see [`Muxer::consumed`]).
    pub fn release_channel(&mut self, now: Instant, channel: ChannelId) -> bool {
        let unread = match self.channels.get_mut(&channel) {
            Some(ch) => {
                ch.local_open = false;
                ch.unread
            }
            None => 0,
        };
        self.consumed(now, channel, unread)
    }

    /// The owner is done with `len` bytes delivered on `channel` (it read or dropped them). When
    /// this makes room for paused input, it returns `true`: [`Muxer::wants_input`] holds again and
    /// frames held back are taken by the next [`Muxer::handle_input`] (with no new bytes if there
    /// are none). Partial messages count the pause as progress.
    pub fn consumed(&mut self, now: Instant, channel: ChannelId, len: usize) -> bool {
        let was_paused = self.input_paused();
        let limit = self.config.channel_recv_buffer;
        if let Some(ch) = self.channels.get_mut(&channel) {
            let len = len.min(ch.unread);
            let was_over = ch.unread > limit;
            ch.unread -= len;
            self.unread -= len;
            if was_over && ch.unread <= limit {
                self.channels_over -= 1;
            }
        }
        let resumed = was_paused && !self.input_paused();
        if resumed {
            self.balancer.restart_progress(now);
        }
        resumed
    }

    /// Whether the owner should read more from the transport: the connection is not closed, no
    /// unread data pauses the input, and no frames handed in earlier are waiting.
    pub fn wants_input(&self) -> bool {
        self.state != State::Closed && !self.input_paused() && !self.decoder.has_frame()
    }

    /// Whether frames handed in earlier wait to be taken and the input is not paused: call
    /// [`Muxer::handle_input`] (with no new bytes) to take them.
    pub fn has_held_input(&self) -> bool {
        self.state != State::Closed && !self.input_paused() && self.decoder.has_frame()
    }

    /// Bytes held for the remote: partial messages plus delivered data not yet consumed.
    pub fn received_bytes(&self) -> usize {
        self.balancer.reassembling_bytes() + self.unread
    }

    /// The receive budget in effect (see [`Config::receive_budget`]).
    pub fn receive_budget(&self) -> usize {
        self.receive_budget
    }

    fn input_paused(&self) -> bool {
        self.channels_over > 0 || self.unread > self.receive_budget / 2
    }

    /// Whether the remote opened `channel`'s tag.
    pub fn is_remote_open(&self, channel: ChannelId) -> bool {
        self.channels.get(&channel).is_some_and(|c| c.remote_id.is_some())
    }

    /// Bytes queued for sending on `channel`.
    pub fn queued_bytes(&self, channel: ChannelId) -> usize {
        self.channels.get(&channel).map_or(0, |c| c.queued)
    }

    /// Queues one message on `channel`. A message is refused with [`SendError::Full`] while the
    /// channel has [`Config::channel_send_buffer`] bytes or more queued (a message bigger than the
    /// buffer still goes when the queue is empty).
    pub fn send(&mut self, channel: ChannelId, data: Bytes) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(ChannelError::Closed.into());
        }
        if data.len() > self.config.max_message_size {
            return Err(
                ChannelError::TooLarge { len: data.len(), limit: self.config.max_message_size }.into()
            );
        }
        let limit = self.config.channel_send_buffer;
        let ch = self.channels.get_mut(&channel).ok_or(ChannelError::Closed)?;
        if ch.queued > 0 && ch.queued + data.len() > limit {
            ch.blocked = Some(data.len());
            return Err(SendError::Full);
        }
        match ch.remote_id {
            None => {
                ch.queued += data.len() + DATA_OVERHEAD;
                ch.held.push_back(data);
            }
            Some(remote_id) => {
                let head = codec::data_head(remote_id, data.len());
                ch.queued += head.len() + data.len();
                self.balancer.push(channel.0, head, data);
            }
        }
        Ok(())
    }

    /// Starts a graceful close: queued data goes out, then our `Close`; the connection is closed
    /// when the remote's `Close` arrives, the stream ends, or [`Config::close_timeout`] passes.
    pub fn close(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.local_close = true;
        self.state = State::Closing {
            deadline: now + self.config.close_timeout,
            close_queued: false,
            remote_closed: false,
        };
        self.queue_close_when_drained();
    }

    /// Ends the connection now, dropping queued data; a courtesy `Close` still goes out if the
    /// driver flushes. Idempotent.
    pub fn destroy(&mut self, reason: Option<String>) {
        self.abort(CloseReason::Destroyed(reason));
    }

    /// Like [`Muxer::destroy`], with any reason (e.g. [`CloseReason::HeartbeatTimeout`]).
    pub fn abort(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.balancer.clear_data();
        let close_queued = matches!(self.state, State::Closing { close_queued: true, .. });
        if !close_queued {
            let error = match &reason {
                CloseReason::Destroyed(error) => error.clone(),
                other => Some(other.to_string()),
            };
            self.push_close(error);
        }
        self.finish(reason);
    }

    /// Ends the connection because the transport failed or a layer above gave up.
    pub fn fail(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.balancer.clear_data();
        self.finish(reason);
    }

    /// Takes bytes received from the remote (copied) and processes the frames they complete, as
    /// far as the receive budget lets it (see [`Muxer::wants_input`]).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.decoder.push(data);
        self.process_frames(now);
    }

    /// Takes a buffer of bytes received from the remote without copying it: pass the buffer they
    /// were read into, whose capacity is what slices of it keep alive.
    pub fn handle_input_owned(&mut self, now: Instant, data: BytesMut) {
        if self.state == State::Closed {
            return;
        }
        self.decoder.push_owned(data);
        self.process_frames(now);
    }

    /// The remote's byte stream ended. Frames handed in earlier and held back by a pause are still
    /// taken before the connection ends.
    pub fn handle_eof(&mut self) {
        if self.state != State::Closed && self.decoder.has_frame() {
            self.eof_held = true;
            return;
        }
        match self.state {
            State::Closed => {}
            State::Closing { .. } => self.finish_close(),
            State::Open => {
                self.balancer.clear_data();
                self.finish(CloseReason::Eof);
            }
        }
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Closing { deadline, .. } = self.state
            && now >= deadline
        {
            self.balancer.clear_data();
            self.finish_close();
        }
        if self.state != State::Closed && !self.input_paused() {
            let timeout = self.config.reassembly_timeout;
            if let Some(channel) = self.balancer.stalled(now, timeout) {
                self.protocol_error(ProtocolError::ReassemblyStalled { channel, timeout });
            }
        }
    }

    /// When [`Muxer::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = match self.state {
            State::Closing { deadline, .. } => Some(deadline),
            State::Open => None,
            State::Closed => return None,
        };
        let stall = if self.input_paused() {
            None
        } else {
            self.balancer.stall_deadline(self.config.reassembly_timeout)
        };
        match (closing, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Appends frames for the remote to `out` (a `BytesMut`, or [`crate::payload::Segments`] for
    /// vectored writes) until it holds at least `max` bytes or nothing is left; returns whether
    /// anything was appended.
    pub fn poll_transmit(&mut self, out: &mut impl FrameSink, max: usize) -> bool {
        let start = out.pending();
        while out.pending() < max {
            let Some(chunk) = self.balancer.poll_chunk(out) else { break };
            if chunk.channel == SYSTEM_CHANNEL {
                continue;
            }
            let id = ChannelId(chunk.channel);
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.queued = ch.queued.saturating_sub(chunk.len);
                if let Some(wanted) = ch.blocked {
                    let limit = self.config.channel_send_buffer;
                    if ch.queued == 0 || (ch.queued + wanted <= limit && ch.queued <= limit / 2) {
                        ch.blocked = None;
                        self.events.push_back(Event::Writable { channel: id });
                    }
                }
            }
        }
        if let State::Closing { close_queued: false, .. } = self.state {
            self.queue_close_when_drained();
        }
        if let State::Closing { close_queued: true, remote_closed: true, .. } = self.state
            && !self.balancer.has_pending()
        {
            self.finish_close();
        }
        out.pending() > start
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether frames are waiting for [`Muxer::poll_transmit`].
    pub fn has_transmit(&self) -> bool {
        self.balancer.has_pending()
    }

    fn create_channel(&mut self, tag: &str) -> ChannelId {
        let id = ChannelId(self.next_id);
        self.next_id += 1;
        self.channels.insert(
            id,
            Channel {
                remote_id: None,
                local_open: false,
                held: VecDeque::new(),
                queued: 0,
                blocked: None,
                unread: 0,
            },
        );
        self.by_tag.insert(tag.to_owned(), id);
        id
    }

    fn process_frames(&mut self, now: Instant) {
        while self.state != State::Closed && !self.input_paused() {
            let Some(frame) = self.decoder.next_frame() else { break };
            if let Err(err) = self.process_frame(now, frame) {
                return self.protocol_error(err);
            }
            let held = self.received_bytes();
            if held > self.receive_budget {
                let budget = self.receive_budget;
                return self.protocol_error(ProtocolError::ReceiveBudgetExceeded { held, budget });
            }
        }
        self.balancer.seal();
        if self.eof_held && !self.decoder.has_frame() {
            self.eof_held = false;
            self.handle_eof();
        }
    }

    fn process_frame(&mut self, now: Instant, frame: Frame) -> Result<(), ProtocolError> {
        let Some((_, message)) = self.balancer.receive(now, frame)? else { return Ok(()) };
        let cmd = codec::decode(message)?;
        self.handle_command(now, cmd)
    }

    fn handle_command(&mut self, now: Instant, cmd: Incoming) -> Result<(), ProtocolError> {
        let cmd = match cmd {
            Incoming::Data { channel_id, data } => {
                let id = u32::try_from(channel_id).map(ChannelId);
                match id.ok().and_then(|id| self.channels.get_mut(&id).map(|c| (id, c))) {
                    Some((id, ch)) if ch.local_open => {
                        let limit = self.config.channel_recv_buffer;
                        let was_over = ch.unread > limit;
                        ch.unread += data.len();
                        self.unread += data.len();
                        if !was_over && ch.unread > limit {
                            self.channels_over += 1;
                        }
                        self.events.push_back(Event::Data { channel: id, data })
                    }
                    _ => tracing::trace!(channel_id, "dropping data for a channel we do not read"),
                }
                return Ok(());
            }
            Incoming::Other(cmd) => cmd,
        };
        match cmd.payload {
            Some(command::Payload::OpenChannel(open)) => self.handle_open(open),
            Some(command::Payload::Close(Close { error })) => {
                self.handle_remote_close(now, error);
                Ok(())
            }
            Some(command::Payload::Destroy(destroy)) => {
                self.events.push_back(Event::RemoteClosing { error: destroy.error.clone() });
                self.balancer.clear_data();
                self.finish(CloseReason::Remote(destroy.error));
                Ok(())
            }
            Some(command::Payload::Data(_)) | None => Ok(()),
        }
    }

    fn handle_open(&mut self, open: OpenChannel) -> Result<(), ProtocolError> {
        if open.id < 0 {
            return Err(ProtocolError::InvalidOpenChannel("negative channel id"));
        }
        if open.tag.len() > MAX_TAG_LEN {
            return Err(ProtocolError::InvalidOpenChannel("tag longer than 1 KiB"));
        }
        let id = match self.by_tag.get(&open.tag) {
            Some(&id) => id,
            None => {
                if self.channels.len() >= self.config.max_channels {
                    return Err(ProtocolError::TooManyChannels(self.config.max_channels));
                }
                self.create_channel(&open.tag)
            }
        };
        let Some(ch) = self.channels.get_mut(&id) else { return Ok(()) };
        ch.remote_id = Some(open.id);
        // Held writes now go out, accounted at their real size.
        while let Some(data) = ch.held.pop_front() {
            let head = codec::data_head(open.id, data.len());
            ch.queued = ch.queued.saturating_sub(data.len() + DATA_OVERHEAD) + head.len() + data.len();
            self.balancer.push(id.0, head, data);
        }
        self.events.push_back(Event::RemoteOpened { channel: id, tag: open.tag });
        Ok(())
    }

    fn handle_remote_close(&mut self, now: Instant, error: Option<String>) {
        match &mut self.state {
            State::Open => {
                self.events.push_back(Event::RemoteClosing { error: error.clone() });
                self.remote_error = error;
                self.state = State::Closing {
                    deadline: now + self.config.close_timeout,
                    close_queued: false,
                    remote_closed: true,
                };
                self.queue_close_when_drained();
            }
            State::Closing { remote_closed, close_queued, .. } => {
                *remote_closed = true;
                if *close_queued && !self.balancer.has_pending() {
                    self.finish_close();
                }
            }
            State::Closed => {}
        }
    }

    /// Queues our `Close` once every channel's data is out (it would otherwise overtake the data on
    /// channel 0, and DXOS stops reading once it has seen it).
    fn queue_close_when_drained(&mut self) {
        if let State::Closing { close_queued: false, .. } = self.state {
            let held = self.channels.values().any(|c| !c.held.is_empty() && c.remote_id.is_some());
            if !self.balancer.has_pending_data() && !held {
                self.push_close(None);
                if let State::Closing { close_queued, .. } = &mut self.state {
                    *close_queued = true;
                }
            }
        }
    }

    fn push_close(&mut self, error: Option<String>) {
        let cmd = Command { payload: Some(command::Payload::Close(Close { error })) };
        self.balancer.push(SYSTEM_CHANNEL, Bytes::new(), codec::encode(&cmd));
    }

    fn protocol_error(&mut self, err: ProtocolError) {
        tracing::debug!(%err, "closing the connection: the remote broke the protocol");
        self.abort(CloseReason::Protocol(err));
    }

    /// Ends a graceful close, with the reason of whoever started it.
    fn finish_close(&mut self) {
        let reason =
            if self.local_close { CloseReason::Local } else { CloseReason::Remote(self.remote_error.take()) };
        self.finish(reason);
    }

    fn finish(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.balancer.clear_receiving();
        self.decoder = FrameDecoder::new();
        self.eof_held = false;
        for ch in self.channels.values_mut() {
            ch.held.clear();
            ch.queued = 0;
        }
        if !self.closed_reported {
            self.closed_reported = true;
            self.events.push_back(Event::Closed { reason });
        }
    }
}
