//! Invitations: a member lets a new peer into a party without either side sending the secret.
//!
//! The member makes an [`InvitationCode`]: an id, which names the swarm both join
//! ([`InvitationCode::topic`]), and a one-time secret. Over a connection in that swarm the two
//! run SPAKE2 with the secret as the password (see `proto/mesh/v1/invitation.proto`): each proves
//! it derived the same key, so someone without the secret learns nothing and gets one guess per
//! attempt, and a member that cannot prove it is not trusted by the guest either. The member then
//! issues the guest an [`Admission`] for its peer key, authenticated with the derived key. An
//! invitation is used once: redeemed, expired, or after [`ATTEMPTS`] failed tries, it is gone.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey, Signature};
use mesh_proto::mesh::v1::{
    InvitationClaim, InvitationGrant, InvitationMessage, InvitationRefused, InvitationReply, InvitationStart,
    invitation_message::Kind,
};
use mesh_teleport::{Extension, ExtensionContext, ExtensionError, Port};
use prost::Message;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tokio::sync::oneshot;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use super::admission::{Admission, Credential};

/// The extension's name.
pub const NAME: &str = "mesh.invitation";

/// Failed tries an invitation survives: each is one guess at the secret.
pub const ATTEMPTS: u32 = 3;

/// How long each step of the exchange may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message either side reads: an admission chain of a few credentials.
const MAX_MESSAGE: usize = 8 * 1024;

const ID_LEN: usize = 10;
const SECRET_LEN: usize = 10;
const CLAIM_DOMAIN: &[u8] = b"mesh.v1.InvitationClaim\n";

/// What a guest needs: the invitation's id and its one-time secret, written as 40 hex digits in
/// groups of five.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InvitationCode {
    id: [u8; ID_LEN],
    secret: [u8; SECRET_LEN],
}

impl InvitationCode {
    fn generate() -> Self {
        Self { id: rand::random(), secret: rand::random() }
    }

    /// The swarm where the invitation is redeemed.
    pub fn topic(&self) -> DiscoveryKey {
        DiscoveryKey::from_bytes(blake3::derive_key("mesh invitation topic v1", &self.id))
    }

    /// Both sides' SPAKE2 state, with the invitation id in their identities so that messages for
    /// one invitation are worth nothing for another.
    fn spake(&self, member: bool) -> (Spake2<Ed25519Group>, Vec<u8>) {
        let password = Password::new(self.secret);
        let guest = Identity::new(&[b"mesh invitation guest ".as_slice(), &self.id].concat());
        let host = Identity::new(&[b"mesh invitation member ".as_slice(), &self.id].concat());
        if member {
            Spake2::<Ed25519Group>::start_b(&password, &guest, &host)
        } else {
            Spake2::<Ed25519Group>::start_a(&password, &guest, &host)
        }
    }
}

impl fmt::Display for InvitationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = hex::encode([self.id.as_slice(), &self.secret].concat());
        let groups: Vec<&str> =
            digits.as_bytes().chunks(5).map(|g| std::str::from_utf8(g).unwrap_or("")).collect();
        f.write_str(&groups.join("-"))
    }
}

impl fmt::Debug for InvitationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        write!(f, "InvitationCode({})", hex::encode(self.id))
    }
}

impl FromStr for InvitationCode {
    type Err = InvitationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let bytes = hex::decode(digits).map_err(|_| InvitationError::BadCode)?;
        if bytes.len() != ID_LEN + SECRET_LEN {
            return Err(InvitationError::BadCode);
        }
        let (id, secret) = bytes.split_at(ID_LEN);
        Ok(Self {
            id: id.try_into().map_err(|_| InvitationError::BadCode)?,
            secret: secret.try_into().map_err(|_| InvitationError::BadCode)?,
        })
    }
}

/// Why an invitation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    /// The text is not an invitation code.
    #[error("not an invitation code: expected 40 hex digits")]
    BadCode,
    /// The other side does not know the same secret (a wrong code, or someone else's member).
    #[error("the other side does not know the invitation's secret")]
    WrongSecret,
    /// The member refused, with its reason.
    #[error("the invitation was refused: {0}")]
    Refused(String),
    /// The other side broke the exchange.
    #[error("the invitation exchange failed: {0}")]
    Protocol(String),
    /// The connection ended first.
    #[error("the connection ended before the invitation was redeemed")]
    Closed,
}

