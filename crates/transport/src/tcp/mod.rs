//! TCP transport, compatible with DXOS's `TcpTransport`.
//!
//! The initiator listens and signals `{port}`; the other side dials `localhost:port`. DXOS's TCP
//! transport is same-host only; mesh may add `host` to the signal (DXOS ignores it) and dials it
//! when present, so TCP links also work across machines.
//!
//! What mesh adds so a link cannot be hijacked:
//! - The initiator listens on loopback (`127.0.0.1` and `::1`, one port) unless the factory
//!   advertises a host to other machines or names the address to listen on.
//! - The dialler resolves a signalled host once and dials only addresses its [`DialAllow`] list
//!   permits (loopback by default).
//! - Between two mesh peers whose factories hold their key pairs, the swarm exchanges link nonces
//!   and both ends prove their keys over the fresh stream before it is handed over (see
//!   [`LinkAuth`]): the listener keeps accepting until a dialler proves it is the
//!   expected remote, refusing the others, and the dialler tries each port signal it gets (up to
//!   a bound) until a listener proves itself. Links to DXOS peers, which send no nonces, take the
//!   plain DXOS path and are not authenticated: the first connection to arrive is taken.
//!
//! The same machinery runs other checks on a fresh connection (an `Upgrade`): the `tcp+noise`
//! transport (`crate::noise`) makes its TCP transports with a Noise handshake in place of link
//! authentication.

mod allow;
mod dial;
mod listen;
mod upgrade;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

pub use allow::{DialAllow, IpNetwork, ParseNetworkError};
use async_trait::async_trait;
use mesh_keys::Keypair;
use mesh_proto::Struct;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub(crate) use self::upgrade::{Upgrade, Upgraded};
use self::{
    dial::{Dialler, Target},
    listen::{ListenOn, Listeners},
    upgrade::LinkUpgrade,
};
use crate::{
    ByteStream, ChannelBinding, LinkAuth, LinkAuthError, Metered, Transport, TransportError,
    TransportFactory, TransportKind, TransportOptions, TransportStats,
    api::channel_binding,
    handover::Handover,
    link::{LinkContext, LinkProver, Role},
    lock,
    metered::Counters,
};

/// The longest host name a signal may carry (DNS's limit).
const MAX_HOST_LEN: usize = 253;

/// Makes [`TcpTransport`]s. Build it with [`TcpTransportFactory::default`] and the `with_*`
/// methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpTransportFactory {
    /// A host name or address to put in `{port, host}` signals, for peers on other machines.
    /// Without it, the remote dials `localhost` as DXOS does. With it (and no `listen_addr`),
    /// the initiator listens on every interface.
    pub advertise_host: Option<String>,
    /// The address the initiator listens on (`::` for every interface). Default: none, which
    /// means loopback, or every interface when `advertise_host` is set.
    pub listen_addr: Option<IpAddr>,
    /// The addresses a signalled host may resolve to for this side to dial it. Default:
    /// loopback only.
    pub dial_allow: DialAllow,
    /// This peer's key pair. With it, links to mesh peers that have theirs are authenticated;
    /// without it, every link takes the plain, unauthenticated DXOS path. Default: none.
    pub identity: Option<Keypair>,
    /// How long the link handshake may take once a TCP connection is up. Default: 5 s.
    pub handshake_timeout: Duration,
    /// Link handshakes a listener runs at once at most; further connections wait to be accepted.
    /// Default: 8.
    pub max_pending_handshakes: usize,
    /// Port signals a dialler tries at most per connection attempt when the link is
    /// authenticated (a forged one may come first); later ones are ignored. Default: 4.
    pub max_dial_attempts: usize,
}

impl Default for TcpTransportFactory {
    fn default() -> Self {
        Self {
            advertise_host: None,
            listen_addr: None,
            dial_allow: DialAllow::default(),
            identity: None,
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 8,
            max_dial_attempts: 4,
        }
    }
}

