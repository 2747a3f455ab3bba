//! The `--transport` choice of `mesh peer` and `mesh demo`, and what reaching peers on other
//! machines takes: an address for TCP (plain or `tcp+noise`) to advertise and the addresses it
//! may dial, STUN and TURN servers for WebRTC.

use std::{str::FromStr, sync::Arc};

use mesh_keys::Keypair;
use mesh_transport::{
    TransportFactory,
    memory::MemoryTransportFactory,
    noise::NoiseTcpTransportFactory,
    tcp::{DialAllow, IpNetwork, ParseNetworkError, TcpTransportFactory},
    webrtc::{IceServer, WebRtcTransportFactory},
};

/// How peers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportChoice {
    /// TCP, as DXOS's TCP transport: one peer listens, the other dials.
    Tcp,
    /// TCP encrypted with Noise, proving both peers' keys: for mesh peers that all choose it
    /// (DXOS peers do not speak it).
    #[value(name = "tcp+noise")]
    TcpNoise,
    /// WebRTC data channels over UDP, as browsers connect.
    Webrtc,
    /// In-process pipes: only peers inside one process can meet.
    Memory,
}

/// How peers on other machines reach this one.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ReachArgs {
    /// The host name or address other machines dial for TCP (and tcp+noise) links to this peer
    /// (without it, they dial localhost, as DXOS does).
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// A network (CIDR, e.g. 10.0.0.0/8) or address whose hosts a TCP (or tcp+noise) signal may
    /// make this peer dial, besides loopback; `any` for every address. Repeat for several.
    /// Without it, only same-host peers are dialled, as with DXOS.
    #[arg(long = "dial-allow", value_name = "CIDR|any")]
    dial_allow: Vec<DialRule>,
    /// A STUN or TURN server URL for WebRTC (stun:HOST:PORT, turn:HOST:PORT); repeat for several.
    #[arg(long = "ice-server", value_name = "URL")]
    servers: Vec<String>,
    /// The user name for the TURN servers.
    #[arg(long, requires = "ice_credential")]
    ice_username: Option<String>,
    /// The password for the TURN servers.
    #[arg(long, requires = "ice_username")]
    ice_credential: Option<String>,
    /// A JSON file or http(s) URL listing STUN and TURN servers with their credentials, in the
    /// shape DXOS's ICE provider serves: {"iceServers": [{"urls", "username", "credential"}]}.
    #[arg(long = "ice-servers", value_name = "FILE|URL")]
    ice_document: Option<String>,
    /// WebRTC through TURN relays only: this host's addresses are never offered to peers.
    #[arg(long)]
    relay_only: bool,
}

/// One `--dial-allow` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialRule {
    Any,
    Network(IpNetwork),
}

impl FromStr for DialRule {
    type Err = ParseNetworkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("any") { Ok(Self::Any) } else { text.parse().map(Self::Network) }
    }
}

impl ReachArgs {
    /// Loopback plus every `--dial-allow`.
    fn dial_allow(&self) -> DialAllow {
        self.dial_allow.iter().fold(DialAllow::loopback(), |allow, rule| match rule {
            DialRule::Any => DialAllow::Any,
            DialRule::Network(network) => allow.with(*network),
        })
    }

    /// TCP's socket settings: the advertised host and the dial allow-list.
    fn tcp(&self) -> TcpTransportFactory {
        let mut tcp = TcpTransportFactory::default().with_dial_allow(self.dial_allow());
        tcp.advertise_host.clone_from(&self.advertise_host);
        tcp
    }

    /// Every `--ice-server`, then the servers of `--ice-servers`.
    fn ice_servers(&self) -> anyhow::Result<Vec<IceServer>> {
        let mut servers: Vec<IceServer> = self
            .servers
            .iter()
            .map(|url| match (&self.ice_username, &self.ice_credential) {
                (Some(user), Some(password)) if url.starts_with("turn") => {
                    IceServer::turn(url.clone(), user.clone(), password.clone())
                }
                _ => IceServer::stun(url.clone()),
            })
            .collect();
        if let Some(source) = &self.ice_document {
            servers.extend(crate::ice::load(source)?);
        }
        if self.relay_only
            && !servers.iter().any(|server| server.urls.iter().any(|url| url.starts_with("turn")))
        {
            anyhow::bail!("--relay-only needs a TURN server (--ice-server turn:... or --ice-servers)");
        }
        Ok(servers)
    }
}

