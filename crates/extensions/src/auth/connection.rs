//! Connection authentication: on extension `dxos.mesh.teleport.auth`, each side sends the other
//! a fresh challenge through `AuthService.Authenticate` and checks the answer: a
//! `mesh.v1.ConnectionProof`, the remote's signature over the challenge and the connection's
//! binding, and, in a party that asks for it, the remote's admission.
//!
//! The binding is the transport's ([`ChannelBinding`]): both DTLS fingerprints on WebRTC, the
//! link nonces on an authenticated TCP link. A proof is therefore worth nothing on any other
//! connection, nor for any other challenge, and someone relaying between two peers leaves them
//! with different bindings. A transport without a binding falls back to the connection's session
//! id, which still makes every proof single-use but does not stop a relay.
//!
//! Until this side has checked the remote, nothing else should run: [`Authenticator::attach`]
//! takes what to do once the remote passed (add the party's other extensions). A remote that
//! fails, or does not authenticate in time, is logged, counted, and the connection is closed with
//! the reason; the swarm's backoff then spaces out its next attempts.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use mesh_keys::{Keypair, PublicKey, Signature};
use mesh_proto::{
    dxos::mesh::teleport::auth::{AuthenticateRequest, AuthenticateResponse},
    mesh::v1 as wire,
};
use mesh_teleport::{
    Extension, ExtensionContext, ExtensionError, RpcError, Teleport,
    muxer::RPC_CONTENT_TYPE,
    rpc::{RpcConfig, RpcPeer},
    service::Router,
};
use prost::Message;
use tokio::sync::{oneshot, watch};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use super::admission::{Admission, AdmissionError};

/// The extension's name, as DXOS names its auth extension.
pub const NAME: &str = "dxos.mesh.teleport.auth";

const AUTHENTICATE: &str = "dxos.mesh.teleport.auth.AuthService.Authenticate";

/// What a prover signs before the rest: no signature made for anything else can pass for a proof.
const DOMAIN: &[u8] = b"mesh.v1.ConnectionProof\n";

/// The length of a challenge. Other lengths are refused, so that this side signs nothing but
/// proofs of the one shape.
pub const CHALLENGE_LEN: usize = 32;

/// How long the remote has to answer the challenge unless configured otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A party's rule for who may connect: members admitted by the party key, minus revoked keys.
#[derive(Debug, Clone)]
pub struct PartyPolicy {
    party: PublicKey,
    revoked: Arc<RwLock<HashSet<PublicKey>>>,
}

impl PartyPolicy {
    /// Members of `party` only.
    pub fn new(party: PublicKey) -> Self {
        Self { party, revoked: Arc::default() }
    }

    /// The party.
    pub fn party(&self) -> PublicKey {
        self.party
    }

    /// Refuses `key` from now on: as a member, and as a delegate, so that everyone it admitted is
    /// refused too. Open connections are not closed by this.
    pub fn revoke(&self, key: PublicKey) {
        self.revoked.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key);
    }

    fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(key)
    }
}

/// Counts of remotes checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Remotes that proved their key (and admission).
    pub passed: u64,
    /// Remotes refused.
    pub refused: u64,
}

/// This peer's side of connection authentication, shared by all its connections.
#[derive(Debug)]
pub struct Authenticator {
    keypair: Keypair,
    admission: Option<Admission>,
    policy: Option<PartyPolicy>,
    timeout: Duration,
    stats: watch::Sender<AuthStats>,
}