impl TcpTransportFactory {
    /// Authenticates links to mesh peers as `identity` (this peer's key pair).
    pub fn with_identity(mut self, identity: Keypair) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Advertises `host` for peers on other machines to dial.
    pub fn with_advertise_host(mut self, host: impl Into<String>) -> Self {
        self.advertise_host = Some(host.into());
        self
    }

    /// Listens on `addr`.
    pub fn with_listen_addr(mut self, addr: IpAddr) -> Self {
        self.listen_addr = Some(addr);
        self
    }

    /// Dials signalled hosts that `allow` permits.
    pub fn with_dial_allow(mut self, allow: DialAllow) -> Self {
        self.dial_allow = allow;
        self
    }

    fn listen_on(&self) -> ListenOn {
        match (self.listen_addr, &self.advertise_host) {
            (Some(addr), _) => ListenOn::Addr(addr),
            (None, Some(_)) => ListenOn::Any,
            (None, None) => ListenOn::Loopback,
        }
    }

    /// The link handshake for a connection that was given link nonces.
    fn link_upgrade(&self, options: &TransportOptions) -> Result<Option<Arc<dyn Upgrade>>, LinkAuthError> {
        let Some(link) = options.link else { return Ok(None) };
        let identity = self.identity.as_ref().ok_or(LinkAuthError::NoIdentity)?;
        let (role, listener, dialler, listener_nonce, dialler_nonce) = if options.initiator {
            (Role::Listener, options.own, options.remote, link.own_nonce, link.remote_nonce)
        } else {
            (Role::Dialler, options.remote, options.own, link.remote_nonce, link.own_nonce)
        };
        let context = LinkContext {
            topic: options.topic,
            session: options.session,
            listener,
            dialler,
            listener_nonce,
            dialler_nonce,
        };
        let prover = LinkProver::new(identity, role, &context, self.handshake_timeout)?;
        Ok(Some(Arc::new(LinkUpgrade { prover, binding: link_binding(options, link) })))
    }

    /// A transport whose connections must pass `upgrade` (instead of link authentication: the
    /// options' link nonces and this factory's identity go unused), or that fails at once with
    /// the error.
    #[cfg(feature = "noise")]
    pub(crate) fn create_upgraded(
        &self,
        options: TransportOptions,
        upgrade: Result<Arc<dyn Upgrade>, TransportError>,
    ) -> Arc<dyn Transport> {
        self.transport(options, upgrade.map(Some))
    }

    fn transport(
        &self,
        options: TransportOptions,
        upgrade: Result<Option<Arc<dyn Upgrade>>, TransportError>,
    ) -> Arc<dyn Transport> {
        let settings = Settings {
            listen_on: self.listen_on(),
            advertise_host: self.advertise_host.clone(),
            dial_allow: self.dial_allow.clone(),
            max_pending_handshakes: self.max_pending_handshakes,
            max_dial_attempts: self.max_dial_attempts,
        };
        Arc::new(TcpTransport { inner: Arc::new(Inner::new(options, settings, upgrade)) })
    }
}

/// An authenticated link's binding: its topic, session and both nonces, which both ends proved
/// they hold the keys for.
fn link_binding(options: &TransportOptions, link: LinkAuth) -> ChannelBinding {
    let (low, high) = if link.own_nonce <= link.remote_nonce {
        (link.own_nonce, link.remote_nonce)
    } else {
        (link.remote_nonce, link.own_nonce)
    };
    channel_binding(
        "mesh tcp link binding v1",
        &[options.topic.as_bytes(), options.session.as_bytes(), &low, &high],
    )
}

impl TransportFactory for TcpTransportFactory {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let upgrade = self.link_upgrade(&options).map_err(TransportError::LinkAuth);
        self.transport(options, upgrade)
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn authenticates_links(&self) -> bool {
        self.identity.is_some()
    }
}

/// One TCP connection attempt.
#[derive(Debug)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

