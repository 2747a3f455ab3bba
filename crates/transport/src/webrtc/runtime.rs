//! The tokio runtime as webrtc sees it, with large UDP socket buffers and a driver that sends
//! what it queued without waiting for a timer.
//!
//! webrtc reads its UDP socket from one driver task per peer connection. With the kernel's
//! default buffers (about 200 KiB) a burst from the remote overflows the receive queue while the
//! driver is busy, thousands of datagrams are dropped, and SCTP retransmits its way along at a
//! fraction of the link speed. Larger buffers absorb the bursts.
//!
//! The driver loop writes what the core queued, then handles the core's events, then reads, then
//! sleeps until the core's next deadline. Handling an event often queues a packet (the DTLS
//! ClientHello once ICE connects, the SCTP INIT once DTLS is done, the DCEP OPEN once SCTP is
//! up), and that packet then waits for the next wake: once connected, the ICE agent's 200 ms
//! tick. That put about 400 ms into every connection's setup. So the driver's sleep here ends at
//! once, for one more pass, whenever the previous pass had something to do (a datagram came in,
//! or a timer or a kick woke it); only a pass that found nothing sleeps for real. A kick wakes
//! the driver for what the API does not wake it for itself: a remote ICE candidate added.

use std::{
    cell::Cell,
    future::Future,
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tracing::debug;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Bytes asked for each UDP socket's send and receive buffers. The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`; a smaller buffer is still better than the default.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

thread_local! {
    /// Whether this thread is polling a task webrtc spawned (its driver). Only the driver's own
    /// sleeps may end early: webrtc's other sleeps (a close's deadline, a data channel's
    /// back-pressure backstop) run on application tasks and must last.
    static IN_DRIVER: Cell<bool> = const { Cell::new(false) };
}

/// What the driver of one peer connection has to do soon.
#[derive(Debug, Default)]
struct Activity {
    /// The last pass had something to do, so the next sleep ends at once.
    busy: AtomicBool,
    /// Wakes a sleeping driver; keeps a permit when it is not asleep.
    kick: Notify,
}

/// webrtc's [`TokioRuntime`] with large UDP buffers and a driver that makes one more pass after
/// any activity, as this transport runs its peer connections.
///
/// Public for applications that drive webrtc peer connections themselves, and for measuring
/// this transport against the bare engine. Use one per peer connection: it holds that
/// connection's activity. Call [`BufferedRuntime::kick`] after adding a remote ICE candidate.
#[derive(Debug)]
pub struct BufferedRuntime {
    tokio: TokioRuntime,
    activity: Arc<Activity>,
}

impl Default for BufferedRuntime {
    fn default() -> Self {
        Self { tokio: TokioRuntime, activity: Arc::default() }
    }
}

impl BufferedRuntime {
    /// Wakes the driver for one pass: after a change it does not notice by itself.
    pub fn kick(&self) {
        self.activity.kick.notify_one();
    }
}

/// A task webrtc spawned, polled with [`IN_DRIVER`] set.
struct DriverTask(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for DriverTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_DRIVER.with(|flag| flag.set(self.0));
            }
        }
        let _restore = Restore(IN_DRIVER.with(|flag| flag.replace(true)));
        self.0.as_mut().poll(cx)
    }
}

/// A UDP socket that notes every datagram received as activity.
#[derive(Debug)]
struct NotingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    activity: Arc<Activity>,
}

impl AsyncUdpSocket for NotingSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(_)) = received {
            self.activity.busy.store(true, Ordering::Release);
        }
        received
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

impl Runtime for BufferedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(Box::pin(DriverTask(future)))
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(reactor_pool_size, Box::pin(DriverTask(future)))
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
        let inner = self.tokio.wrap_udp_socket(socket)?;
        Ok(Arc::new(NotingSocket { inner, activity: self.activity.clone() }))
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
        if !IN_DRIVER.with(Cell::get) {
            return self.tokio.sleep(duration);
        }
        if self.activity.busy.swap(false, Ordering::AcqRel) {
            // The last pass did something: one more, for what its events queued.
            return Box::pin(std::future::ready(()));
        }
        let activity = self.activity.clone();
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = activity.kick.notified() => {}
            }
            // A timer that fired or a kick makes work whose output the next pass queues.
            activity.busy.store(true, Ordering::Release);
        })
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
        "tokio (large UDP buffers, eager driver)"
    }
}
