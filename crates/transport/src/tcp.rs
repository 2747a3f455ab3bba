//! TCP transport, compatible with DXOS's `TcpTransport`.
//!
//! The initiator listens on every interface (IPv6 and IPv4) and signals `{port}`; the other side
//! dials `localhost:port`. DXOS's TCP transport is same-host only; mesh may add `host` to the
//! signal (DXOS ignores it) and dials it when present, so TCP links also work across machines.

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use mesh_proto::Struct;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{
    ByteStream, Metered, Transport, TransportError, TransportFactory, TransportKind, TransportOptions,
    TransportStats, handover::Handover, lock, metered::Counters,
};

/// Makes [`TcpTransport`]s.
#[derive(Debug, Clone, Default)]
pub struct TcpTransportFactory {
    /// A host name or address to put in `{port, host}` signals, for peers on other machines.
    /// Without it, the remote dials `localhost` as DXOS does.
    pub advertise_host: Option<String>,
}

impl TransportFactory for TcpTransportFactory {
    fn create(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(TcpTransport { inner: Arc::new(Inner::new(options, self.advertise_host.clone())) })
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }
}

/// One TCP connection attempt.
#[derive(Debug)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    options: TransportOptions,
    advertise_host: Option<String>,
    handover: Handover,
    dialing: Mutex<bool>,
    counters: Arc<Counters>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").field("initiator", &self.options.initiator).finish_non_exhaustive()
    }
}

impl Inner {
    fn new(options: TransportOptions, advertise_host: Option<String>) -> Self {
        Self {
            options,
            advertise_host,
            handover: Handover::new(),
            dialing: Mutex::new(false),
            counters: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Runs `connect` until it yields a stream, the transport closes, or it fails.
    fn spawn_connect<F>(self: &Arc<Self>, connect: F)
    where
        F: Future<Output = Result<TcpStream, TransportError>> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                () = this.stop.cancelled() => return,
                result = connect => result,
            };
            match result {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
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
}

/// Listens on `[::]:0` accepting IPv4 too, or on `0.0.0.0:0` where IPv6 is unavailable.
fn listen_any() -> Result<TcpListener, TransportError> {
    let dual_stack = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        socket.set_only_v6(false)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
        socket.listen(8)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    let listener = dual_stack().or_else(|_| {
        let listener = std::net::TcpListener::bind("0.0.0.0:0")?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    });
    listener.and_then(TcpListener::from_std).map_err(|err| TransportError::io("listening", err))
}

fn port_signal(port: u16, host: Option<&str>) -> Struct {
    let signal = Struct::new().with("port", port);
    match host {
        Some(host) => signal.with("host", host),
        None => signal,
    }
}

fn parse_port_signal(payload: &Struct) -> Result<(String, u16), TransportError> {
    let port = payload
        .get("port")
        .and_then(|value| value.as_f64())
        .filter(|port| port.fract() == 0.0 && (1.0..=65535.0).contains(port))
        .ok_or_else(|| TransportError::BadSignal("expected {port} with a port number".into()))?;
    let host = payload.get("host").and_then(|value| value.as_str()).unwrap_or("localhost");
    Ok((host.to_owned(), port as u16))
}

/// Accepts one TCP connection; the transport serves a single stream.
async fn accept_one(listener: TcpListener) -> Result<TcpStream, TransportError> {
    let (stream, from) = listener.accept().await.map_err(|err| TransportError::io("accepting", err))?;
    debug!(%from, "TCP transport accepted");
    Ok(stream)
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
        if !this.options.initiator {
            return Ok(());
        }
        let listener = listen_any()?;
        let port = listener.local_addr().map_err(|err| TransportError::io("listening", err))?.port();
        this.spawn_connect(accept_one(listener));
        this.options.signals.send(port_signal(port, this.advertise_host.as_deref())).await
    }

    async fn signal(&self, payload: Struct) -> Result<(), TransportError> {
        let this = &self.inner;
        // As in DXOS: the initiator only listens, and one dial is enough.
        if this.options.initiator || *lock(&this.dialing) {
            return Ok(());
        }
        let (host, port) = parse_port_signal(&payload)?;
        *lock(&this.dialing) = true;
        this.spawn_connect(async move {
            TcpStream::connect((host.as_str(), port)).await.map_err(|err| TransportError::io("dialing", err))
        });
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use mesh_keys::{DiscoveryKey, Keypair};

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
        };
        let transport = TcpTransportFactory::default().create(options);
        transport.open().await.unwrap();
        let (_, port) = parse_port_signal(&sent.recv().await.unwrap()).unwrap();
        drop(transport);
        // The listener goes once its task sees the stop; until then a dial may still land.
        let refused = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {}
        });
        refused.await.expect("the port stops accepting");
    }

    #[test]
    fn port_signals_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_port_signal(&port_signal(4321, None)).unwrap(), ("localhost".into(), 4321));
        assert_eq!(parse_port_signal(&port_signal(80, Some("10.1.2.3"))).unwrap(), ("10.1.2.3".into(), 80));
        for bad in [
            Struct::new(),
            Struct::new().with("port", "80"),
            Struct::new().with("port", 70000.0),
            Struct::new().with("port", 1.5),
        ] {
            assert!(matches!(parse_port_signal(&bad), Err(TransportError::BadSignal(_))));
        }
    }
}
