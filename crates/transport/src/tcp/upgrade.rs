//! What a fresh TCP connection goes through before it becomes a transport's stream.
//!
//! On the plain DXOS path nothing: the socket is the stream. Otherwise an [`Upgrade`] runs on
//! each connection the listener accepts or the dialler opens, and only a connection that passes
//! counts; the listener keeps accepting and the dialler keeps trying signalled ports (within the
//! factory's bounds) until one does. Link authentication ([`LinkUpgrade`]) hands the socket
//! itself over once both keys are proven; the Noise transport (`crate::noise`) hands over an
//! encrypted stream. Both use the same accept and dial machinery, so a stray connection that
//! reaches the port first cannot take the place of the expected peer in either.

use std::fmt;

use async_trait::async_trait;
use tokio::net::TcpStream;

use crate::{ByteStream, ChannelBinding, TransportError, link::LinkProver};

/// A connection that passed its upgrade: the stream to hand over and the connection's channel
/// binding, if it has one.
pub(crate) struct Upgraded {
    pub(crate) stream: ByteStream,
    pub(crate) binding: Option<ChannelBinding>,
}

impl Upgraded {
    /// The socket itself, unchecked: the plain path.
    pub(crate) fn plain(stream: TcpStream) -> Self {
        Self { stream: Box::new(stream), binding: None }
    }
}

/// What a connection must pass before it counts. One value serves every connection of one
/// transport, so a listener can check several incoming connections at once.
#[async_trait]
pub(crate) trait Upgrade: Send + Sync + fmt::Debug {
    /// Runs on a connection this side accepted (it is the initiator) or dialled (it is not);
    /// fails if the remote is not the expected peer. Bounded in time.
    async fn run(&self, stream: TcpStream) -> Result<Upgraded, TransportError>;
}

/// Link authentication as an upgrade: both ends prove their keys, and the socket carries on.
#[derive(Debug)]
pub(super) struct LinkUpgrade {
    pub(super) prover: LinkProver,
    /// The binding of the link (its topic, session and nonces), known before it connects.
    pub(super) binding: ChannelBinding,
}

#[async_trait]
impl Upgrade for LinkUpgrade {
    async fn run(&self, mut stream: TcpStream) -> Result<Upgraded, TransportError> {
        self.prover.run(&mut stream).await?;
        Ok(Upgraded { stream: Box::new(stream), binding: Some(self.binding) })
    }
}
