//! RPC over a [`Port`], as `@dxos/rpc`'s `RpcPeer` speaks it (`dxos.rpc.RpcMessage`).
//!
//! Both sides run the handshake: each sends `open` (resent with doubling backoff from 50 ms) and
//! answers every `open` with `open_ack`; a side is open once it received an `open_ack`, and then
//! sends one more `open_ack` in case its first answer was missed. Requests are served from the
//! start; answers are read only once open (as DXOS does). A request id counts up from 0 and is
//! always written, even when 0. Unary answers always carry a payload (`google.protobuf.Empty` for
//! nothing). Closing sends `bye` and waits up to 3 s for the remote's `bye`; a remote `bye` is
//! answered with `bye`. Calls still waiting when the peer closes fail with [`RpcError::Closed`].
//!
//! Bounds: calls waiting for an answer ([`RpcConfig::max_in_flight`]) and handlers running at once
//! ([`RpcConfig::max_concurrent_handlers`]; beyond it the peer stops reading the port, which in turn
//! slows the remote down). Handlers run as tasks owned by the peer's reading task: when the peer
//! closes (its channel closed, `bye`, or [`RpcPeer::abort`]) the handlers still running are
//! aborted, so a handler that never answers cannot outlive its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mesh_proto::dxos::error::Error as ErrorProto;
use mesh_proto::dxos::rpc::{Bye, Request, Response, RpcMessage, response, rpc_message};
use mesh_proto::{Any, Message, Name, any};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channel::Port;
use crate::error::RpcError;

/// Timings and limits of an [`RpcPeer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RpcConfig {
    /// How long a call waits for its answer (DXOS's default: 3 s).
    pub call_timeout: Duration,
    /// How long `close` waits for the remote's `bye` (DXOS: 3 s).
    pub close_timeout: Duration,
    /// The first `open` resend delay; it doubles up to 5 s.
    pub open_retry: Duration,
    /// Calls that may wait for an answer at once.
    pub max_in_flight: usize,
    /// Incoming requests handled at once.
    pub max_concurrent_handlers: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(3),
            close_timeout: Duration::from_secs(3),
            open_retry: Duration::from_millis(50),
            max_in_flight: 1024,
            max_concurrent_handlers: 64,
        }
    }
}

impl RpcConfig {
    /// Sets [`RpcConfig::call_timeout`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
}

/// Serves incoming calls: the method's full name (`package.Service.Method`) and its payload.
#[async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    /// Answers one call. An `Err` goes back as `Response.error` (`RpcError::Remote` keeps its
    /// name, other errors are sent with their text).
    async fn call(&self, method: &str, payload: Any) -> Result<Any, RpcError>;
}

/// A handler that serves nothing, for peers that only call.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandler;