fn protocol(message: impl Into<String>) -> InvitationError {
    InvitationError::Protocol(message.into())
}

/// A member's open invitation.
#[derive(Debug)]
struct Pending {
    secret: [u8; SECRET_LEN],
    expires: Instant,
    attempts: u32,
}

/// What a member needs to issue admissions, and its open invitations.
#[derive(Debug)]
struct Host {
    issuer: Keypair,
    party: PublicKey,
    /// The issuer's own chain from the party key, unless the issuer is the party key.
    chain: Option<Admission>,
    pending: Mutex<HashMap<[u8; ID_LEN], Pending>>,
    granted: tokio::sync::watch::Sender<Vec<PublicKey>>,
}

/// A member's invitations: [`Invitations::create`] makes codes, [`Invitations::extension`] serves
/// them on the connections of their swarms.
#[derive(Debug, Clone)]
pub struct Invitations {
    host: Arc<Host>,
}

impl Invitations {
    /// Invitations to `party`, whose admissions `issuer` signs: the party key itself (`chain`
    /// `None`), or a delegate with its own chain from the party key.
    pub fn new(issuer: Keypair, party: PublicKey, chain: Option<Admission>) -> Self {
        let host = Host {
            issuer,
            party,
            chain,
            pending: Mutex::default(),
            granted: tokio::sync::watch::Sender::default(),
        };
        Self { host: Arc::new(host) }
    }

    /// A new invitation, valid for `valid_for` or until redeemed.
    pub fn create(&self, valid_for: Duration) -> InvitationCode {
        let code = InvitationCode::generate();
        let pending =
            Pending { secret: code.secret, expires: Instant::now() + valid_for, attempts: ATTEMPTS };
        self.host.lock().insert(code.id, pending);
        code
    }

    /// The peers admitted so far, as it changes.
    pub fn granted(&self) -> tokio::sync::watch::Receiver<Vec<PublicKey>> {
        self.host.granted.subscribe()
    }

    /// The extension for one connection of an invitation swarm.
    pub fn extension(&self) -> InvitationExtension {
        InvitationExtension { role: Role::Member(self.host.clone()), task: Mutex::default() }
    }
}

impl Host {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; ID_LEN], Pending>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one attempt of invitation `id`; its secret if it is still open.
    fn attempt(&self, id: &[u8]) -> Option<[u8; SECRET_LEN]> {
        let id: [u8; ID_LEN] = id.try_into().ok()?;
        let mut pending = self.lock();
        pending.retain(|_, invitation| invitation.expires > Instant::now() && invitation.attempts > 0);
        let invitation = pending.get_mut(&id)?;
        invitation.attempts -= 1;
        Some(invitation.secret)
    }

    /// Uses invitation `id` up; false if it is gone already.
    fn redeem(&self, id: &[u8; ID_LEN]) -> bool {
        self.lock().remove(id).is_some()
    }

    fn admission_for(&self, guest: PublicKey) -> Admission {
        let credential = Credential::issue(&self.issuer, self.party, guest, None, false);
        match &self.chain {
            None => Admission::direct(credential),
            Some(chain) => chain.clone().extended(credential),
        }
    }
}

/// A guest's redemption of a code: add [`Redemption::extension`] to the connections of
/// [`InvitationCode::topic`]'s swarm, and await [`Redemption::admission`].
#[derive(Debug)]
pub struct Redemption {
    code: InvitationCode,
    keypair: Keypair,
    outcome: Mutex<Option<oneshot::Sender<Result<Admission, InvitationError>>>>,
    admission: Mutex<Option<oneshot::Receiver<Result<Admission, InvitationError>>>>,
}

impl Redemption {
    /// Redeems `code` for `keypair`'s peer key.
    pub fn new(code: InvitationCode, keypair: Keypair) -> Arc<Self> {
        let (sender, receiver) = oneshot::channel();
        Arc::new(Self {
            code,
            keypair,
            outcome: Mutex::new(Some(sender)),
            admission: Mutex::new(Some(receiver)),
        })
    }

    /// The extension for a connection to a member (the first one that answers is used).
    pub fn extension(self: &Arc<Self>) -> InvitationExtension {
        InvitationExtension { role: Role::Guest(self.clone()), task: Mutex::default() }
    }

