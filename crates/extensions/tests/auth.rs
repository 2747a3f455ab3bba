//! Connection authentication between two Teleports: members of a party prove their keys and
//! present their admissions, and only then add the party's extension; an impostor key, a missing
//! credential, an expired credential and a revoked delegation are each refused, the connection
//! closes, and the party's extension never opens for them, so no party data reaches them.
#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use mesh_extensions::auth::{Admission, Authenticator, Credential, PartyPolicy};
use mesh_keys::{Keypair, PublicKey};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Params, Teleport};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);
const PARTY_DATA: &str = "party.data";

/// The party's own extension: sends a secret when it opens, reports what it receives.
struct PartyData {
    received: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait]
impl Extension for PartyData {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = Arc::new(ctx.create_port("data", None)?);
        let received = self.received.clone();
        let reader = port.clone();
        tokio::spawn(async move {
            while let Some(message) = reader.recv().await {
                let _ = received.send(message.to_vec());
            }
        });
        let _ = port.send(b"party secret".to_vec().into()).await;
        Ok(())
    }
}

/// One side: its Teleport, whether it let the remote in, and the party data it received.
struct Side {
    teleport: Teleport,
    admitted: mpsc::UnboundedReceiver<PublicKey>,
    data: mpsc::UnboundedReceiver<Vec<u8>>,
}

fn side(teleport: Teleport, auth: &Arc<Authenticator>) -> Side {
    let (admitted_tx, admitted) = mpsc::unbounded_channel();
    let (data_tx, data) = mpsc::unbounded_channel();
    let after = teleport.clone();
    auth.attach(&teleport, Some([42; 32]), move |remote| {
        let _ = admitted_tx.send(remote);
        after.add_extension(PARTY_DATA, PartyData { received: data_tx }).unwrap();
    })
    .unwrap();
    Side { teleport, admitted, data }
}

/// Connects `a` (key `a_key`) to `b`, which claims the key `b_claims` to `a`.
fn connect(
    a_key: PublicKey,
    a: &Arc<Authenticator>,
    b_claims: PublicKey,
    b: &Arc<Authenticator>,
) -> (Side, Side) {
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let a_end = Teleport::new(a_io, Params::new(true, a_key, b_claims));
    let b_end = Teleport::new(b_io, Params::new(false, b_claims, a_key));
    (side(a_end, a), side(b_end, b))
}

struct Party {
    key: Keypair,
    policy: PartyPolicy,
}

impl Party {
    fn new() -> Self {
        let key = Keypair::generate();
        let policy = PartyPolicy::new(key.public());
        Self { key, policy }
    }

    /// A member admitted directly by the party key, until `until`.
    fn member(&self, until: Option<SystemTime>) -> (Keypair, Arc<Authenticator>) {
        let member = Keypair::generate();
        let credential = Credential::issue(&self.key, self.key.public(), member.public(), until, false);
        let auth = Authenticator::new(member.clone())
            .with_admission(Admission::direct(credential))
            .with_policy(self.policy.clone());
        (member, Arc::new(auth))
    }
}

async fn admitted(side: &mut Side) -> PublicKey {
    tokio::time::timeout(PATIENCE, side.admitted.recv()).await.expect("admitted in time").unwrap()
}

/// `refuser` refuses its remote: the connection closes, and neither side's party data opens.
async fn refused(mut refuser: Side, mut other: Side, auth: &Authenticator) {
    tokio::time::timeout(PATIENCE, refuser.teleport.closed()).await.expect("closed in time");
    assert_eq!(auth.stats(), mesh_extensions::auth::AuthStats { passed: 0, refused: 1 });
    assert!(refuser.admitted.try_recv().is_err(), "the refused remote was never admitted");
    let _ = tokio::time::timeout(PATIENCE, other.teleport.closed()).await.expect("the other side closed too");
    assert!(other.data.try_recv().is_err(), "no party data reached the refused side");
    assert!(refuser.data.try_recv().is_err());
}

#[tokio::test]
async fn members_prove_their_keys_then_exchange_party_data() {
    let party = Party::new();
    let ((alice, a), (bob, b)) = (party.member(None), party.member(None));
    let (mut x, mut y) = connect(alice.public(), &a, bob.public(), &b);
    assert_eq!(admitted(&mut x).await, bob.public());
    assert_eq!(admitted(&mut y).await, alice.public());
    let secret = tokio::time::timeout(PATIENCE, y.data.recv()).await.unwrap().unwrap();
    assert_eq!(secret, b"party secret");
    let secret = tokio::time::timeout(PATIENCE, x.data.recv()).await.unwrap().unwrap();
    assert_eq!(secret, b"party secret");
    assert_eq!((a.stats().passed, a.stats().refused), (1, 0));
}

#[tokio::test]
async fn an_impostor_key_is_refused() {
    let party = Party::new();
    let ((alice, a), (victim, _)) = (party.member(None), party.member(None));
    // The impostor claims a member's key, and holds a valid admission of its own, but not the
    // member's secret key.
    let (_, impostor) = party.member(None);
    let (x, y) = connect(alice.public(), &a, victim.public(), &impostor);
    refused(x, y, &a).await;
}

#[tokio::test]
async fn a_missing_credential_is_refused() {
    let party = Party::new();
    let (alice, a) = party.member(None);
    let stranger = Keypair::generate();
    let b = Arc::new(Authenticator::new(stranger.clone()).with_policy(party.policy.clone()));
    let (x, y) = connect(alice.public(), &a, stranger.public(), &b);
    refused(x, y, &a).await;
}

#[tokio::test]
async fn an_expired_credential_is_refused() {
    let party = Party::new();
    let (alice, a) = party.member(None);
    let (late, b) = party.member(Some(SystemTime::now() - Duration::from_secs(60)));
    let (x, y) = connect(alice.public(), &a, late.public(), &b);
    refused(x, y, &a).await;
}

#[tokio::test]
async fn a_revoked_delegation_is_refused() {
    let party = Party::new();
    let (alice, a) = party.member(None);
    let delegate = Keypair::generate();
    let member = Keypair::generate();
    let admission =
        Admission::direct(Credential::issue(&party.key, party.key.public(), delegate.public(), None, true))
            .extended(Credential::issue(&delegate, party.key.public(), member.public(), None, false));
    let b = Arc::new(
        Authenticator::new(member.clone()).with_admission(admission).with_policy(party.policy.clone()),
    );
    party.policy.revoke(delegate.public());
    let (x, y) = connect(alice.public(), &a, member.public(), &b);
    refused(x, y, &a).await;
}

#[tokio::test]
async fn a_remote_that_does_not_authenticate_is_refused_in_time() {
    let party = Party::new();
    let (alice, _) = party.member(None);
    let member = Keypair::generate();
    let credential = Credential::issue(&party.key, party.key.public(), alice.public(), None, false);
    let a = Arc::new(
        Authenticator::new(alice.clone())
            .with_admission(Admission::direct(credential))
            .with_policy(party.policy.clone())
            .with_timeout(Duration::from_millis(200)),
    );
    // The remote runs Teleport, and the party's extension, but never the auth extension: as a
    // DXOS peer would.
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let refuser = side(Teleport::new(a_io, Params::new(true, alice.public(), member.public())), &a);
    let silent = Teleport::new(b_io, Params::new(false, member.public(), alice.public()));
    let (data_tx, data) = mpsc::unbounded_channel();
    silent.add_extension(PARTY_DATA, PartyData { received: data_tx }).unwrap();
    let (_, admitted) = mpsc::unbounded_channel();
    let other = Side { teleport: silent, admitted, data };
    refused(refuser, other, &a).await;
}