impl TransportChoice {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::TcpNoise => "tcp+noise",
            Self::Webrtc => "webrtc",
            Self::Memory => "memory",
        }
    }

    /// The factory for this choice, for the peer `identity` (TCP authenticates its links to other
    /// mesh peers with it; tcp+noise signs its Noise key with it).
    pub(crate) fn factory(
        self,
        reach: &ReachArgs,
        identity: &Keypair,
    ) -> anyhow::Result<Arc<dyn TransportFactory>> {
        Ok(match self {
            Self::Tcp => Arc::new(reach.tcp().with_identity(identity.clone())),
            Self::TcpNoise => Arc::new(NoiseTcpTransportFactory::new(identity.clone()).with_tcp(reach.tcp())),
            Self::Webrtc => Arc::new(
                WebRtcTransportFactory::default()
                    .with_ice_servers(reach.ice_servers()?)
                    .with_relay_only(reach.relay_only),
            ),
            Self::Memory => Arc::new(MemoryTransportFactory::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        reach: ReachArgs,
    }

    fn allow(args: &[&str]) -> Result<DialAllow, clap::Error> {
        Cli::try_parse_from(std::iter::once("mesh").chain(args.iter().copied()))
            .map(|cli| cli.reach.dial_allow())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn ice(args: &[&str]) -> anyhow::Result<Vec<IceServer>> {
        let cli = Cli::try_parse_from(std::iter::once("mesh").chain(args.iter().copied()))?;
        cli.reach.ice_servers()
    }

    #[test]
    fn ice_servers_come_from_flags_and_relay_only_needs_a_turn_server() {
        let servers = ice(&[
            "--ice-server",
            "stun:h:1",
            "--ice-server",
            "turn:h:2",
            "--ice-username",
            "u",
            "--ice-credential",
            "p",
        ])
        .unwrap();
        assert_eq!(servers, [IceServer::stun("stun:h:1"), IceServer::turn("turn:h:2", "u", "p")]);
        assert!(ice(&["--relay-only"]).is_err(), "relay-only without a TURN server is refused");
        assert!(ice(&["--relay-only", "--ice-server", "stun:h:1"]).is_err());
        assert!(
            ice(&[
                "--relay-only",
                "--ice-server",
                "turn:h:2",
                "--ice-username",
                "u",
                "--ice-credential",
                "p"
            ])
            .is_ok()
        );
        assert!(ice(&["--ice-servers", "/nonexistent/ice.json"]).is_err());
    }

    #[derive(Debug, Parser)]
    struct Choice {
        #[arg(long, value_enum)]
        transport: TransportChoice,
        #[command(flatten)]
        reach: ReachArgs,
    }

    #[test]
    fn tcp_noise_is_chosen_by_its_name_and_gets_the_tcp_settings() {
        let args = ["mesh", "--transport", "tcp+noise", "--advertise-host", "10.1.2.3"];
        let choice = Choice::try_parse_from(args).unwrap();
        assert_eq!(choice.transport, TransportChoice::TcpNoise);
        assert_eq!(choice.transport.name(), "tcp+noise");
        let factory = choice.transport.factory(&choice.reach, &Keypair::generate()).unwrap();
        assert_eq!(factory.kind(), mesh_transport::TransportKind::NoiseTcp);
        assert!(!factory.authenticates_links(), "noise needs no link nonces");
        assert!(Choice::try_parse_from(["mesh", "--transport", "noise"]).is_err());
    }

    #[test]
    fn dial_allow_adds_networks_to_loopback_or_allows_any() {
        let loopback = allow(&[]).unwrap();
        assert!(loopback.allows(ip("127.0.0.1")) && !loopback.allows(ip("10.1.2.3")));
        let lan = allow(&["--dial-allow", "10.0.0.0/8", "--dial-allow", "fd00::7"]).unwrap();
        assert!(lan.allows(ip("10.1.2.3")) && lan.allows(ip("fd00::7")) && lan.allows(ip("::1")));
        assert!(!lan.allows(ip("192.0.2.1")));
        assert_eq!(allow(&["--dial-allow", "10.0.0.0/8", "--dial-allow", "any"]).unwrap(), DialAllow::Any);
        assert!(allow(&["--dial-allow", "10.0.0.0/40"]).is_err());
        assert!(allow(&["--dial-allow", "peer.example"]).is_err());
    }
}