    /// The admission, once a member granted it; an error if the exchange failed.
    pub async fn admission(&self) -> Result<Admission, InvitationError> {
        let receiver = self.admission.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match receiver {
            Some(receiver) => receiver.await.unwrap_or(Err(InvitationError::Closed)),
            None => Err(protocol("the admission was awaited already")),
        }
    }

    fn finish(&self, outcome: Result<Admission, InvitationError>) {
        if let Some(sender) = self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            let _ = sender.send(outcome);
        }
    }
}

#[derive(Debug)]
enum Role {
    Member(Arc<Host>),
    Guest(Arc<Redemption>),
}

/// The invitation exchange on one connection. Its task ends by itself when the connection does
/// (after reading what arrived before the close, so a grant followed at once by a close is not
/// lost), or when the extension is dropped.
#[derive(Debug)]
pub struct InvitationExtension {
    role: Role,
    task: Mutex<Option<AbortOnDropHandle<()>>>,
}

#[async_trait]
impl Extension for InvitationExtension {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("invitation", None)?;
        let task = match &self.role {
            Role::Member(host) => tokio::spawn(serve(host.clone(), port, ctx)),
            Role::Guest(redemption) => tokio::spawn(redeem(redemption.clone(), port, ctx)),
        };
        *self.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(AbortOnDropHandle::new(task));
        Ok(())
    }
}

async fn send(port: &Port, kind: Kind) -> Result<(), InvitationError> {
    let message = InvitationMessage { kind: Some(kind) };
    port.send(message.encode_to_vec().into()).await.map_err(|_| InvitationError::Closed)
}

async fn receive(port: &Port) -> Result<Kind, InvitationError> {
    let bytes = tokio::time::timeout(STEP_TIMEOUT, port.recv())
        .await
        .map_err(|_| protocol(format!("no answer within {STEP_TIMEOUT:?}")))?
        .ok_or(InvitationError::Closed)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(protocol("an oversized message"));
    }
    match InvitationMessage::decode(bytes).map_err(|_| protocol("an undecodable message"))?.kind {
        Some(Kind::Refused(InvitationRefused { reason })) => Err(InvitationError::Refused(reason)),
        Some(kind) => Ok(kind),
        None => Err(protocol("an empty message")),
    }
}

fn mac(key: &[u8; 32], label: &[u8], parts: &[&[u8]]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(label);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize()
}

fn derived_key(spake: Spake2<Ed25519Group>, remote: &[u8]) -> Result<[u8; 32], InvitationError> {
    let key = spake.finish(remote).map_err(|_| protocol("a malformed SPAKE2 message"))?;
    key.try_into().map_err(|_| protocol("an unexpected SPAKE2 key length"))
}

/// The member's side: check the guest's secret, then grant it an admission.
async fn serve(host: Arc<Host>, port: Port, ctx: ExtensionContext) {
    match serve_one(&host, &port, ctx.remote_peer()).await {
        Ok(guest) => {
            debug!(guest = %guest.short(), "invitation redeemed");
            host.granted.send_modify(|granted| granted.push(guest));
        }
        Err(err) => {
            warn!(remote = %ctx.remote_peer().short(), %err, "invitation refused");
            let _ = send(&port, Kind::Refused(InvitationRefused { reason: err.to_string() })).await;
            ctx.close(Some(err.to_string()));
        }
    }
}

async fn serve_one(host: &Host, port: &Port, remote: PublicKey) -> Result<PublicKey, InvitationError> {
    let Kind::Start(InvitationStart { id, spake: guest_message }) = receive(port).await? else {
        return Err(protocol("expected the guest's start"));
    };
    let secret =
        host.attempt(&id).ok_or_else(|| InvitationError::Refused("no such open invitation".into()))?;
    let id: [u8; ID_LEN] = id.as_slice().try_into().map_err(|_| protocol("a malformed invitation id"))?;
    let code = InvitationCode { id, secret };
    let (spake, own_message) = code.spake(true);
    let key = derived_key(spake, &guest_message)?;
    let confirm = mac(&key, b"member", &[&guest_message, &own_message]);
    send(
        port,
        Kind::Reply(InvitationReply { spake: own_message.clone(), confirm: confirm.as_bytes().to_vec() }),
    )
    .await?;

    let Kind::Claim(InvitationClaim { confirm, peer, signature }) = receive(port).await? else {
        return Err(protocol("expected the guest's claim"));
    };
    if blake3::Hash::from_slice(&confirm).ok() != Some(mac(&key, b"guest", &[&guest_message, &own_message])) {
        return Err(InvitationError::WrongSecret);
    }
    let guest = PublicKey::try_from_slice(&peer).map_err(|_| protocol("a malformed peer key"))?;
    if guest != remote {
        return Err(protocol("the claim is for another peer than this connection's"));
    }
    let signature = Signature::try_from_slice(&signature).map_err(|_| protocol("a malformed signature"))?;
    guest
        .verify(&[CLAIM_DOMAIN, confirm.as_slice()].concat(), &signature)
        .map_err(|_| protocol("the guest did not sign its claim"))?;
    if !host.redeem(&id) {
        return Err(InvitationError::Refused("the invitation was used already".into()));
    }
    let admission = host.admission_for(guest).to_wire();
    let grant_mac = mac(&key, b"grant", &[&admission.encode_to_vec()]);
    send(
        port,
        Kind::Grant(InvitationGrant { admission: Some(admission), mac: grant_mac.as_bytes().to_vec() }),
    )
    .await?;
    Ok(guest)
}

