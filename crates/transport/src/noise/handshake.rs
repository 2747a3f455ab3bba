//! The Noise XX handshake on a fresh TCP connection.
//!
//! `Noise_XX_25519_AESGCM_SHA256`: both sides have static keys and learn each other's during the
//! handshake. The swarm's initiator is the Noise initiator (it also listens, so it writes first
//! on every connection it accepts); the other side, which dials, is the responder. Three
//! messages, each framed as a transport frame is (a 2-byte big-endian length, then the message):
//!
//! 1. initiator → responder: `e` (32 bytes, no payload);
//! 2. responder → initiator: `e, ee, s, es` and the responder's payload (160 bytes);
//! 3. initiator → responder: `s, se` and the initiator's payload (128 bytes).
//!
//! Each payload is the sender's peer-key signature over its static key (see `static_key`), and
//! each side checks the remote's against the key signaling named. The listener learns who
//! dialled before it reveals its own static key, so a stray connection learns nothing but an
//! ephemeral key. The prologue holds the topic and the session: two sides that disagree on which
//! connection attempt this is fail at the first encrypted message. The peer keys are left out of
//! it on purpose: the signatures check them, and a side that reads an impostor's signed static
//! key can say so ([`NoiseError::WrongPeer`]) where a prologue mismatch would only say the bytes
//! did not decrypt. The handshake hash (the connection's channel binding) covers the prologue
//! and both sides' ephemeral and static keys, and so, through the signatures, the peer keys.
//!
//! Messages are bounded (a longer one means the remote does not speak this), and the whole
//! exchange has a deadline, so a connection that stalls or sends garbage costs little.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mesh_keys::PublicKey;
use snow::{
    Builder, HandshakeState, TransportState,
    params::NoiseParams,
    resolvers::{DefaultResolver, FallbackResolver, RingResolver},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    NoiseError,
    static_key::{PAYLOAD_LEN, StaticKey, verify},
    stream::{HEADER_LEN, NoiseStream},
};
use crate::{
    TransportError, TransportOptions,
    api::channel_binding,
    tcp::{Upgrade, Upgraded},
};

/// The Noise protocol: XX, X25519, AES-GCM, SHA-256. ring computes AES-GCM and SHA-256 (with
/// the CPU's AES instructions, several GB/s a core), curve25519-dalek X25519.
const PROTOCOL: &str = "Noise_XX_25519_AESGCM_SHA256";

/// What the prologue starts with, before the connection attempt's topic and session.
const PROLOGUE_DOMAIN: &[u8] = b"mesh noise v1\0";

/// The domain of the channel binding derived from the handshake hash.
const BINDING_DOMAIN: &str = "mesh noise binding v1";

/// The longest handshake message taken: the longest this handshake sends is 160 bytes.
const MAX_MESSAGE: usize = 256;

/// A Noise handshake builder for [`PROTOCOL`], with ring for what it has and the pure-Rust
/// implementations for the rest.
pub(super) fn builder() -> Result<Builder<'static>, NoiseError> {
    let params: NoiseParams = PROTOCOL.parse().map_err(|_| NoiseError::Setup)?;
    let resolver = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
    Ok(Builder::with_resolver(params, Box::new(resolver)))
}

/// One transport's handshake, run on each connection it accepts or dials.
#[derive(Debug)]
pub(super) struct NoiseUpgrade {
    key: Arc<StaticKey>,
    initiator: bool,
    /// The peer key signaling named for the remote.
    remote: PublicKey,
    prologue: Vec<u8>,
    timeout: Duration,
}

impl NoiseUpgrade {
    /// The handshake for the connection of `options`, proving this side with `key` (which must
    /// be signed by `options.own`) and finishing within `timeout`.
    pub(super) fn new(key: Arc<StaticKey>, options: &TransportOptions, timeout: Duration) -> Self {
        let prologue = [PROLOGUE_DOMAIN, &options.topic.to_bytes(), options.session.as_bytes()].concat();
        Self { key, initiator: options.initiator, remote: options.remote, prologue, timeout }
    }

