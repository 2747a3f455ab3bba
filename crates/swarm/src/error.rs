//! Why a connection's transport or protocol failed: the error a [`CloseReason::Transport`]
//! carries.
//!
//! [`CloseReason::Transport`]: crate::CloseReason::Transport

use std::time::Duration;

use mesh_transport::TransportError;

use crate::ProtocolError;

/// Why a connection's transport or protocol failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The transport failed to open, connect or take a signal.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The protocol over the connection ended with an error.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The protocol was asked to close and had not finished this long after.
    #[error("the protocol did not finish closing within {} ms", .0.as_millis())]
    CloseTimeout(Duration),
    /// The transport did not take the remote's signals as fast as they came: this many were
    /// waiting for it.
    #[error("the transport fell {0} signals behind")]
    SignalBacklog(usize),
}