impl Authenticator {
    /// Proves `keypair`'s key to remotes and accepts any remote that proves its own.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            admission: None,
            policy: None,
            timeout: DEFAULT_TIMEOUT,
            stats: watch::Sender::default(),
        }
    }

    /// Presents `admission` to remotes with every proof.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Accepts only remotes that `policy` admits.
    pub fn with_policy(mut self, policy: PartyPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// How long a remote has to answer the challenge.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Remotes passed and refused so far.
    pub fn stats(&self) -> AuthStats {
        *self.stats.borrow()
    }

    /// [`Authenticator::stats`], as it changes.
    pub fn watch_stats(&self) -> watch::Receiver<AuthStats> {
        self.stats.subscribe()
    }

    /// Authenticates the remote of `teleport`, whose transport gave `binding` (or none): adds the
    /// extension, and `then` runs once the remote passed, with its key; it never runs for a remote
    /// that failed. The remote has [`Authenticator::with_timeout`] from now: one that never opens
    /// the extension (a DXOS peer, or a mesh peer that does not authenticate) is refused then.
    pub fn attach(
        self: &Arc<Self>,
        teleport: &Teleport,
        binding: Option<[u8; 32]>,
        then: impl FnOnce(PublicKey) + Send + 'static,
    ) -> Result<(), ExtensionError> {
        let (decided, on_decided) = oneshot::channel();
        let extension = ConnectionAuth {
            shared: self.clone(),
            binding,
            then: Mutex::new(Some((Box::new(then), decided))),
            open: Mutex::default(),
        };
        teleport.add_extension(NAME, extension)?;
        let (shared, teleport) = (self.clone(), teleport.clone());
        tokio::spawn(async move {
            tokio::select! {
                // Decided by the challenge, or the extension is gone with its connection.
                _ = on_decided => {}
                _ = teleport.closed() => {}
                () = tokio::time::sleep(shared.timeout) => {
                    let err = AuthError::NoAnswer(format!("the remote did not authenticate within {:?}", shared.timeout));
                    shared.refused(teleport.remote_peer(), &err);
                    teleport.close_with(Some(err.to_string())).await;
                }
            }
        });
        Ok(())
    }

    fn refused(&self, remote: PublicKey, err: &AuthError) {
        self.stats.send_modify(|stats| stats.refused += 1);
        warn!(remote = %remote.short(), %err, "remote refused");
    }

    /// This side's proof for `challenge` from `verifier` on a connection bound to `binding`.
    fn prove(&self, binding: &[u8; 32], challenge: &[u8], verifier: PublicKey) -> Result<Vec<u8>, RpcError> {
        if challenge.len() != CHALLENGE_LEN {
            return Err(RpcError::Malformed(format!(
                "a challenge of {} bytes, not {CHALLENGE_LEN}",
                challenge.len()
            )));
        }
        let signature = self.keypair.sign(&transcript(binding, challenge, self.keypair.public(), verifier));
        let proof = wire::ConnectionProof {
            signature: signature.as_bytes().to_vec(),
            admission: self.admission.as_ref().map(Admission::to_wire),
        };
        Ok(proof.encode_to_vec())
    }

    /// Checks the remote's answer to `challenge`.
    fn check(
        &self,
        binding: &[u8; 32],
        challenge: &[u8; CHALLENGE_LEN],
        remote: PublicKey,
        answer: &[u8],
    ) -> Result<(), AuthError> {
        let proof = wire::ConnectionProof::decode(answer).map_err(|_| AuthError::Malformed)?;
        let signature = Signature::try_from_slice(&proof.signature).map_err(|_| AuthError::Malformed)?;
        remote
            .verify(&transcript(binding, challenge, remote, self.keypair.public()), &signature)
            .map_err(|_| AuthError::BadProof)?;
        if let Some(policy) = &self.policy {
            let admission = proof.admission.as_ref().ok_or(AuthError::NoAdmission)?;
            Admission::from_wire(admission)?
                .verify(policy.party, remote, SystemTime::now(), &|key| policy.is_revoked(key))?;
        }
        Ok(())
    }
}

fn transcript(binding: &[u8; 32], challenge: &[u8], prover: PublicKey, verifier: PublicKey) -> Vec<u8> {
    [DOMAIN, binding, challenge, prover.as_bytes(), verifier.as_bytes()].concat()
}

/// Why a remote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The answer is not a connection proof.
    #[error("the remote's answer is not a connection proof")]
    Malformed,
    /// The signature does not hold for the remote's key, this challenge and this connection.
    #[error("the remote did not prove it holds its key on this connection")]
    BadProof,
    /// The party asks for an admission and the remote sent none.
    #[error("the remote presented no admission to the party")]
    NoAdmission,
    /// The remote's admission was refused.
    #[error("the remote's admission was refused: {0}")]
    Admission(#[from] AdmissionError),
    /// The remote did not answer in time, or the call failed.
    #[error("the remote did not answer the challenge: {0}")]
    NoAnswer(String),
}

type Then = Box<dyn FnOnce(PublicKey) + Send>;

/// Connection authentication on one connection; added by [`Authenticator::attach`].
struct ConnectionAuth {
    shared: Arc<Authenticator>,
    binding: Option<[u8; 32]>,
    /// What to run once the remote passed, and where to say that the remote was decided on.
    then: Mutex<Option<(Then, oneshot::Sender<()>)>>,
    open: Mutex<Option<(RpcPeer, AbortOnDropHandle<()>)>>,
}

