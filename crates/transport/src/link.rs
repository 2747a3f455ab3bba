//! Link authentication: both ends of a fresh byte stream prove their peer keys before the
//! protocol starts, so a stream cannot be taken over by whoever connects or listens first.
//!
//! Signaling already told each side who the remote is (its key), which connection attempt this
//! is (topic and session) and, when both sides are mesh peers with their key pairs at hand, a
//! fresh 32-byte nonce from each side (in the swarm's `Offer` and `Answer`): a [`LinkAuth`].
//! Right after the stream connects, the side that connected (the dialler) sends its proof; the
//! side that accepted (the listener) checks it and only then sends its own, which the dialler
//! checks. A proof is 72 bytes: the magic `MESHLNK`, a version byte, and an ed25519 signature
//! over a domain-separated transcript of the role, the topic, the session, both keys and both
//! nonces. Nothing else goes on the wire, so the protocol's bytes follow the proofs directly.
//!
//! A proof is bound to one role of one connection attempt: it cannot be replayed to another
//! session, to the other role, or for another key. What this does not give: confidentiality or
//! integrity of the stream (it is plain TCP afterwards), nor protection against an attacker that
//! relays the bytes between the two real peers (someone able to forge signals can point the
//! dialler at itself and forward everything to the real listener). An encrypted transport is
//! the answer to both.

use std::{sync::Arc, time::Duration};

use mesh_keys::{DiscoveryKey, Keypair, PublicKey, SIGNATURE_LEN, Signature};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The length of a link nonce.
pub const NONCE_LEN: usize = 32;

/// The nonces two mesh peers exchanged through signaling for one connection attempt. A transport
/// given these authenticates the link before handing the stream over.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkAuth {
    /// The nonce this side sent (in its `Offer` or `Answer`).
    pub own_nonce: [u8; NONCE_LEN],
    /// The nonce the remote sent.
    pub remote_nonce: [u8; NONCE_LEN],
}

impl std::fmt::Debug for LinkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAuth").finish_non_exhaustive()
    }
}

/// Why a link was not authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkAuthError {
    /// The connection was set up for link authentication, but the transport has no key pair.
    #[error("link authentication needs this peer's key pair, and the transport has none")]
    NoIdentity,
    /// The transport's key pair is not the key the connection belongs to.
    #[error("the transport's key pair is not this connection's own key")]
    WrongIdentity,
    /// The remote did not prove itself in time.
    #[error("the remote did not prove its key within {0:?}")]
    Timeout(Duration),
    /// The remote closed the stream before its proof was complete.
    #[error("the remote closed the stream before proving its key")]
    Closed,
    /// The remote's first bytes are not a mesh link proof.
    #[error("the remote does not speak mesh link authentication")]
    NotALink,
    /// The remote speaks a version of the handshake this side does not.
    #[error("unsupported link authentication version {0}")]
    UnsupportedVersion(u8),
    /// The proof does not verify against the expected remote key for this connection attempt.
    #[error("the remote's proof does not verify for the expected peer and connection")]
    BadProof,
    /// Reading or writing the stream failed.
    #[error("link handshake: {0}")]
    Io(Arc<std::io::Error>),
}

impl From<std::io::Error> for LinkAuthError {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof { Self::Closed } else { Self::Io(Arc::new(err)) }
    }
}

/// Which end of the stream a side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Accepted the stream; proves itself second.
    Listener,
    /// Opened the stream; proves itself first.
    Dialler,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Self::Listener => 1,
            Self::Dialler => 2,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Listener => Self::Dialler,
            Self::Dialler => Self::Listener,
        }
    }
}

const MAGIC: &[u8; 7] = b"MESHLNK";
const VERSION: u8 = 1;
/// Magic, version, signature.
const PROOF_LEN: usize = MAGIC.len() + 1 + SIGNATURE_LEN;
/// Separates these signatures from every other use of a peer's key.
const DOMAIN: &[u8] = b"mesh link auth v1\0";

/// What a proof is about: one connection attempt between two keys, each with its nonce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkContext {
    pub(crate) topic: DiscoveryKey,
    pub(crate) session: PublicKey,
    pub(crate) listener: PublicKey,
    pub(crate) dialler: PublicKey,
    pub(crate) listener_nonce: [u8; NONCE_LEN],
    pub(crate) dialler_nonce: [u8; NONCE_LEN],
}

impl LinkContext {
    /// The bytes `role` signs.
    fn transcript(&self, role: Role) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(DOMAIN.len() + 1 + 6 * 32);
        bytes.extend_from_slice(DOMAIN);
        bytes.push(role.tag());
        bytes.extend_from_slice(&self.topic.to_bytes());
        bytes.extend_from_slice(self.session.as_bytes());
        bytes.extend_from_slice(self.listener.as_bytes());
        bytes.extend_from_slice(self.dialler.as_bytes());
        bytes.extend_from_slice(&self.listener_nonce);
        bytes.extend_from_slice(&self.dialler_nonce);
        bytes
    }

    fn key(&self, role: Role) -> PublicKey {
        match role {
            Role::Listener => self.listener,
            Role::Dialler => self.dialler,
        }
    }
}