#[async_trait]
impl RpcHandler for NoHandler {
    async fn call(&self, method: &str, _payload: Any) -> Result<Any, RpcError> {
        Err(RpcError::remote("Error", format!("Method not supported: {method}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Open,
    Closing,
    Closed,
}

type Pending = oneshot::Sender<Result<Any, RpcError>>;

struct State {
    phase: Phase,
    next_id: i32,
    pending: HashMap<i32, Pending>,
}

struct Inner {
    port: Port,
    handler: Arc<dyn RpcHandler>,
    config: RpcConfig,
    state: Mutex<State>,
    opened: watch::Sender<bool>,
    bye: watch::Sender<bool>,
    stop: CancellationToken,
    handlers: Arc<Semaphore>,
}

/// One side of an RPC session over a port. Cheap to clone; all clones are the same peer.
#[derive(Clone)]
pub struct RpcPeer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcPeer").field("port", &self.inner.port.tag()).finish_non_exhaustive()
    }
}

impl RpcPeer {
    /// Starts serving `handler` on `port` (spawns the task that reads the port; call it inside a
    /// tokio runtime). Call [`RpcPeer::open`] before making calls.
    pub fn new(port: Port, handler: impl RpcHandler, config: RpcConfig) -> Self {
        Self::with_handler(port, Arc::new(handler), config)
    }

    /// Like [`RpcPeer::new`], with a shared handler.
    pub fn with_handler(port: Port, handler: Arc<dyn RpcHandler>, config: RpcConfig) -> Self {
        let handlers = Arc::new(Semaphore::new(config.max_concurrent_handlers.max(1)));
        let inner = Arc::new(Inner {
            port,
            handler,
            config,
            state: Mutex::new(State { phase: Phase::Opening, next_id: 0, pending: HashMap::new() }),
            opened: watch::Sender::new(false),
            bye: watch::Sender::new(false),
            stop: CancellationToken::new(),
            handlers,
        });
        tokio::spawn(read_loop(inner.clone()));
        Self { inner }
    }

    /// Runs the `open`/`open_ack` handshake; returns once the remote answered, or
    /// [`RpcError::Closed`] if the peer closed first.
    pub async fn open(&self) -> Result<(), RpcError> {
        let inner = &self.inner;
        let mut opened = inner.opened.subscribe();
        send(inner, rpc_message::Content::Open(true)).await?;
        let mut delay = inner.config.open_retry;
        loop {
            if *opened.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = opened.changed() => if changed.is_err() { return Err(RpcError::Closed) },
                _ = inner.stop.cancelled() => return Err(RpcError::Closed),
                _ = tokio::time::sleep(delay) => {
                    send(inner, rpc_message::Content::Open(true)).await?;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        send(inner, rpc_message::Content::OpenAck(true)).await
    }

    /// Waits until the handshake completed (however it was started); [`RpcError::Closed`] if the
    /// peer closed first.
    pub async fn opened(&self) -> Result<(), RpcError> {
        let mut opened = self.inner.opened.subscribe();
        tokio::select! {
            result = opened.wait_for(|open| *open) => result.map(|_| ()).map_err(|_| RpcError::Closed),
            _ = self.inner.stop.cancelled() => Err(RpcError::Closed),
        }
    }

    /// Whether the handshake completed and the peer is not closing.
    pub fn is_open(&self) -> bool {
        self.inner.lock().phase == Phase::Open
    }

    /// Calls `method` (`package.Service.Method`) with a packed payload.
    pub async fn call(&self, method: &str, payload: Any) -> Result<Any, RpcError> {
        let inner = &self.inner;
        let (id, rx) = {
            let mut state = inner.lock();
            match state.phase {
                Phase::Open => {}
                Phase::Opening => return Err(RpcError::NotOpen),
                Phase::Closing | Phase::Closed => return Err(RpcError::Closed),
            }
            if state.pending.len() >= inner.config.max_in_flight {
                return Err(RpcError::TooManyCalls(inner.config.max_in_flight));
            }
            let id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            let (tx, rx) = oneshot::channel();
            state.pending.insert(id, tx);
            (id, rx)
        };
        let request =
            Request { id: Some(id), method: method.to_owned(), payload: Some(payload), stream: Some(false) };
        let outcome = async {
            send(inner, rpc_message::Content::Request(request)).await?;
            rx.await.unwrap_or(Err(RpcError::Closed))
        };
        match tokio::time::timeout(inner.config.call_timeout, outcome).await {
            Ok(result) => {
                inner.lock().pending.remove(&id);
                result
            }
            Err(_) => {
                inner.lock().pending.remove(&id);
                Err(RpcError::Timeout { method: method.to_owned() })
            }
        }
    }

    /// Calls `method` with a prost message and decodes the answer as `Resp`.
    pub async fn call_typed<Req, Resp>(&self, method: &str, request: &Req) -> Result<Resp, RpcError>
    where
        Req: Message + Name,
        Resp: Message + Name + Default,
    {
        let answer = self.call(method, any::pack_request(request)).await?;
        any::decode_value(&answer).map_err(|err| RpcError::Malformed(err.to_string()))
    }

    /// Closes gracefully: sends `bye` and waits (up to the close timeout) for the remote's `bye`.
    /// Calls still waiting fail with [`RpcError::Closed`]. Idempotent.
    pub async fn close(&self) {
        let inner = &self.inner;
        let was_open = {
            let mut state = inner.lock();
            let was_open = state.phase == Phase::Open;
            if state.phase != Phase::Closed {
                state.phase = Phase::Closing;
            }
            fail_pending(&mut state);
            was_open
        };
        if was_open {
            let mut bye = inner.bye.subscribe();
            let exchange = async {
                send(inner, rpc_message::Content::Bye(Bye {})).await.ok()?;
                bye.wait_for(|received| *received).await.ok().map(|_| ())
            };
            let _ = tokio::time::timeout(inner.config.close_timeout, exchange).await;
        }
        self.abort();
    }

    /// Closes without waiting for the remote. Idempotent.
    pub fn abort(&self) {
        let mut state = self.inner.lock();
        state.phase = Phase::Closed;
        fail_pending(&mut state);
        drop(state);
        self.inner.stop.cancel();
    }

    /// Waits until the peer is closed (by either side, or because its channel closed).
    pub async fn closed(&self) {
        self.inner.stop.cancelled().await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn fail_pending(state: &mut State) {
    for (_, tx) in state.pending.drain() {
        let _ = tx.send(Err(RpcError::Closed));
    }
}

async fn send(inner: &Inner, content: rpc_message::Content) -> Result<(), RpcError> {
    let message = RpcMessage { content: Some(content) };
    inner.port.send(Bytes::from(message.encode_to_vec())).await.map_err(RpcError::from)
}

fn error_proto(err: &RpcError) -> ErrorProto {
    let (name, message) = match err {
        RpcError::Remote { name, message } => (name.clone(), message.clone()),
        RpcError::Closed => ("RPC_CLOSED".to_owned(), err.to_string()),
        other => ("Error".to_owned(), other.to_string()),
    };
    ErrorProto { name: Some(name), message: Some(message), stack: None, context: None }
}

async fn read_loop(inner: Arc<Inner>) {
    // Dropped when the loop ends, which aborts the handlers still running.
    let mut handlers = JoinSet::new();
    loop {
        let message = tokio::select! {
            _ = inner.stop.cancelled() => break,
            message = inner.port.recv() => message,
        };
        let Some(message) = message else { break };
        let Ok(RpcMessage { content: Some(content) }) = RpcMessage::decode(message) else {
            tracing::debug!(port = inner.port.tag(), "ignoring a malformed RPC message");
            continue;
        };
        while handlers.try_join_next().is_some() {}
        if !handle(&inner, &mut handlers, content).await {
            break;
        }
    }
    let mut state = inner.lock();
    state.phase = Phase::Closed;
    fail_pending(&mut state);
    drop(state);
    inner.stop.cancel();
}

/// Handles one message (requests are served by tasks in `handlers`); `false` ends the session.
async fn handle(inner: &Arc<Inner>, handlers: &mut JoinSet<()>, content: rpc_message::Content) -> bool {
    match content {
        rpc_message::Content::Request(request) => {
            let id = request.id.unwrap_or_default();
            let phase = inner.lock().phase;
            if !matches!(phase, Phase::Opening | Phase::Open) {
                let error = error_proto(&RpcError::Closed);
                let response = Response { id: Some(id), content: Some(response::Content::Error(error)) };
                let _ = send(inner, rpc_message::Content::Response(response)).await;
                return true;
            }
            let permit = tokio::select! {
                _ = inner.stop.cancelled() => return false,
                permit = inner.handlers.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return false,
                },
            };
            let inner = inner.clone();
            handlers.spawn(async move {
                let content = if request.stream == Some(true) {
                    response::Content::Error(error_proto(&RpcError::remote(
                        "Error",
                        "Requests with streaming responses are not supported.",
                    )))
                } else {
                    match request.payload {
                        Some(payload) => match inner.handler.call(&request.method, payload).await {
                            Ok(answer) => response::Content::Payload(answer),
                            Err(err) => response::Content::Error(error_proto(&err)),
                        },
                        None => response::Content::Error(error_proto(&RpcError::Malformed(
                            "request without payload".into(),
                        ))),
                    }
                };
                let response = Response { id: Some(id), content: Some(content) };
                let _ = send(&inner, rpc_message::Content::Response(response)).await;
                drop(permit);
            });
            true
        }
        rpc_message::Content::Response(response) => {
            let mut state = inner.lock();
            if state.phase != Phase::Open {
                return true;
            }
            let Some(tx) = response.id.and_then(|id| state.pending.remove(&id)) else { return true };
            drop(state);
            let result = match response.content {
                Some(response::Content::Payload(payload)) => Ok(payload),
                Some(response::Content::Error(error)) => Err(RpcError::Remote {
                    name: error.name.unwrap_or_default(),
                    message: error.message.unwrap_or_default(),
                }),
                _ => Err(RpcError::Malformed("unary response without payload or error".into())),
            };
            let _ = tx.send(result);
            true
        }
        rpc_message::Content::Open(_) => {
            let _ = send(inner, rpc_message::Content::OpenAck(true)).await;
            true
        }
        rpc_message::Content::OpenAck(_) => {
            let mut state = inner.lock();
            if state.phase == Phase::Opening {
                state.phase = Phase::Open;
                drop(state);
                inner.opened.send_replace(true);
            }
            true
        }
        rpc_message::Content::StreamClose(_) => true,
        rpc_message::Content::Bye(_) => {
            inner.bye.send_replace(true);
            let phase = inner.lock().phase;
            if matches!(phase, Phase::Closing | Phase::Closed) {
                return true;
            }
            inner.lock().phase = Phase::Closing;
            let _ = send(inner, rpc_message::Content::Bye(Bye {})).await;
            false
        }
    }
}