    /// Runs this side's half of the handshake on `stream`; the cipher states for the stream and
    /// the handshake hash. Reads exactly the handshake's bytes, so what follows stays in the
    /// stream.
    pub(super) async fn handshake<S>(&self, stream: &mut S) -> Result<(TransportState, [u8; 32]), NoiseError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(self.timeout, self.exchange(stream))
            .await
            .map_err(|_| NoiseError::Timeout(self.timeout))?
    }

    async fn exchange<S>(&self, stream: &mut S) -> Result<(TransportState, [u8; 32]), NoiseError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let builder = builder()?
            .local_private_key(self.key.private())
            .and_then(|builder| builder.prologue(&self.prologue))
            .map_err(|_| NoiseError::Setup)?;
        let built = if self.initiator { builder.build_initiator() } else { builder.build_responder() };
        let mut state = built.map_err(|_| NoiseError::Setup)?;
        let mut payload = [0u8; MAX_MESSAGE];
        if self.initiator {
            send(stream, &mut state, &[]).await?;
            let len = receive(stream, &mut state, &mut payload).await?;
            self.check(&state, &payload[..len])?;
            send(stream, &mut state, self.key.payload()).await?;
        } else {
            if receive(stream, &mut state, &mut payload).await? != 0 {
                return Err(NoiseError::NotNoise);
            }
            send(stream, &mut state, self.key.payload()).await?;
            let len = receive(stream, &mut state, &mut payload).await?;
            self.check(&state, &payload[..len])?;
        }
        let hash = state.get_handshake_hash().try_into().map_err(|_| NoiseError::Setup)?;
        let transport = state.into_transport_mode().map_err(|_| NoiseError::Setup)?;
        Ok((transport, hash))
    }

    /// Checks the remote's payload against the static key it used.
    fn check(&self, state: &HandshakeState, payload: &[u8]) -> Result<(), NoiseError> {
        let remote_static = state.get_remote_static().ok_or(NoiseError::NotNoise)?;
        if payload.len() != PAYLOAD_LEN {
            return Err(NoiseError::WrongPeer);
        }
        verify(&self.remote, remote_static, payload)
    }
}

/// Writes the next handshake message, carrying `payload`.
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    state: &mut HandshakeState,
    payload: &[u8],
) -> Result<(), NoiseError> {
    let mut frame = [0u8; HEADER_LEN + MAX_MESSAGE];
    let len = state.write_message(payload, &mut frame[HEADER_LEN..]).map_err(|_| NoiseError::Setup)?;
    // At most MAX_MESSAGE, which fits the header.
    frame[..HEADER_LEN].copy_from_slice(&(len as u16).to_be_bytes());
    stream.write_all(&frame[..HEADER_LEN + len]).await?;
    Ok(stream.flush().await?)
}

/// Reads the next handshake message into `payload`; its payload's length.
async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    state: &mut HandshakeState,
    payload: &mut [u8; MAX_MESSAGE],
) -> Result<usize, NoiseError> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes(header));
    if len > MAX_MESSAGE {
        return Err(NoiseError::NotNoise);
    }
    let mut message = [0u8; MAX_MESSAGE];
    stream.read_exact(&mut message[..len]).await?;
    state.read_message(&message[..len], payload).map_err(|err| match err {
        snow::Error::Decrypt => NoiseError::Decrypt,
        _ => NoiseError::NotNoise,
    })
}

#[async_trait]
impl Upgrade for NoiseUpgrade {
    async fn run(&self, mut stream: TcpStream) -> Result<Upgraded, TransportError> {
        let (cipher, hash) = self.handshake(&mut stream).await?;
        let (reader, writer) = stream.into_split();
        Ok(Upgraded {
            stream: Box::new(NoiseStream::new(reader, writer, cipher)),
            binding: Some(channel_binding(BINDING_DOMAIN, &[&hash])),
        })
    }
}

#[cfg(test)]
mod tests {
    use mesh_keys::{DiscoveryKey, Keypair};
    use tokio::io::{DuplexStream, duplex};

    use super::*;
    use crate::SignalSink;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// A peer: its key pair and its signed static key.
    struct Peer {
        identity: Keypair,
        key: Arc<StaticKey>,
    }

    fn peer() -> Peer {
        let identity = Keypair::generate();
        let key = Arc::new(StaticKey::generate(&identity).unwrap());
        Peer { identity, key }
    }

    /// `own`'s handshake with `remote` in `session`.
    fn upgrade(own: &Peer, remote: &Peer, initiator: bool, session: PublicKey) -> NoiseUpgrade {
        let options = TransportOptions {
            own: own.identity.public(),
            remote: remote.identity.public(),
            topic: DiscoveryKey::from_party(&session),
            initiator,
            session,
            signals: SignalSink::channel().0,
            link: None,
        };
        NoiseUpgrade::new(own.key.clone(), &options, PATIENCE)
    }

    type Outcome = Result<(TransportState, [u8; 32]), NoiseError>;

    /// Runs both handshakes, each dropping its end of the pipe when it is done.
    async fn run(initiator: NoiseUpgrade, responder: NoiseUpgrade) -> (Outcome, Outcome) {
        let (a, b) = duplex(4096);
        let side = |upgrade: NoiseUpgrade, mut stream: DuplexStream| async move {
            upgrade.handshake(&mut stream).await
        };
        tokio::join!(side(initiator, a), side(responder, b))
    }

