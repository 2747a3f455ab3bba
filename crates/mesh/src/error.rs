//! What can go wrong when a node starts or joins.

/// Why a [`Node`](crate::Node) could not start, or a swarm could not be joined or left.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given no signal server and no signaling of its own.
    #[error("no signal server: call NodeBuilder::signal or NodeBuilder::signaling")]
    NoSignal,
    /// Signaling refused or failed.
    #[error(transparent)]
    Signal(#[from] mesh_signal::SignalError),
}
