//! Typed errors, one enum per boundary: what the remote sent wrong ([`ProtocolError`]), why a
//! channel operation failed ([`ChannelError`]), why an RPC call failed ([`RpcError`]), and why an
//! extension could not be added or opened ([`ExtensionError`]).

/// Malformed or abusive input from the remote. Any of these closes the connection with the error as
/// the reason; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A balancer chunk's varint channel id or length could not be read.
    #[error("malformed balancer chunk: {0}")]
    MalformedChunk(&'static str),
    /// A message announced (or grew to) more bytes than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The announced or reassembled length.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A chunk carried more bytes than its message's announced length.
    #[error("chunk overruns its message: {have} bytes of {total}")]
    ChunkOverrun {
        /// Bytes of the message seen so far, including this chunk.
        have: usize,
        /// The announced length.
        total: usize,
    },
    /// The remote is reassembling messages on more channels than it may have.
    #[error("too many channels reassembling at once (limit {0})")]
    TooManyReassemblies(usize),
    /// A reassembled message is not a `dxos.mesh.muxer.Command`.
    #[error("malformed muxer command: {0}")]
    MalformedCommand(#[from] prost::DecodeError),
    /// An `OpenChannel` had an unusable id or tag.
    #[error("invalid OpenChannel: {0}")]
    InvalidOpenChannel(&'static str),
    /// The remote opened more channels than the configured limit.
    #[error("the remote opened more than {0} channels")]
    TooManyChannels(usize),
    /// Partial messages would make the connection hold more than its receive budget (partial plus
    /// unread messages).
    #[error("the remote made us hold {held} bytes of partial and unread messages (budget {budget})")]
    ReceiveBudgetExceeded {
        /// Bytes that would be held.
        held: usize,
        /// The configured budget.
        budget: usize,
    },
    /// A partial message got no further chunk for the reassembly timeout while the connection was
    /// reading.
    #[error("a partial message on channel {channel} got no chunk for {} ms", timeout.as_millis())]
    ReassemblyStalled {
        /// The remote's channel id the message was arriving on.
        channel: u32,
        /// The configured timeout.
        timeout: std::time::Duration,
    },
    /// The remote registered more extensions than a connection may have.
    #[error("the remote registered more than {0} extensions")]
    TooManyExtensions(usize),
    /// The remote registered an extension with a name longer than the limit.
    #[error("the remote registered an extension name of {len} bytes (limit {limit})")]
    ExtensionNameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a channel (port or stream) operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The connection is closing or closed; nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// The message is larger than the configured message size limit.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A channel with this tag was already opened on this side.
    #[error("channel {0:?} is already open")]
    AlreadyOpen(String),
    /// The connection already has the most channels it may have.
    #[error("too many channels (limit {0})")]
    TooManyChannels(usize),
    /// Extension and channel names may not contain `/` (the tag is `<extension>/<channel>`).
    #[error("invalid channel name {0:?}: it must be non-empty and must not contain '/'")]
    InvalidName(String),
}

/// Why an RPC call (or the RPC handshake) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The peer is closed (the channel closed, or `bye` was exchanged) before an answer came.
    #[error("RPC peer closed")]
    Closed,
    /// The peer has not completed the `open`/`open_ack` handshake.
    #[error("RPC peer is not open")]
    NotOpen,
    /// No answer within the call timeout.
    #[error("RPC call {method} timed out")]
    Timeout {
        /// The called method.
        method: String,
    },
    /// The remote handler failed; `name` is the DXOS error code (e.g. `RPC_CLOSED`).
    #[error("remote error {name}: {message}")]
    Remote {
        /// The error name (code).
        name: String,
        /// The error message.
        message: String,
    },
    /// The answer (or a request payload) could not be decoded.
    #[error("malformed RPC payload: {0}")]
    Malformed(String),
    /// Sending the request failed.
    #[error("sending failed: {0}")]
    Channel(#[from] ChannelError),
    /// Too many calls are waiting for an answer.
    #[error("too many calls in flight (limit {0})")]
    TooManyCalls(usize),
}

impl RpcError {
    /// An error a handler returns to the caller with a name (code) and a message.
    pub fn remote(name: impl Into<String>, message: impl Into<String>) -> Self {
        RpcError::Remote { name: name.into(), message: message.into() }
    }
}

/// Why an extension could not be added or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// An extension with this name was already added.
    #[error("extension {0:?} is already added")]
    AlreadyAdded(String),
    /// Extension names must be non-empty and must not contain `/`.
    #[error("invalid extension name {0:?}")]
    InvalidName(String),
    /// The connection is closing or closed.
    #[error("the connection is closed")]
    Closed,
    /// The extension failed to open.
    #[error("extension failed: {0}")]
    Failed(String),
}

impl From<ChannelError> for ExtensionError {
    fn from(err: ChannelError) -> Self {
        match err {
            ChannelError::Closed => ExtensionError::Closed,
            other => ExtensionError::Failed(other.to_string()),
        }
    }
}

impl From<RpcError> for ExtensionError {
    fn from(err: RpcError) -> Self {
        match err {
            RpcError::Closed => ExtensionError::Closed,
            other => ExtensionError::Failed(other.to_string()),
        }
    }
}