/// The responder's dialling: how many port signals it took, and where further ones go.
#[derive(Debug, Default)]
struct DialState {
    attempts: usize,
    targets: Option<mpsc::Sender<Target>>,
}

/// What one transport needs of its factory's configuration (not the key pair: the upgrade holds
/// what it needs of it).
#[derive(Debug)]
struct Settings {
    listen_on: ListenOn,
    advertise_host: Option<String>,
    dial_allow: DialAllow,
    max_pending_handshakes: usize,
    max_dial_attempts: usize,
}

struct Inner {
    options: TransportOptions,
    settings: Settings,
    /// What each connection must pass (a link handshake or a Noise one), if anything, or why
    /// this connection cannot be made.
    upgrade: Result<Option<Arc<dyn Upgrade>>, TransportError>,
    /// The channel binding of the connection handed over, once it is up.
    binding: OnceLock<ChannelBinding>,
    handover: Handover,
    dial: Mutex<DialState>,
    counters: Arc<Counters>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").field("initiator", &self.options.initiator).finish_non_exhaustive()
    }
}

impl Inner {
    fn new(
        options: TransportOptions,
        settings: Settings,
        upgrade: Result<Option<Arc<dyn Upgrade>>, TransportError>,
    ) -> Self {
        Self {
            options,
            settings,
            upgrade,
            binding: OnceLock::new(),
            handover: Handover::new(),
            dial: Mutex::default(),
            counters: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    fn upgrade(&self) -> Result<Option<Arc<dyn Upgrade>>, TransportError> {
        self.upgrade.clone()
    }

    /// Runs `connect` until it yields a stream, the transport closes, or it fails.
    fn spawn_connect<F>(self: &Arc<Self>, connect: F)
    where
        F: Future<Output = Result<Upgraded, TransportError>> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                () = this.stop.cancelled() => return,
                result = connect => result,
            };
            match result {
                Ok(Upgraded { stream, binding }) => {
                    if let Some(binding) = binding {
                        // Set before the handover, so whoever takes the stream finds it.
                        let _ = this.binding.set(binding);
                    }
                    let metered = Metered::new(stream, this.counters.clone());
                    this.handover.connected(Box::new(metered));
                }
                Err(err) => {
                    debug!(%err, "TCP transport failed");
                    this.handover.fail(err);
                }
            }
        });
    }

    /// Hands a port signal to the dialling, starting it with the first; ignores it once the
    /// attempts are used up (as DXOS ignores signals once it dials).
    fn dial(self: &Arc<Self>, payload: &Struct) -> Result<(), TransportError> {
        let upgrade = self.upgrade()?;
        // One dial on the plain path, as DXOS; a few when a forged signal could come first.
        let max_attempts = if upgrade.is_some() { self.settings.max_dial_attempts.max(1) } else { 1 };
        let mut dial = lock(&self.dial);
        if dial.attempts >= max_attempts {
            return Ok(());
        }
        let target = parse_port_signal(payload)?;
        dial.attempts += 1;
        let dialler = Dialler { allow: self.settings.dial_allow.clone(), upgrade };
        if dialler.upgrade.is_none() {
            // The plain path: its one dial runs on the connecting task itself.
            self.spawn_connect(dialler.attempt(target));
            return Ok(());
        }
        if dial.targets.is_none() {
            let (sender, targets) = mpsc::channel(max_attempts);
            self.spawn_connect(dialler.dial_until_connected(targets));
            dial.targets = Some(sender);
        }
        if let Some(targets) = &dial.targets {
            // Room for every attempt; an error means the dialling already ended.
            let _ = targets.try_send(target);
        }
        if dial.attempts >= max_attempts {
            // The dialling fails once its attempts do, with nothing more to come.
            dial.targets = None;
        }
        Ok(())
    }
}

fn port_signal(port: u16, host: Option<&str>) -> Struct {
    let signal = Struct::new().with("port", port);
    match host {
        Some(host) => signal.with("host", host),
        None => signal,
    }
}

