//! The `--transport` choice of `mesh peer` and `mesh demo`, and what reaching peers on other
//! machines takes: an address for TCP to advertise, STUN and TURN servers for WebRTC.

use std::sync::Arc;

use mesh_transport::{
    TransportFactory,
    memory::MemoryTransportFactory,
    tcp::TcpTransportFactory,
    webrtc::{IceServer, WebRtcTransportFactory},
};

/// How peers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportChoice {
    /// TCP, as DXOS's TCP transport: one peer listens, the other dials.
    Tcp,
    /// WebRTC data channels over UDP, as browsers connect.
    Webrtc,
    /// In-process pipes: only peers inside one process can meet.
    Memory,
}

/// How peers on other machines reach this one.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ReachArgs {
    /// The host name or address other machines dial for TCP links to this peer (without it,
    /// they dial localhost, as DXOS does).
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// A STUN or TURN server URL for WebRTC (stun:HOST:PORT, turn:HOST:PORT); repeat for several.
    #[arg(long = "ice-server", value_name = "URL")]
    servers: Vec<String>,
    /// The user name for the TURN servers.
    #[arg(long, requires = "ice_credential")]
    ice_username: Option<String>,
    /// The password for the TURN servers.
    #[arg(long, requires = "ice_username")]
    ice_credential: Option<String>,
}

impl ReachArgs {
    fn ice_servers(&self) -> Vec<IceServer> {
        self.servers
            .iter()
            .map(|url| match (&self.ice_username, &self.ice_credential) {
                (Some(user), Some(password)) if url.starts_with("turn") => {
                    IceServer::turn(url.clone(), user.clone(), password.clone())
                }
                _ => IceServer::stun(url.clone()),
            })
            .collect()
    }
}

impl TransportChoice {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Webrtc => "webrtc",
            Self::Memory => "memory",
        }
    }

    /// The factory for this choice.
    pub(crate) fn factory(self, reach: &ReachArgs) -> Arc<dyn TransportFactory> {
        match self {
            Self::Tcp => Arc::new(TcpTransportFactory { advertise_host: reach.advertise_host.clone() }),
            Self::Webrtc => Arc::new(WebRtcTransportFactory {
                ice_servers: reach.ice_servers(),
                ..WebRtcTransportFactory::default()
            }),
            Self::Memory => Arc::new(MemoryTransportFactory::default()),
        }
    }
}
