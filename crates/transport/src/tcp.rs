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
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{
    ByteStream, Metered, Transport, TransportError, TransportFactory, TransportKind, TransportOptions,
    TransportStats, metered::Counters,
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

/// Where a connection attempt stands.
#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Connected,
    Failed(TransportError),
}

/// One TCP connection attempt.
#[derive(Debug)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    options: TransportOptions,
    advertise_host: Option<String>,
    stream: Mutex<Option<ByteStream>>,
    outcome: watch::Sender<Outcome>,
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
            stream: Mutex::new(None),
            outcome: watch::channel(Outcome::Pending).0,
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
                    *lock(&this.stream) = Some(Box::new(metered));
                    this.outcome.send_replace(Outcome::Connected);
                }
                Err(err) => {
                    debug!(%err, "TCP transport failed");
                    this.outcome.send_replace(Outcome::Failed(err));
                }
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let this = &self.inner;
        let mut outcome = this.outcome.subscribe();
        let outcome = outcome
            .wait_for(|o| !matches!(o, Outcome::Pending))
            .await
            .map_err(|_| TransportError::Closed)?
            .clone();
        match outcome {
            Outcome::Connected => lock(&this.stream).take().ok_or(TransportError::Closed),
            Outcome::Failed(err) => Err(err),
            Outcome::Pending => Err(TransportError::Closed),
        }
    }

    async fn close(&self) {
        let this = &self.inner;
        this.stop.cancel();
        lock(&this.stream).take();
        this.outcome.send_if_modified(|outcome| match outcome {
            Outcome::Pending => {
                *outcome = Outcome::Failed(TransportError::Closed);
                true
            }
            _ => false,
        });
    }

    fn stats(&self) -> TransportStats {
        self.inner.counters.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
