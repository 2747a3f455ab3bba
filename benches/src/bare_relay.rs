//! The baseline for the signal bench: a bare tokio-tungstenite relay that does the signal server's
//! core job with nothing else. A client registers an inbox key; a frame that names a recipient is
//! forwarded unchanged to the socket that registered it. No RPC, no topics, no replies to sends,
//! no limits beyond a bounded queue per socket (full queue: the frame is dropped).
//!
//! Framing, one binary WebSocket message each:
//! - register: `0x00`, the key (32 bytes); answered with the single byte `0x00`;
//! - send: `0x01`, the recipient's key (32 bytes), the payload; delivered as the same bytes.
//!
//! Like the mesh server it reads with a 4 KiB buffer and coalesces queued frames into one write.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::{Message as WsMessage, protocol::WebSocketConfig};

use crate::signal_wire::KEY_LEN;

/// An inbox key.
type Key = [u8; KEY_LEN];

const REGISTER: u8 = 0;
const SEND: u8 = 1;
/// The answer to a register frame.
pub const REGISTERED: &[u8] = &[REGISTER];
/// Frames queued to one socket, as the mesh server's default `send_queue`.
const QUEUE: usize = 256;
/// Per-socket read buffer, as the mesh server's.
const READ_BUFFER: usize = 4 * 1024;
/// Pending connections the kernel may hold before `accept`, as the mesh server's.
const BACKLOG: u32 = 4096;

/// Registered inboxes: key → the queue of the socket that registered it.
type Inboxes = RwLock<HashMap<Key, mpsc::Sender<Bytes>>>;

/// The frame that registers `key` as this socket's inbox.
pub fn register_frame(key: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + KEY_LEN);
    frame.push(REGISTER);
    frame.extend_from_slice(key);
    frame
}

/// The frame that sends `payload` to `recipient`.
pub fn send_frame(recipient: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + KEY_LEN + payload.len());
    frame.push(SEND);
    frame.extend_from_slice(recipient);
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a send frame, or `None` for any other frame.
pub fn payload_of(frame: &[u8]) -> Option<&[u8]> {
    (frame.first() == Some(&SEND)).then(|| frame.get(1 + KEY_LEN..)).flatten()
}

fn recipient_of(frame: &[u8]) -> Option<Key> {
    frame.get(1..=KEY_LEN).and_then(|key| Key::try_from(key).ok())
}

/// Binds a listener on `addr` (port 0 picks one).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4().context("creating the relay socket")?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    socket.bind(addr).with_context(|| format!("binding the relay to {addr}"))?;
    socket.listen(BACKLOG).context("listening")
}

/// Serves relay clients on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let inboxes: Arc<Inboxes> = Arc::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_socket(stream, inboxes.clone()));
            }
            // Out of file descriptors, most likely: the bench sized the limit, so just go on.
            Err(err) => eprintln!("bare relay: accept failed: {err}"),
        }
    }
}

async fn serve_socket(stream: TcpStream, inboxes: Arc<Inboxes>) {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            // Queue everything already waiting, then write it with one flush.
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                if sink.feed(WsMessage::Binary(frame)).await.is_err() {
                    return;
                }
                next = rx.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let mut registered = Vec::new();
    while let Some(Ok(message)) = source.next().await {
        let WsMessage::Binary(frame) = message else { continue };
        match (frame.first(), recipient_of(&frame)) {
            (Some(&REGISTER), Some(key)) if frame.len() == 1 + KEY_LEN => {
                let mut map = inboxes.write().unwrap_or_else(PoisonError::into_inner);
                map.insert(key, tx.clone());
                registered.push(key);
                let _ = tx.try_send(Bytes::from_static(REGISTERED));
            }
            (Some(&SEND), Some(recipient)) => {
                let map = inboxes.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(inbox) = map.get(&recipient) {
                    // Best effort, as the mesh server: a full queue drops the frame.
                    let _ = inbox.try_send(frame);
                }
            }
            _ => {}
        }
    }

    let mut map = inboxes.write().unwrap_or_else(PoisonError::into_inner);
    for key in registered {
        if map.get(&key).is_some_and(|inbox| inbox.same_channel(&tx)) {
            map.remove(&key);
        }
    }
    drop(map);
    writer.abort();
}
