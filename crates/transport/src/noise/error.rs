//! Why a Noise handshake failed. Defined whether or not the `noise` feature is on, so
//! [`TransportError`](crate::TransportError) has the same variants either way.

use std::{sync::Arc, time::Duration};

/// Why a `tcp+noise` connection was not set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoiseError {
    /// The factory's key pair is not the key the connection belongs to, so this side could not
    /// prove it is the peer the remote expects.
    #[error("the transport's key pair is not this connection's own key")]
    WrongIdentity,
    /// The handshake did not finish in time.
    #[error("the handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The remote closed the stream during the handshake.
    #[error("the remote closed the stream during the handshake")]
    Closed,
    /// A handshake message is too long or malformed: the remote does not speak mesh's Noise.
    #[error("the remote does not speak mesh's Noise handshake")]
    NotNoise,
    /// A handshake message did not authenticate: the remote is in another connection attempt
    /// (another topic, session or pair of keys) or someone changed the bytes on the way.
    #[error("a handshake message did not authenticate: another connection attempt, or tampered with")]
    Decrypt,
    /// The remote's Noise static key is not signed by the peer key signaling said it has.
    #[error("the remote's static key is not signed by the expected peer")]
    WrongPeer,
    /// The local Noise state could not be set up (no randomness).
    #[error("the handshake could not be set up")]
    Setup,
    /// Reading or writing the stream failed.
    #[error("{0}")]
    Io(Arc<std::io::Error>),
}

impl From<std::io::Error> for NoiseError {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof { Self::Closed } else { Self::Io(Arc::new(err)) }
    }
}
