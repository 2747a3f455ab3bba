/// Why a signaling operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The client was closed.
    #[error("signal client is closed")]
    Closed,
    /// No reply within the time allowed (3 s for a send, 10 s for a reliable message).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server answered with an error, e.g. `RATE_LIMIT_EXCEEDED` or `UNAUTHORIZED`.
    #[error("server refused: {name}: {message}")]
    Refused {
        /// The error code.
        name: String,
        /// The server's explanation.
        message: String,
    },
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("invalid signal server URL {0:?}: expected ws:// or wss://")]
    InvalidUrl(String),
    /// TLS could not be set up (e.g. an unreadable extra CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Too many operations are waiting; try again later.
    #[error("too many pending operations")]
    Busy,
}
