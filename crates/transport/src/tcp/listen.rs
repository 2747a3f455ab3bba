//! The initiator's side: where it listens, and which incoming connection becomes its stream.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tracing::{debug, warn};

use super::upgrade::{Upgrade, Upgraded};
use crate::TransportError;

/// Where an initiator listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenOn {
    /// `127.0.0.1` and `::1` on one port: reachable from this host only, whichever address
    /// `localhost` resolves to for the remote (DXOS dials `localhost`).
    Loopback,
    /// Every interface, IPv6 and IPv4, for remotes on other machines.
    Any,
    /// This address only (the unspecified addresses mean every interface of their family).
    Addr(IpAddr),
}

/// Fresh loopback ports tried when `::1` is taken on the port `127.0.0.1` got.
const LOOPBACK_PORT_TRIES: usize = 8;

/// One or two listeners on one port.
#[derive(Debug)]
pub(super) struct Listeners {
    first: TcpListener,
    second: Option<TcpListener>,
}

impl Listeners {
    /// Listens on an ephemeral port as `on` says.
    pub(super) fn bind(on: ListenOn) -> Result<Self, TransportError> {
        let listeners = match on {
            ListenOn::Loopback => bind_loopback(),
            ListenOn::Any => bind_any(),
            ListenOn::Addr(IpAddr::V6(addr)) if addr.is_unspecified() => bind_any(),
            ListenOn::Addr(addr) => std_listener((addr, 0).into()).map(|first| (first, None)),
        };
        let (first, second) = listeners.map_err(|err| TransportError::io("listening", err))?;
        let tokio =
            |listener| TcpListener::from_std(listener).map_err(|err| TransportError::io("listening", err));
        Ok(Self { first: tokio(first)?, second: second.map(tokio).transpose()? })
    }

    /// The port every listener is on.
    pub(super) fn port(&self) -> Result<u16, TransportError> {
        Ok(self.first.local_addr().map_err(|err| TransportError::io("listening", err))?.port())
    }

    /// The addresses listened on.
    #[cfg(test)]
    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(&self.first).chain(&self.second).filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The next connection on any of the listeners.
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.second {
            None => self.first.accept().await,
            Some(second) => tokio::select! {
                accepted = self.first.accept() => accepted,
                accepted = second.accept() => accepted,
            },
        }
    }

    /// Takes the first connection, as DXOS does: the unauthenticated path.
    pub(super) async fn accept_first(self) -> Result<Upgraded, TransportError> {
        let (stream, from) = self.accept().await.map_err(|err| TransportError::io("accepting", err))?;
        debug!(%from, "TCP transport accepted");
        let _ = stream.set_nodelay(true);
        Ok(Upgraded::plain(stream))
    }

    /// Accepts connections until one passes `upgrade` (proves it is the expected remote),
    /// running at most `max_pending` upgrades at once (each bounded in time); the others are
    /// refused. Waiting upgrades end with the listener.
    pub(super) async fn accept_proven(
        self,
        upgrade: Arc<dyn Upgrade>,
        max_pending: usize,
    ) -> Result<Upgraded, TransportError> {
        let mut pending = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.accept(), if pending.len() < max_pending.max(1) => {
                    let (stream, from) = match accepted {
                        Ok(accepted) => accepted,
                        // A connection that went away before we took it says nothing about the others.
                        Err(err) if is_per_connection(&err) => continue,
                        Err(err) => return Err(TransportError::io("accepting", err)),
                    };
                    let upgrade = upgrade.clone();
                    pending.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        upgrade.run(stream).await.map_err(|err| (from, err))
                    });
                }
                Some(done) = pending.join_next() => match done {
                    Ok(Ok(upgraded)) => return Ok(upgraded),
                    Ok(Err((from, err))) => warn!(%from, %err, "refused a TCP link that did not prove the expected peer"),
                    // Handshakes do not panic; an aborted one is only possible on shutdown.
                    Err(err) => debug!(%err, "a link handshake ended early"),
                },
            }
        }
    }
}

/// Errors of `accept` that concern one incoming connection, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

fn std_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

type Bound = (std::net::TcpListener, Option<std::net::TcpListener>);

/// `127.0.0.1` on an ephemeral port and `::1` on the same one; IPv4 only where the host has no
/// IPv6 loopback.
fn bind_loopback() -> io::Result<Bound> {
    for _ in 0..LOOPBACK_PORT_TRIES {
        let v4 = std_listener((Ipv4Addr::LOCALHOST, 0).into())?;
        let port = v4.local_addr()?.port();
        match std_listener((Ipv6Addr::LOCALHOST, port).into()) {
            Ok(v6) => return Ok((v4, Some(v6))),
            // Someone else holds `::1` on this port: a remote dialling `localhost` could reach
            // them instead, so try another port.
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => continue,
            Err(err) => {
                debug!(%err, "no IPv6 loopback; listening on 127.0.0.1 only");
                return Ok((v4, None));
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no loopback port free on both 127.0.0.1 and ::1"))
}

/// `[::]:0` accepting IPv4 too, or `0.0.0.0:0` where IPv6 is unavailable.
fn bind_any() -> io::Result<Bound> {
    let dual_stack = || -> io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        socket.set_only_v6(false)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
        socket.listen(128)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    dual_stack().or_else(|_| std_listener((Ipv4Addr::UNSPECIFIED, 0).into())).map(|first| (first, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_listens_on_both_loopback_addresses_of_one_port() {
        let listeners = Listeners::bind(ListenOn::Loopback).unwrap();
        let port = listeners.port().unwrap();
        let addrs = listeners.local_addrs();
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback() && addr.port() == port), "{addrs:?}");
        assert!(addrs.iter().any(|addr| addr.is_ipv4()), "{addrs:?}");
    }

    #[tokio::test]
    async fn any_and_an_explicit_address_listen_where_asked() {
        let any = Listeners::bind(ListenOn::Any).unwrap();
        assert!(any.local_addrs().iter().all(|addr| addr.ip().is_unspecified()));
        let explicit = Listeners::bind(ListenOn::Addr(Ipv4Addr::LOCALHOST.into())).unwrap();
        assert_eq!(
            explicit.local_addrs(),
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, explicit.port().unwrap()))]
        );
    }
}
