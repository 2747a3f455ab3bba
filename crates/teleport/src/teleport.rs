//! [`Teleport`]: one connection's protocol stack — the driver task, the control extension and the
//! extension host — behind a cheap, cloneable handle.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use mesh_keys::PublicKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::Port;
use crate::error::{ChannelError, ExtensionError, ProtocolError};
use crate::extension::{Extension, ExtensionContext};
use crate::muxer::{self, CloseReason, Muxer};
use crate::rpc::RpcPeer;
use crate::shared::{Inbox, Phase, Shared};
use crate::{control, driver};

/// How a connection is set up.
#[derive(Debug, Clone)]
pub struct Params {
    /// Whether this side started the connection; exactly one side is the initiator.
    pub initiator: bool,
    /// This side's peer key.
    pub local_peer: PublicKey,
    /// The remote's peer key.
    pub remote_peer: PublicKey,
    /// Names this connection (random by default; a swarm sets its connection's session). Two
    /// connections to the same remote peer, such as a restarted peer's new one and the old one
    /// it displaces, have different sessions, so per-connection state keyed by it never mixes
    /// them up.
    pub session: PublicKey,
    /// The muxer's limits (message size, per-channel send and receive buffers, the connection's
    /// receive budget, channels, timeouts).
    pub muxer: muxer::Config,
    /// How often the control extension sends a heartbeat (DXOS: 10 s).
    pub heartbeat_interval: Duration,
    /// How long a heartbeat (or the control handshake) may go unanswered before the connection is
    /// aborted (DXOS: 60 s).
    pub heartbeat_timeout: Duration,
}

