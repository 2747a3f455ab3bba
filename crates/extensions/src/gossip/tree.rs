//! Tree mode: the extension `<name>.tree` between two mesh peers, which carries `GossipControl`
//! messages on its port "control", and what they do to the shared state (see the module docs of
//! [`gossip`](super)).

use std::{
    sync::{Arc, Mutex, Weak},
    time::Instant,
};

use async_trait::async_trait;
use mesh_keys::PublicKey;
use mesh_proto::mesh::v1::{GossipControl, Graft, IHave, Prune, gossip_control::Kind};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError};
use tokio::sync::{Notify, mpsc};
use tokio_util::task::AbortOnDropHandle;

use super::{Shared, State, TreeLink};
use crate::message_port::MessagePort;

/// The control port's content type.
const CONTENT_TYPE: &str = "application/x-protobuf; messageType=\"mesh.v1.GossipControl\"";
/// Control messages waiting to be sent per link.
const CONTROL_QUEUE: usize = 256;
/// Ids read from one control message at most.
const MAX_IDS: usize = 256;
/// Messages announced and not received that are tracked at most.
const MAX_MISSING: usize = 4096;
/// Links a missing message is asked from in turn, at most.
const MAX_SOURCES: usize = 4;

/// A message a lazy link announced and that has not arrived.
#[derive(Debug)]
pub(crate) struct Missing {
    /// Sessions of the links that announced it, to ask in turn.
    sources: Vec<PublicKey>,
    /// When to ask the next one.
    deadline: Instant,
}

pub(super) fn ihave(id: PublicKey) -> GossipControl {
    GossipControl { kind: Some(Kind::Ihave(IHave { message_ids: vec![id.as_bytes().to_vec()] })) }
}

fn ids(raw: &[Vec<u8>]) -> impl Iterator<Item = PublicKey> + '_ {
    raw.iter().take(MAX_IDS).filter_map(|id| PublicKey::try_from_slice(id).ok())
}

/// Tree mode on one connection; made by [`Gossip::tree_extension`](super::Gossip::tree_extension).
#[derive(Debug)]
pub struct TreeExtension {
    shared: Arc<Shared>,
    open: Mutex<Option<Open>>,
}

#[derive(Debug)]
struct Open {
    session: PublicKey,
    _port: MessagePort,
}

impl TreeExtension {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, open: Mutex::new(None) }
    }

    fn end(&self) {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(open) = open {
            self.shared.lock().trees.remove(&open.session);
        }
    }
}

/// As for [`GossipExtension`](super::GossipExtension): a connection dropped unheard leaves too.
impl Drop for TreeExtension {
    fn drop(&mut self) {
        self.end();
    }
}

#[async_trait]
impl Extension for TreeExtension {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("control", Some(CONTENT_TYPE))?;
        let session = ctx.session();
        let (control, outgoing) = mpsc::channel::<GossipControl>(CONTROL_QUEUE);
        // In place before the first control message is read.
        self.shared.lock().trees.insert(session, TreeLink { control, eager: true });
        self.shared.start_grafting();
        let shared = Arc::downgrade(&self.shared);
        let port = MessagePort::run(port, outgoing, move |message: GossipControl| {
            let Some(shared) = shared.upgrade() else { return false };
            shared.control(session, message);
            true
        });
        let open = Open { session, _port: port };
        *self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(open);
        Ok(())
    }

    async fn on_close(&self, _error: Option<String>) {
        self.end();
    }

    async fn on_abort(&self, _error: Option<String>) {
        self.end();
    }
}

impl State {
    /// A duplicate came on `session`: an eager tree link there turns lazy, and the remote is told
    /// to do the same. Returns whether it did.
    pub(super) fn prune(&mut self, session: PublicKey) -> bool {
        match self.trees.get_mut(&session) {
            Some(tree) if tree.eager => {
                tree.eager = false;
                let _ = tree.control.try_send(GossipControl { kind: Some(Kind::Prune(Prune {})) });
                true
            }
            _ => false,
        }
    }
}

impl Shared {
    /// Starts the task that asks for missing messages, once.
    fn start_grafting(self: &Arc<Self>) {
        self.grafter.get_or_init(|| {
            let task = tokio::spawn(graft_missing(Arc::downgrade(self), self.grafting.clone()));
            AbortOnDropHandle::new(task)
        });
    }

    /// A control message came on the tree link `session`.
    fn control(&self, session: PublicKey, message: GossipControl) {
        let now = Instant::now();
        let mut state = self.lock();
        match message.kind {
            Some(Kind::Prune(Prune {})) => {
                if let Some(tree) = state.trees.get_mut(&session) {
                    tree.eager = false;
                }
            }
            Some(Kind::Ihave(IHave { message_ids })) => {
                let mut new = false;
                for id in ids(&message_ids) {
                    if state.seen.contains(&id) {
                        continue;
                    }
                    if !state.missing.contains_key(&id) && state.missing.len() >= MAX_MISSING {
                        break;
                    }
                    let deadline = now + self.config.graft_timeout;
                    let missing =
                        state.missing.entry(id).or_insert_with(|| Missing { sources: Vec::new(), deadline });
                    if missing.sources.len() < MAX_SOURCES && !missing.sources.contains(&session) {
                        missing.sources.push(session);
                        new = true;
                    }
                }
                if new {
                    self.grafting.notify_one();
                }
            }
            Some(Kind::Graft(Graft { message_ids })) => {
                let Some(connection) = state.connections.get(&session) else { return };
                for id in ids(&message_ids) {
                    if let Some(message) = state.cache.get(&id) {
                        let _ = connection.outbox.try_send(message.clone());
                    }
                }
                if let Some(tree) = state.trees.get_mut(&session) {
                    tree.eager = true;
                }
            }
            None => {}
        }
    }

    /// Asks for each missing message whose wait is over from the next link that announced it
    /// (making that link eager); returns when the next wait ends.
    fn graft_due(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        let due: Vec<PublicKey> =
            state.missing.iter().filter(|(_, m)| m.deadline <= now).map(|(id, _)| *id).collect();
        let mut grafts = 0;
        for id in due {
            let Some(missing) = state.missing.get_mut(&id) else { continue };
            let source = missing.sources.remove(0);
            if missing.sources.is_empty() {
                state.missing.remove(&id);
            } else {
                missing.deadline = now + self.config.graft_timeout;
            }
            if let Some(tree) = state.trees.get_mut(&source) {
                let graft = Graft { message_ids: vec![id.as_bytes().to_vec()] };
                if tree.control.try_send(GossipControl { kind: Some(Kind::Graft(graft)) }).is_ok() {
                    tree.eager = true;
                    grafts += 1;
                }
            }
        }
        let next = state.missing.values().map(|m| m.deadline).min();
        drop(state);
        if grafts > 0 {
            self.count(|stats| stats.grafts += grafts);
        }
        next
    }
}

/// Asks for missing messages as their waits end, until the gossip is gone.
async fn graft_missing(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = match shared.upgrade() {
            Some(shared) => shared.graft_due(Instant::now()),
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