/// One side of one link handshake: its own proof, made once, and what the remote's must be.
#[derive(Debug)]
pub(crate) struct LinkProver {
    role: Role,
    own_proof: [u8; PROOF_LEN],
    remote: PublicKey,
    remote_transcript: Vec<u8>,
    timeout: Duration,
}

impl LinkProver {
    /// The prover for `role` in `context`, signing with `identity`, which must be the key of that
    /// role; the whole exchange must finish within `timeout`.
    pub(crate) fn new(
        identity: &Keypair,
        role: Role,
        context: &LinkContext,
        timeout: Duration,
    ) -> Result<Self, LinkAuthError> {
        if identity.public() != context.key(role) {
            return Err(LinkAuthError::WrongIdentity);
        }
        let signature = identity.sign(&context.transcript(role));
        let mut own_proof = [0u8; PROOF_LEN];
        own_proof[..MAGIC.len()].copy_from_slice(MAGIC);
        own_proof[MAGIC.len()] = VERSION;
        own_proof[MAGIC.len() + 1..].copy_from_slice(signature.as_bytes());
        let remote_role = role.other();
        Ok(Self {
            role,
            own_proof,
            remote: context.key(remote_role),
            remote_transcript: context.transcript(remote_role),
            timeout,
        })
    }

    /// Runs this side's half of the handshake on `stream`: the dialler proves itself and then
    /// checks the listener's proof; the listener checks first and proves itself only to a
    /// dialler that passed. Reads exactly one proof, so the protocol's bytes stay in the stream.
    pub(crate) async fn run<S>(&self, stream: &mut S) -> Result<(), LinkAuthError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let exchange = async {
            if self.role == Role::Dialler {
                self.send(stream).await?;
                self.check(stream).await
            } else {
                self.check(stream).await?;
                self.send(stream).await
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| LinkAuthError::Timeout(self.timeout))?
    }

    async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> Result<(), LinkAuthError> {
        stream.write_all(&self.own_proof).await?;
        Ok(stream.flush().await?)
    }

