//! A TCP proxy between clients and a server that can go silent: after [`Proxy::stall`] it
//! forwards nothing in either direction but keeps every socket open, as a half-open server or a
//! dead middlebox would.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

pub struct Proxy {
    addr: SocketAddr,
    stalled: watch::Sender<bool>,
    _tasks: tokio_util::task::AbortOnDropHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let (stalled, watch) = watch::channel(false);
        let accepting = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(client, target, watch.clone()));
            }
        });
        Self { addr, stalled, _tasks: tokio_util::task::AbortOnDropHandle::new(accepting) }
    }

    /// The proxied URL of a signal server whose URL is `url`.
    pub fn url(&self, url: &str) -> String {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let path = &rest[rest.find('/').unwrap_or(rest.len())..];
        format!("ws://{}{path}", self.addr)
    }

    /// From now on nothing passes, in either direction, on old or new connections.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }
}

async fn forward(client: TcpStream, target: SocketAddr, stalled: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut pipes = JoinSet::new();
    pipes.spawn(pipe(client_read, server_write, stalled.clone()));
    pipes.spawn(pipe(server_read, client_write, stalled));
    while pipes.join_next().await.is_some() {}
}

/// Copies `from` to `to` until either closes or the proxy stalls; a stalled pipe holds both
/// sockets open and never reads or writes again.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let check = stalled.clone();
    loop {
        tokio::select! {
            biased;
            () = async { drop(stalled.wait_for(|stalled| *stalled).await) } => break,
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let stop = *check.borrow();
                    if stop || to.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    // Stalled: keep the sockets until the proxy is dropped.
    let _sockets = (from, to);
    std::future::pending::<()>().await;
}