    /// What the responder's side makes of `remote`'s bytes, written before it starts.
    async fn responder_against(remote: &[u8]) -> Outcome {
        let (alice, bob) = (peer(), peer());
        let responder = upgrade(&bob, &alice, false, PublicKey::random());
        let (mut ours, mut theirs) = duplex(4096);
        theirs.write_all(remote).await.unwrap();
        drop(theirs);
        responder.handshake(&mut ours).await
    }

    #[tokio::test]
    async fn both_sides_agree_on_the_hash_and_talk() {
        let (alice, bob) = (peer(), peer());
        let session = PublicKey::random();
        let (a, b) = run(upgrade(&alice, &bob, true, session), upgrade(&bob, &alice, false, session)).await;
        let ((mut a, a_hash), (mut b, b_hash)) = (a.unwrap(), b.unwrap());
        assert_eq!(a_hash, b_hash);
        let (mut message, mut plain) = ([0u8; 64], [0u8; 64]);
        let n = a.write_message(b"hello", &mut message).unwrap();
        let n = b.read_message(&message[..n], &mut plain).unwrap();
        assert_eq!(&plain[..n], b"hello");

        // Another connection attempt between the same peers has another hash.
        let session = PublicKey::random();
        let (c, _) = run(upgrade(&alice, &bob, true, session), upgrade(&bob, &alice, false, session)).await;
        assert_ne!(c.unwrap().1, a_hash);
    }

    #[tokio::test]
    async fn a_static_key_signed_by_another_peer_is_refused_either_way() {
        let (alice, bob, mallory) = (peer(), peer(), peer());
        let session = PublicKey::random();
        // Mallory answers where Alice expects Bob: Alice refuses before revealing her key.
        let (a, m) =
            run(upgrade(&alice, &bob, true, session), upgrade(&mallory, &alice, false, session)).await;
        assert!(matches!(a, Err(NoiseError::WrongPeer)), "{a:?}");
        assert!(matches!(m, Err(NoiseError::Closed)), "{m:?}");

        // Mallory sends Bob's signature with her own static key.
        let impostor = Peer { identity: bob.identity.clone(), key: mallory.key.clone() };
        let (a, m) =
            run(upgrade(&alice, &bob, true, session), upgrade(&impostor, &alice, false, session)).await;
        assert!(matches!(a, Err(NoiseError::WrongPeer)), "{a:?}");
        assert!(matches!(m, Err(NoiseError::Closed)), "{m:?}");

        // Mallory initiates where Bob expects Alice.
        let (m, b) = run(upgrade(&mallory, &bob, true, session), upgrade(&bob, &alice, false, session)).await;
        assert!(m.is_ok(), "Bob proved himself to Mallory, who expected him: {m:?}");
        assert!(matches!(b, Err(NoiseError::WrongPeer)), "{b:?}");
    }

    #[tokio::test]
    async fn another_connection_attempt_does_not_decrypt() {
        let (alice, bob) = (peer(), peer());
        let a = upgrade(&alice, &bob, true, PublicKey::random());
        let b = upgrade(&bob, &alice, false, PublicKey::random());
        let (a, b) = run(a, b).await;
        assert!(matches!(a, Err(NoiseError::Decrypt)), "{a:?}");
        assert!(matches!(b, Err(NoiseError::Closed)), "{b:?}");
    }

    #[tokio::test]
    async fn garbage_short_and_long_messages_are_refused() {
        let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        assert!(matches!(responder_against(http).await, Err(NoiseError::NotNoise)));
        assert!(matches!(responder_against(b"").await, Err(NoiseError::Closed)));
        assert!(matches!(responder_against(&[0, 40, 1, 2]).await, Err(NoiseError::Closed)));
        assert!(matches!(responder_against(&[0, 5, 1, 2, 3, 4, 5]).await, Err(NoiseError::NotNoise)));
        let link_proof = [&b"MESHLNK\x01"[..], &[7u8; 64]].concat();
        assert!(matches!(responder_against(&link_proof).await, Err(NoiseError::NotNoise)));
        // A first message with a payload is not this handshake's.
        let mut with_payload = vec![0, 40];
        with_payload.extend_from_slice(&[9u8; 40]);
        assert!(matches!(responder_against(&with_payload).await, Err(NoiseError::NotNoise)));
        for seed in 0..32u8 {
            let noise: Vec<u8> = (0..200).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            assert!(responder_against(&noise).await.is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_that_stalls_times_out() {
        let (alice, bob) = (peer(), peer());
        let session = PublicKey::random();
        let (mut ours, _silent) = duplex(4096);
        let initiator = upgrade(&alice, &bob, true, session);
        assert!(matches!(initiator.handshake(&mut ours).await, Err(NoiseError::Timeout(_))));
        let (mut ours, mut theirs) = duplex(4096);
        theirs.write_all(&[0, 32]).await.unwrap();
        let responder = upgrade(&bob, &alice, false, session);
        assert!(matches!(responder.handshake(&mut ours).await, Err(NoiseError::Timeout(_))));
    }
}