impl Params {
    /// DXOS's defaults for a connection between `local_peer` and `remote_peer`.
    pub fn new(initiator: bool, local_peer: PublicKey, remote_peer: PublicKey) -> Self {
        Self {
            initiator,
            local_peer,
            remote_peer,
            session: PublicKey::random(),
            muxer: muxer::Config::default(),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Extensions {
    local: HashMap<String, Arc<dyn Extension>>,
    remote: HashSet<String>,
    opened: Vec<String>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) params: Params,
    cancel: CancellationToken,
    extensions: Mutex<Extensions>,
    pub(crate) control: watch::Sender<Option<RpcPeer>>,
    extensions_closed: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teleport")
            .field("local_peer", &self.params.local_peer)
            .field("remote_peer", &self.params.remote_peer)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One connection running Teleport. Clones share the connection; when the last clone is dropped
/// the connection is destroyed.
#[derive(Debug, Clone)]
pub struct Teleport {
    inner: Arc<Inner>,
}

impl Teleport {
    /// Starts Teleport over `io` (spawns the driver and the control extension; call it inside a
    /// tokio runtime). Both sides must run it; extensions are added with [`Teleport::add_extension`].
    pub fn new<IO>(io: IO, params: Params) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let muxer = Muxer::new(params.muxer.clone());
        let shared = Arc::new(Shared::new(muxer));
        let cancel = CancellationToken::new();
        tokio::spawn(driver::run(io, shared.clone(), cancel.clone()));
        let inner = Arc::new(Inner {
            shared,
            params,
            cancel,
            extensions: Mutex::new(Extensions::default()),
            control: watch::Sender::new(None),
            extensions_closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        match inner.open_port(control::TAG, Some(muxer::RPC_CONTENT_TYPE)) {
            Ok(port) => {
                tokio::spawn(control::run(weak.clone(), port));
            }
            Err(err) => tracing::debug!(%err, "connection closed before the control extension opened"),
        }
        tokio::spawn(watch_phase(weak, inner.shared.phase.subscribe()));
        Self { inner }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Whether this side started the connection.
    pub fn initiator(&self) -> bool {
        self.inner.params.initiator
    }

    /// This side's peer key.
    pub fn local_peer(&self) -> PublicKey {
        self.inner.params.local_peer
    }

    /// The remote's peer key.
    pub fn remote_peer(&self) -> PublicKey {
        self.inner.params.remote_peer
    }

    /// This connection's session (see [`Params::session`]).
    pub fn session(&self) -> PublicKey {
        self.inner.params.session
    }

    /// Adds an extension; it opens once the remote added one with the same name.
    pub fn add_extension(&self, name: &str, extension: impl Extension) -> Result<(), ExtensionError> {
        self.add_extension_arc(name, Arc::new(extension))
    }

    /// Like [`Teleport::add_extension`], with a shared extension.
    pub fn add_extension_arc(&self, name: &str, extension: Arc<dyn Extension>) -> Result<(), ExtensionError> {
        if name.is_empty() || name.contains('/') || name == control::NAME {
            return Err(ExtensionError::InvalidName(name.to_owned()));
        }
        if !matches!(*self.inner.shared.phase.borrow(), Phase::Open) {
            return Err(ExtensionError::Closed);
        }
        let remote_has = {
            let mut extensions = self.inner.lock_extensions();
            if extensions.local.contains_key(name) {
                return Err(ExtensionError::AlreadyAdded(name.to_owned()));
            }
            extensions.local.insert(name.to_owned(), extension);
            extensions.remote.contains(name)
        };
        tokio::spawn(control::register(Arc::downgrade(&self.inner), name.to_owned()));
        if remote_has {
            tokio::spawn(open_extension(Arc::downgrade(&self.inner), name.to_owned()));
        }
        Ok(())
    }

    /// Closes gracefully: extensions close (their RPC peers exchange `bye`), queued data goes out,
    /// then `Close`; returns once the remote answered or the close timeout passed.
    pub async fn close(&self) -> CloseReason {
        self.close_with(None).await
    }

    /// [`Teleport::close`] with a reason given to the extensions.
    pub async fn close_with(&self, error: Option<String>) -> CloseReason {
        close_extensions(&self.inner, error, false).await;
        self.inner.shared.update_and_wake(|state| state.muxer.close(tokio::time::Instant::now().into_std()));
        self.closed().await
    }

    /// Ends the connection at once (a courtesy `Close` is still sent). Idempotent.
    pub fn destroy(&self) {
        self.inner.abort(CloseReason::Destroyed(None));
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(*self.inner.shared.phase.borrow(), Phase::Closed(_))
    }

    /// Waits until the connection is over and tells why.
    pub async fn closed(&self) -> CloseReason {
        let mut phase = self.inner.shared.phase.subscribe();
        loop {
            if let Phase::Closed(reason) = &*phase.borrow_and_update() {
                return reason.clone();
            }
            if phase.changed().await.is_err() {
                return CloseReason::Destroyed(None);
            }
        }
    }
}

impl Inner {
    fn lock_extensions(&self) -> MutexGuard<'_, Extensions> {
        self.extensions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn open_port(&self, tag: &str, content_type: Option<&str>) -> Result<Port, ChannelError> {
        let id = self.shared.update_and_wake(|state| {
            let id = state.muxer.open_channel(tag, content_type)?;
            state.inboxes.insert(id, Inbox::default());
            Ok::<_, ChannelError>(id)
        })?;
        Ok(Port::new(self.shared.clone(), id, tag.to_owned()))
    }

    pub(crate) fn abort(&self, reason: CloseReason) {
        self.shared.update_and_wake(|state| state.muxer.abort(reason));
    }

    /// The remote added `name`: open it if we have it too. Names over the caps (see
    /// [`control::MAX_REMOTE_EXTENSIONS`]) are refused.
    pub(crate) fn remote_registered(self: &Arc<Self>, name: String) -> Result<(), ProtocolError> {
        if name.len() > control::MAX_EXTENSION_NAME_LEN {
            return Err(ProtocolError::ExtensionNameTooLong {
                len: name.len(),
                limit: control::MAX_EXTENSION_NAME_LEN,
            });
        }
        let local_has = {
            let mut extensions = self.lock_extensions();
            if extensions.remote.contains(&name) {
                tracing::debug!(name, "the remote registered an extension twice");
                return Ok(());
            }
            if extensions.remote.len() >= control::MAX_REMOTE_EXTENSIONS {
                return Err(ProtocolError::TooManyExtensions(control::MAX_REMOTE_EXTENSIONS));
            }
            extensions.remote.insert(name.clone());
            extensions.local.contains_key(&name)
        };
        if local_has {
            tokio::spawn(open_extension(Arc::downgrade(self), name));
        }
        Ok(())
    }

    /// Resolves once the connection is over (without keeping it alive meanwhile).
    pub(crate) fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut phase = self.shared.phase.subscribe();
        async move {
            let _ = phase.wait_for(|phase| matches!(phase, Phase::Closed(_))).await;
        }
    }
}

async fn open_extension(weak: Weak<Inner>, name: String) {
    let Some(inner) = weak.upgrade() else { return };
    let extension = {
        let mut extensions = inner.lock_extensions();
        if extensions.opened.contains(&name) {
            return;
        }
        let Some(extension) = extensions.local.get(&name).cloned() else { return };
        extensions.opened.push(name.clone());
        extension
    };
    let ctx = ExtensionContext {
        name: name.clone(),
        initiator: inner.params.initiator,
        local_peer: inner.params.local_peer,
        remote_peer: inner.params.remote_peer,
        session: inner.params.session,
        teleport: weak.clone(),
    };
    let closed = inner.closed();
    drop(inner);
    // An extension's on_open may wait on the remote; it ends with the connection at the latest.
    let result = tokio::select! {
        result = extension.on_open(ctx) => result,
        () = closed => return,
    };
    if let Err(err) = result {
        tracing::debug!(name, %err, "extension failed to open; destroying the connection");
        if let Some(inner) = weak.upgrade() {
            inner.abort(CloseReason::Destroyed(Some(format!("extension {name}: {err}"))));
        }
    }
}

/// Runs every opened extension's `on_close` (or `on_abort`) once, then closes the control RPC.
async fn close_extensions(inner: &Arc<Inner>, error: Option<String>, abort: bool) {
    if inner.extensions_closed.swap(true, Ordering::SeqCst) {
        return;
    }
    let opened: Vec<Arc<dyn Extension>> = {
        let extensions = inner.lock_extensions();
        extensions.opened.iter().filter_map(|name| extensions.local.get(name).cloned()).collect()
    };
    let wait = inner.params.muxer.close_timeout;
    for extension in opened {
        let step = async {
            if abort {
                extension.on_abort(error.clone()).await
            } else {
                extension.on_close(error.clone()).await
            }
        };
        let _ = tokio::time::timeout(wait, step).await;
    }
    let control = inner.control.borrow().clone();
    if let Some(control) = control {
        if abort {
            control.abort();
        } else {
            let _ = tokio::time::timeout(wait, control.close()).await;
        }
    }
}

/// Tells the extensions when the connection closes from the remote's side or breaks.
async fn watch_phase(weak: Weak<Inner>, mut phase: watch::Receiver<Phase>) {
    loop {
        if phase.changed().await.is_err() {
            return;
        }
        let current = phase.borrow_and_update().clone();
        let Some(inner) = weak.upgrade() else { return };
        match current {
            Phase::Open => {}
            Phase::Closing => close_extensions(&inner, None, false).await,
            Phase::Closed(reason) => {
                let abort = !reason.is_clean();
                let error = (!matches!(reason, CloseReason::Local)).then(|| reason.to_string());
                close_extensions(&inner, error, abort).await;
                return;
            }
        }
    }
}