    async fn check<S: AsyncRead + Unpin>(&self, stream: &mut S) -> Result<(), LinkAuthError> {
        let mut proof = [0u8; PROOF_LEN];
        // The magic first, so a stray client gets a clear error without us waiting for 72 bytes.
        stream.read_exact(&mut proof[..MAGIC.len()]).await?;
        if &proof[..MAGIC.len()] != MAGIC {
            return Err(LinkAuthError::NotALink);
        }
        stream.read_exact(&mut proof[MAGIC.len()..]).await?;
        let version = proof[MAGIC.len()];
        if version != VERSION {
            return Err(LinkAuthError::UnsupportedVersion(version));
        }
        let signature =
            Signature::try_from_slice(&proof[MAGIC.len() + 1..]).map_err(|_| LinkAuthError::BadProof)?;
        self.remote.verify(&self.remote_transcript, &signature).map_err(|_| LinkAuthError::BadProof)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    struct Pair {
        listener: Keypair,
        dialler: Keypair,
        context: LinkContext,
    }

    fn pair() -> Pair {
        let (listener, dialler) = (Keypair::generate(), Keypair::generate());
        let context = LinkContext {
            topic: DiscoveryKey::from_party(&listener.public()),
            session: PublicKey::random(),
            listener: listener.public(),
            dialler: dialler.public(),
            listener_nonce: rand::random(),
            dialler_nonce: rand::random(),
        };
        Pair { listener, dialler, context }
    }

    fn prover(identity: &Keypair, role: Role, context: &LinkContext) -> LinkProver {
        LinkProver::new(identity, role, context, PATIENCE).expect("the identity matches its role")
    }

    /// Runs the listener's half against whatever `remote` writes, and returns its result.
    async fn listener_against(pair: &Pair, remote: &[u8]) -> Result<(), LinkAuthError> {
        let (mut ours, mut theirs) = duplex(1024);
        theirs.write_all(remote).await.expect("room in the pipe");
        drop(theirs);
        prover(&pair.listener, Role::Listener, &pair.context).run(&mut ours).await
    }

    /// The proof the dialler of `context` sends first.
    fn dialler_proof(identity: &Keypair, context: &LinkContext) -> Vec<u8> {
        prover(identity, Role::Dialler, context).own_proof.to_vec()
    }

    #[tokio::test]
    async fn both_sides_prove_themselves_and_the_stream_carries_on() {
        let pair = pair();
        let (mut a, mut b) = duplex(1024);
        let listener = prover(&pair.listener, Role::Listener, &pair.context);
        let dialler = prover(&pair.dialler, Role::Dialler, &pair.context);
        let (listened, dialled) = tokio::join!(
            async {
                listener.run(&mut a).await?;
                a.write_all(b"protocol").await?;
                Ok::<_, LinkAuthError>(())
            },
            async {
                dialler.run(&mut b).await?;
                let mut next = [0u8; 8];
                b.read_exact(&mut next).await?;
                Ok::<_, LinkAuthError>(next)
            }
        );
        listened.expect("the listener accepts the dialler");
        assert_eq!(&dialled.expect("the dialler accepts the listener"), b"protocol");
    }

    #[tokio::test]
    async fn a_proof_by_another_key_is_refused() {
        let pair = pair();
        let impostor = Keypair::generate();
        // The right transcript, signed by the wrong key.
        let signature = impostor.sign(&pair.context.transcript(Role::Dialler));
        let proof = [&MAGIC[..], &[VERSION], signature.as_bytes()].concat();
        assert!(matches!(listener_against(&pair, &proof).await, Err(LinkAuthError::BadProof)));
        // Its own proof, for a connection with it as the dialler.
        let context = LinkContext { dialler: impostor.public(), ..pair.context };
        let proof = dialler_proof(&impostor, &context);
        assert!(matches!(listener_against(&pair, &proof).await, Err(LinkAuthError::BadProof)));
    }

    #[tokio::test]
    async fn a_tampered_signature_is_refused() {
        let pair = pair();
        let mut proof = dialler_proof(&pair.dialler, &pair.context);
        proof[PROOF_LEN - 1] ^= 1;
        assert!(matches!(listener_against(&pair, &proof).await, Err(LinkAuthError::BadProof)));
    }

    #[tokio::test]
    async fn a_proof_replayed_from_another_session_or_role_is_refused() {
        let pair = pair();
        let earlier = LinkContext { session: PublicKey::random(), ..pair.context };
        let replayed = dialler_proof(&pair.dialler, &earlier);
        assert!(matches!(listener_against(&pair, &replayed).await, Err(LinkAuthError::BadProof)));

        let other_nonce = LinkContext { listener_nonce: rand::random(), ..pair.context };
        let replayed = dialler_proof(&pair.dialler, &other_nonce);
        assert!(matches!(listener_against(&pair, &replayed).await, Err(LinkAuthError::BadProof)));

        // The listener's own proof, reflected back at it, is for the other role.
        let reflected = prover(&pair.listener, Role::Listener, &pair.context).own_proof;
        assert!(matches!(listener_against(&pair, &reflected).await, Err(LinkAuthError::BadProof)));
    }

    #[tokio::test]
    async fn garbage_a_short_proof_and_another_version_are_refused() {
        let pair = pair();
        let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(3);
        assert!(matches!(listener_against(&pair, &http).await, Err(LinkAuthError::NotALink)));
        assert!(matches!(listener_against(&pair, b"MESH").await, Err(LinkAuthError::Closed)));
        assert!(matches!(listener_against(&pair, b"").await, Err(LinkAuthError::Closed)));

        let mut proof = dialler_proof(&pair.dialler, &pair.context);
        assert!(matches!(listener_against(&pair, &proof[..40]).await, Err(LinkAuthError::Closed)));
        proof[MAGIC.len()] = 9;
        assert!(matches!(listener_against(&pair, &proof).await, Err(LinkAuthError::UnsupportedVersion(9))));

        for seed in 0..64u8 {
            let noise: Vec<u8> = (0..PROOF_LEN).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            assert!(listener_against(&pair, &noise).await.is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_that_stalls_mid_proof_times_out() {
        let pair = pair();
        let (mut ours, mut theirs) = duplex(1024);
        theirs.write_all(b"MESHLNK\x01").await.unwrap();
        let listener = prover(&pair.listener, Role::Listener, &pair.context);
        // `theirs` stays open and silent: a slow-loris.
        assert!(matches!(listener.run(&mut ours).await, Err(LinkAuthError::Timeout(_))));
        let dialler = prover(&pair.dialler, Role::Dialler, &pair.context);
        let (mut ours, _silent) = duplex(1024);
        assert!(matches!(dialler.run(&mut ours).await, Err(LinkAuthError::Timeout(_))));
    }

    #[test]
    fn a_prover_refuses_a_key_pair_that_is_not_its_role() {
        let pair = pair();
        let err = LinkProver::new(&pair.dialler, Role::Listener, &pair.context, PATIENCE).unwrap_err();
        assert!(matches!(err, LinkAuthError::WrongIdentity));
    }
}
