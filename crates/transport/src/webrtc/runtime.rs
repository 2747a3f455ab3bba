//! The tokio runtime as webrtc sees it, with large UDP socket buffers.
//!
//! webrtc reads its UDP socket from one driver task per peer connection. With the kernel's
//! default buffers (about 200 KiB) a burst from the remote overflows the receive queue while the
//! driver is busy, thousands of datagrams are dropped, and SCTP retransmits its way along at a
//! fraction of the link speed. Larger buffers absorb the bursts.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::debug;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime, TokioRuntime,
};

/// Bytes asked for each UDP socket's send and receive buffers. The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`; a smaller buffer is still better than the default.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

/// [`TokioRuntime`] with UDP sockets whose buffers are raised to [`UDP_BUFFER`].
#[derive(Debug)]
pub(crate) struct BufferedRuntime {
    tokio: TokioRuntime,
}

impl BufferedRuntime {
    pub(crate) fn new() -> Self {
        Self { tokio: TokioRuntime }
    }
}

impl Runtime for BufferedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = socket2::SockRef::from(&socket);
        // Best effort: a refused size leaves the default, which works, only slower.
        if let Err(err) = sock.set_recv_buffer_size(UDP_BUFFER) {
            debug!(%err, "could not raise the UDP receive buffer");
        }
        if let Err(err) = sock.set_send_buffer_size(UDP_BUFFER) {
            debug!(%err, "could not raise the UDP send buffer");
        }
        self.tokio.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.tokio.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.tokio.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.tokio.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.tokio.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.tokio.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (large UDP buffers)"
    }
}
