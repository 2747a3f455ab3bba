//! The factory: a peer's key pair, its Noise static key, and the TCP settings.

use std::{sync::Arc, time::Duration};

use mesh_keys::{Keypair, PublicKey};

use super::{NoiseError, handshake::NoiseUpgrade, static_key::StaticKey};
use crate::{
    Transport, TransportError, TransportFactory, TransportKind, TransportOptions, tcp::TcpTransportFactory,
    tcp::Upgrade,
};

/// Makes `tcp+noise` transports for one peer. Build it with [`NoiseTcpTransportFactory::new`]
/// and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct NoiseTcpTransportFactory {
    /// The sockets: where the initiator listens, the host it advertises, what the dialler may
    /// dial, how many handshakes a listener runs at once and how many port signals a dialler
    /// tries. Its `identity` and `handshake_timeout` go unused: Noise authenticates here.
    /// Default: [`TcpTransportFactory::default`].
    pub tcp: TcpTransportFactory,
    /// How long the Noise handshake may take once a TCP connection is up. Default: 10 s.
    pub handshake_timeout: Duration,
    identity: PublicKey,
    /// This peer's Noise static key, signed by its peer key; one for every connection, as a
    /// peer's key is. `Err` if it could not be made (no randomness), which every transport
    /// then reports.
    static_key: Result<Arc<StaticKey>, NoiseError>,
}

impl NoiseTcpTransportFactory {
    /// A factory for the peer `identity`, with a fresh Noise static key signed by it.
    pub fn new(identity: Keypair) -> Self {
        Self {
            tcp: TcpTransportFactory::default(),
            handshake_timeout: Duration::from_secs(10),
            identity: identity.public(),
            static_key: StaticKey::generate(&identity).map(Arc::new),
        }
    }

    /// Uses `tcp`'s socket settings (listen address, advertised host, dial allow-list, bounds).
    pub fn with_tcp(mut self, tcp: TcpTransportFactory) -> Self {
        self.tcp = tcp;
        self
    }

    /// Gives the handshake `timeout` to finish.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    fn upgrade(&self, options: &TransportOptions) -> Result<Arc<dyn Upgrade>, NoiseError> {
        if options.own != self.identity {
            return Err(NoiseError::WrongIdentity);
        }
        let key = self.static_key.clone()?;
        Ok(Arc::new(NoiseUpgrade::new(key, options, self.handshake_timeout)))
    }
}

impl TransportFactory for NoiseTcpTransportFactory {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let upgrade = self.upgrade(&options).map_err(TransportError::Noise);
        self.tcp.create_upgraded(options, upgrade)
    }

    fn kind(&self) -> TransportKind {
        TransportKind::NoiseTcp
    }
}