/// The guest's side: prove the secret, check the member's proof, take the admission.
async fn redeem(redemption: Arc<Redemption>, port: Port, ctx: ExtensionContext) {
    let outcome = redeem_one(&redemption, &port).await;
    if let Err(err) = &outcome {
        warn!(remote = %ctx.remote_peer().short(), %err, "invitation not redeemed");
        if *err != InvitationError::Closed && !matches!(err, InvitationError::Refused(_)) {
            let _ = send(&port, Kind::Refused(InvitationRefused { reason: err.to_string() })).await;
        }
        ctx.close(Some(err.to_string()));
    }
    redemption.finish(outcome);
}

async fn redeem_one(redemption: &Redemption, port: &Port) -> Result<Admission, InvitationError> {
    let code = redemption.code;
    let (spake, own_message) = code.spake(false);
    send(port, Kind::Start(InvitationStart { id: code.id.to_vec(), spake: own_message.clone() })).await?;
    let Kind::Reply(InvitationReply { spake: member_message, confirm }) = receive(port).await? else {
        return Err(protocol("expected the member's reply"));
    };
    let key = derived_key(spake, &member_message)?;
    let expected = mac(&key, b"member", &[&own_message, &member_message]);
    if blake3::Hash::from_slice(&confirm).ok() != Some(expected) {
        return Err(InvitationError::WrongSecret);
    }
    let confirm = mac(&key, b"guest", &[&own_message, &member_message]).as_bytes().to_vec();
    let signature = redemption.keypair.sign(&[CLAIM_DOMAIN, confirm.as_slice()].concat());
    let peer = redemption.keypair.public();
    send(
        port,
        Kind::Claim(InvitationClaim {
            confirm,
            peer: peer.as_bytes().to_vec(),
            signature: signature.as_bytes().to_vec(),
        }),
    )
    .await?;
    let Kind::Grant(InvitationGrant { admission: Some(admission), mac: grant_mac }) = receive(port).await?
    else {
        return Err(protocol("expected the member's grant"));
    };
    if blake3::Hash::from_slice(&grant_mac).ok() != Some(mac(&key, b"grant", &[&admission.encode_to_vec()])) {
        return Err(protocol("the grant is not authenticated"));
    }
    let admission = Admission::from_wire(&admission).map_err(|err| protocol(err.to_string()))?;
    let party = admission.party().ok_or_else(|| protocol("an empty admission"))?;
    admission
        .verify(party, peer, std::time::SystemTime::now(), &|_| false)
        .map_err(|err| protocol(format!("the granted admission does not hold: {err}")))?;
    Ok(admission)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn codes_read_back_and_keep_their_secret_out_of_debug() {
        let code = InvitationCode::generate();
        let text = code.to_string();
        assert_eq!(text.len(), 40 + 7, "40 digits in groups of five");
        assert_eq!(text.parse::<InvitationCode>().unwrap(), code);
        assert_eq!(text.replace('-', "").parse::<InvitationCode>().unwrap(), code);
        assert!(!format!("{code:?}").contains(&hex::encode(code.secret)));
        assert_eq!("1234".parse::<InvitationCode>(), Err(InvitationError::BadCode));
        assert_eq!("zz".repeat(20).parse::<InvitationCode>(), Err(InvitationError::BadCode));
        assert_ne!(code.topic(), InvitationCode::generate().topic());
    }
}
