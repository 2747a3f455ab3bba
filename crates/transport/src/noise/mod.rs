//! `tcp+noise`: TCP between mesh peers, encrypted and authenticated with Noise.
//!
//! Plain TCP (see [`crate::tcp`]) stays as DXOS speaks it: readable and changeable by anyone on
//! the path, with link authentication at best proving who is at each end. For servers and bots
//! that do not run WebRTC, this transport gives TCP links what WebRTC's DTLS gives data
//! channels: confidentiality and integrity of every byte, and ends that are the peers signaling
//! named. It speaks to mesh peers that chose it too, never to DXOS peers.
//!
//! It is the TCP transport with a Noise handshake where link authentication would be: the
//! initiator listens and signals `{port}`, the other side dials, exactly as there, and every
//! connection the listener accepts or the dialler opens runs the handshake (see `handshake`)
//! before it counts, so a stray or hostile connection to the port is refused and the listener
//! keeps waiting for the expected peer. Each side proves its peer key by signing its Noise static
//! key (see `static_key`); a remote whose static key is not signed by the key signaling named
//! is refused with [`NoiseError::WrongPeer`]. The stream after the handshake is a sequence of
//! AES-GCM frames of at most 64 KiB (see `stream`), and the connection's channel binding is
//! derived from the handshake hash, which covers the topic, the session and both sides'
//! ephemeral and static keys.
//!
//! The swarm exchanges no link nonces for this transport
//! ([`TransportFactory::authenticates_links`] is false): the handshake's own ephemeral keys make
//! every connection's binding fresh.
//!
//! ```
//! use mesh_keys::Keypair;
//! use mesh_transport::{TransportFactory, TransportKind, noise::NoiseTcpTransportFactory, tcp::TcpTransportFactory};
//!
//! let identity = Keypair::generate();
//! let factory = NoiseTcpTransportFactory::new(identity)
//!     .with_tcp(TcpTransportFactory::default().with_advertise_host("10.0.0.7"));
//! assert_eq!(factory.kind(), TransportKind::NoiseTcp);
//! ```
//!
//! Why these choices: Noise XX (rather than TLS) needs no certificates, only the keys mesh peers
//! already have; the snow crate implements it. AES-GCM and SHA-256 come from ring (snow's ring
//! resolver; ring is in the build for rustls already): with the CPU's AES instructions it
//! seals and opens about 7.5 GB/s a core, three times ring's ChaCha20-Poly1305 and seven times
//! the pure-Rust ciphers, and that is what keeps this transport's throughput near plain TCP's
//! (`cargo bench -p mesh-benches --bench teleport -- noise`).
//!
//! [`TransportFactory::authenticates_links`]: crate::TransportFactory::authenticates_links

mod error;
#[cfg(feature = "noise")]
mod factory;
#[cfg(feature = "noise")]
mod handshake;
#[cfg(feature = "noise")]
mod static_key;
#[cfg(feature = "noise")]
mod stream;

pub use self::error::NoiseError;
#[cfg(feature = "noise")]
pub use self::factory::NoiseTcpTransportFactory;
