//! The extension host: what a remote may register, which connection an extension runs on, what it
//! is told when the connection ends, and that its `on_open` cannot outlive the connection.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use common::{Alive, pair, pair_with};
use mesh_keys::PublicKey;
use mesh_teleport::control::{MAX_EXTENSION_NAME_LEN, MAX_REMOTE_EXTENSIONS};
use mesh_teleport::{
    CloseReason, Extension, ExtensionContext, ExtensionError, Params, ProtocolError, Teleport,
};
use tokio::sync::mpsc;

/// What an extension saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Opened { name: String, session: PublicKey },
    Closed(Option<String>),
    Aborted(Option<String>),
}

/// Reports everything it sees.
struct Recorder(mpsc::UnboundedSender<Seen>);

#[async_trait]
impl Extension for Recorder {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let _ = self.0.send(Seen::Opened { name: ctx.name().to_owned(), session: ctx.session() });
        Ok(())
    }

    async fn on_close(&self, error: Option<String>) {
        let _ = self.0.send(Seen::Closed(error));
    }

    async fn on_abort(&self, error: Option<String>) {
        let _ = self.0.send(Seen::Aborted(error));
    }
}

async fn closed_within(teleport: &Teleport) -> CloseReason {
    tokio::time::timeout(Duration::from_secs(60), teleport.closed()).await.expect("the connection ends")
}

#[tokio::test]
async fn a_remote_registering_more_extensions_than_the_cap_is_cut_off() {
    let (attacker, victim) = pair();
    let (tx, _seen) = mpsc::unbounded_channel();
    for i in 0..=MAX_REMOTE_EXTENSIONS {
        attacker.add_extension(&format!("e{i}"), Recorder(tx.clone())).unwrap();
    }
    let reason = closed_within(&victim).await;
    assert_eq!(reason, CloseReason::Protocol(ProtocolError::TooManyExtensions(MAX_REMOTE_EXTENSIONS)));
    // The remote is told why.
    match closed_within(&attacker).await {
        CloseReason::Remote(Some(error)) => assert!(error.contains("extensions"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_remote_may_register_as_many_extensions_as_the_cap() {
    let (a, b) = pair();
    let (tx, mut seen) = mpsc::unbounded_channel();
    for i in 0..MAX_REMOTE_EXTENSIONS {
        a.add_extension(&format!("e{i}"), Recorder(tx.clone())).unwrap();
        b.add_extension(&format!("e{i}"), Recorder(tx.clone())).unwrap();
    }
    for _ in 0..2 * MAX_REMOTE_EXTENSIONS {
        assert!(matches!(seen.recv().await, Some(Seen::Opened { .. })));
    }
    assert!(!a.is_closed() && !b.is_closed());
}

#[tokio::test]
async fn an_extension_name_over_the_length_cap_is_refused_and_cuts_the_remote_off() {
    let (a, b) = pair();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let longest = "x".repeat(MAX_EXTENSION_NAME_LEN);
    a.add_extension(&longest, Recorder(tx.clone())).unwrap();
    b.add_extension(&longest, Recorder(tx.clone())).unwrap();
    for _ in 0..2 {
        assert!(matches!(seen.recv().await, Some(Seen::Opened { .. })));
    }
    a.add_extension(&"y".repeat(MAX_EXTENSION_NAME_LEN + 1), Recorder(tx)).unwrap();
    let reason = closed_within(&b).await;
    assert_eq!(
        reason,
        CloseReason::Protocol(ProtocolError::ExtensionNameTooLong {
            len: MAX_EXTENSION_NAME_LEN + 1,
            limit: MAX_EXTENSION_NAME_LEN
        })
    );
}

#[tokio::test]
async fn extensions_are_told_why_the_connection_ended_in_plain_words() {
    let (a, b) = pair();
    let (tx_a, mut seen_a) = mpsc::unbounded_channel();
    let (tx_b, mut seen_b) = mpsc::unbounded_channel();
    a.add_extension("x", Recorder(tx_a)).unwrap();
    b.add_extension("x", Recorder(tx_b)).unwrap();
    assert!(matches!(seen_a.recv().await, Some(Seen::Opened { .. })));
    assert!(matches!(seen_b.recv().await, Some(Seen::Opened { .. })));
    a.destroy();
    assert_eq!(seen_a.recv().await, Some(Seen::Aborted(Some("destroyed".into()))));
    assert!(closed_within(&b).await.is_clean());
    match seen_b.recv().await {
        Some(Seen::Closed(None)) => {}
        Some(Seen::Closed(Some(error))) => assert_eq!(error, "closed by the remote"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn each_connection_has_its_own_session_and_its_extensions_see_it() {
    // Both ends of one connection share the session, as a swarm's two sides do.
    let session = PublicKey::random();
    let (a, b) = pair_with(|params| Params { session, ..params });
    let other = Params::new(true, a.local_peer(), b.local_peer());
    assert_ne!(other.session, a.session(), "a new connection between the same peers is another session");
    let (tx, mut seen) = mpsc::unbounded_channel();
    a.add_extension("x", Recorder(tx.clone())).unwrap();
    b.add_extension("x", Recorder(tx)).unwrap();
    for _ in 0..2 {
        assert_eq!(seen.recv().await, Some(Seen::Opened { name: "x".into(), session: a.session() }));
    }
    assert_eq!((a.session(), b.session()), (session, session));
}

/// An extension whose `on_open` waits forever.
struct NeverOpens(Alive);

#[async_trait]
impl Extension for NeverOpens {
    async fn on_open(&self, _ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let _guard = self.0.guard();
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn an_on_open_that_never_returns_ends_with_its_connection() {
    let (a, b) = pair();
    let alive = Alive::new();
    a.add_extension("stuck", NeverOpens(alive.clone())).unwrap();
    b.add_extension("stuck", NeverOpens(alive.clone())).unwrap();
    alive.until(2).await;
    a.destroy();
    tokio::time::timeout(Duration::from_secs(60), alive.until(0))
        .await
        .expect("on_open still running after its connection ended");
    assert!(b.closed().await.is_clean());
}