impl std::fmt::Debug for ConnectionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionAuth").field("bound", &self.binding.is_some()).finish_non_exhaustive()
    }
}

#[async_trait]
impl Extension for ConnectionAuth {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        // Without a transport binding, the session id: still one value per connection.
        let binding = self.binding.unwrap_or(*ctx.session().as_bytes());
        let remote = ctx.remote_peer();
        let prover = self.shared.clone();
        let router = Router::new().route(AUTHENTICATE, move |request: AuthenticateRequest| {
            let answer = prover.prove(&binding, &request.challenge, remote);
            async move { answer.map(|credential| AuthenticateResponse { credential }) }
        });
        let rpc = RpcPeer::new(ctx.create_port("rpc", Some(RPC_CONTENT_TYPE))?, router, RpcConfig::default());
        let then = self.then.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let checking = tokio::spawn(challenge(self.shared.clone(), rpc.clone(), ctx, binding, then));
        *self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((rpc, AbortOnDropHandle::new(checking)));
        Ok(())
    }

    async fn on_close(&self, _error: Option<String>) {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some((rpc, _checking)) = open {
            rpc.close().await;
        }
    }

    async fn on_abort(&self, _error: Option<String>) {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some((rpc, _checking)) = open {
            rpc.abort();
        }
    }
}

/// Challenges the remote and acts on the answer: `then` on success, closing the connection on
/// failure.
async fn challenge(
    shared: Arc<Authenticator>,
    rpc: RpcPeer,
    ctx: ExtensionContext,
    binding: [u8; 32],
    then: Option<(Then, oneshot::Sender<()>)>,
) {
    let remote = ctx.remote_peer();
    let challenge: [u8; CHALLENGE_LEN] = rand::random();
    let asked = async {
        rpc.open().await?;
        rpc.call_typed::<_, AuthenticateResponse>(
            AUTHENTICATE,
            &AuthenticateRequest { challenge: challenge.to_vec() },
        )
        .await
    };
    let outcome = match tokio::time::timeout(shared.timeout, asked).await {
        Ok(Ok(answer)) => shared.check(&binding, &challenge, remote, &answer.credential),
        Ok(Err(err)) => Err(AuthError::NoAnswer(err.to_string())),
        Err(_) => Err(AuthError::NoAnswer(format!("no answer within {:?}", shared.timeout))),
    };
    let Some((then, decided)) = then else { return };
    let _ = decided.send(());
    match outcome {
        Ok(()) => {
            shared.stats.send_modify(|stats| stats.passed += 1);
            debug!(remote = %remote.short(), "remote authenticated");
            then(remote);
        }
        Err(err) => {
            shared.refused(remote, &err);
            ctx.close(Some(err.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_challenge_binding_and_keys() {
        let (alice, bob) =
            (Arc::new(Authenticator::new(Keypair::generate())), Authenticator::new(Keypair::generate()));
        let (binding, challenge) = ([7u8; 32], [9u8; CHALLENGE_LEN]);
        let proof = alice.prove(&binding, &challenge, bob.keypair.public()).unwrap();
        let alice_key = alice.keypair.public();
        bob.check(&binding, &challenge, alice_key, &proof).unwrap();

        // Replayed on another connection, for another challenge, as someone else, or to someone else.
        assert_eq!(bob.check(&[8u8; 32], &challenge, alice_key, &proof), Err(AuthError::BadProof));
        assert_eq!(bob.check(&binding, &[1u8; CHALLENGE_LEN], alice_key, &proof), Err(AuthError::BadProof));
        let impostor = Keypair::generate().public();
        assert_eq!(bob.check(&binding, &challenge, impostor, &proof), Err(AuthError::BadProof));
        let carol = Authenticator::new(Keypair::generate());
        assert_eq!(carol.check(&binding, &challenge, alice_key, &proof), Err(AuthError::BadProof));
        assert_eq!(bob.check(&binding, &challenge, alice_key, b"\xff"), Err(AuthError::Malformed));
    }

    #[test]
    fn challenges_of_another_length_are_not_signed() {
        let alice = Authenticator::new(Keypair::generate());
        let bob = Keypair::generate().public();
        assert!(alice.prove(&[0; 32], &[0; 31], bob).is_err());
        assert!(alice.prove(&[0; 32], &[0; 1024], bob).is_err());
    }
}