fn parse_port_signal(payload: &Struct) -> Result<Target, TransportError> {
    let port = payload
        .get("port")
        .and_then(|value| value.as_f64())
        .filter(|port| port.fract() == 0.0 && (1.0..=65535.0).contains(port))
        .ok_or_else(|| TransportError::BadSignal("expected {port} with a port number".into()))?;
    let host = payload.get("host").and_then(|value| value.as_str()).unwrap_or("localhost");
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(TransportError::BadSignal(format!("a host of {} bytes", host.len())));
    }
    Ok(Target { host: host.to_owned(), port: port as u16 })
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        // A listener or dial nobody will take the stream of stops here rather than lingering.
        if !self.inner.handover.handed_over() {
            self.inner.stop.cancel();
        }
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn open(&self) -> Result<(), TransportError> {
        let this = &self.inner;
        let upgrade = this.upgrade()?;
        if !this.options.initiator {
            return Ok(());
        }
        let listeners = Listeners::bind(this.settings.listen_on)?;
        let port = listeners.port()?;
        match upgrade {
            Some(upgrade) => {
                this.spawn_connect(listeners.accept_proven(upgrade, this.settings.max_pending_handshakes))
            }
            None => this.spawn_connect(listeners.accept_first()),
        }
        this.options.signals.send(port_signal(port, this.settings.advertise_host.as_deref())).await
    }

    async fn signal(&self, payload: Struct) -> Result<(), TransportError> {
        let this = &self.inner;
        // As in DXOS: the initiator only listens.
        if this.options.initiator || this.handover.ended() {
            return Ok(());
        }
        this.dial(&payload)
    }

    async fn connected(&self) -> Result<ByteStream, TransportError> {
        self.inner.handover.take().await
    }

    async fn close(&self) {
        self.inner.stop.cancel();
        self.inner.handover.close();
    }

    fn stats(&self) -> TransportStats {
        self.inner.counters.stats()
    }

    /// Once connected, an authenticated link's binding (its topic, session and both nonces, which
    /// both ends proved they hold the keys for) or the one its upgrade derived (for Noise, the
    /// handshake hash). A plain link has none.
    fn binding(&self) -> Option<ChannelBinding> {
        self.inner.binding.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use mesh_keys::{DiscoveryKey, Keypair};
    use tokio::net::TcpStream;

    use super::*;
    use crate::SignalSink;

    #[tokio::test]
    async fn dropping_an_unconnected_initiator_stops_its_listener() {
        let (signals, mut sent) = SignalSink::channel();
        let key = Keypair::generate().public();
        let options = TransportOptions {
            own: key,
            remote: Keypair::generate().public(),
            topic: DiscoveryKey::from_party(&key),
            initiator: true,
            session: Keypair::generate().public(),
            signals,
            link: None,
        };
        let transport = TcpTransportFactory::default().create(options);
        transport.open().await.unwrap();
        let port = parse_port_signal(&sent.recv().await.unwrap()).unwrap().port;
        drop(transport);
        // The listener goes once its task sees the stop; until then a dial may still land.
        let refused = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {}
        });
        refused.await.expect("the port stops accepting");
    }

    #[test]
    fn port_signals_round_trip_and_bad_ones_are_refused() {
        let target = |host: &str, port| Target { host: host.into(), port };
        assert_eq!(parse_port_signal(&port_signal(4321, None)).unwrap(), target("localhost", 4321));
        assert_eq!(parse_port_signal(&port_signal(80, Some("10.1.2.3"))).unwrap(), target("10.1.2.3", 80));
        for bad in [
            Struct::new(),
            port_signal(80, Some("")),
            port_signal(80, Some(&"h".repeat(MAX_HOST_LEN + 1))),
            Struct::new().with("port", "80"),
            Struct::new().with("port", 70000.0),
            Struct::new().with("port", 1.5),
        ] {
            assert!(matches!(parse_port_signal(&bad), Err(TransportError::BadSignal(_))));
        }
    }
}
