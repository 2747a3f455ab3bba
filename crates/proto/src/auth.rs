//! The byte layouts that mesh's authentication signatures cover: part of the wire contract, so both
//! sides build them here.

/// What a signal-server authentication signature covers: a context, the authority (`host[:port]`)
/// the client connected to, as sent in its `Host` header, and the server's nonce. Covering the host
/// keeps a signature made for one server from being replayed to another.
pub fn signal_challenge(host: &str, nonce: &[u8]) -> Vec<u8> {
    [b"mesh signal auth v1\n".as_slice(), host.as_bytes(), b"\n", nonce].concat()
}
