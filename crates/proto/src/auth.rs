//! The byte layouts that mesh's authentication signatures cover: part of the wire contract, so both
//! sides build them here.

/// What a signal-server authentication signature covers: a context, the authority (`host[:port]`)
/// of the server's URL, and the server's nonce. The client signs the authority of the URL it
/// connected to ([`authority`]); the server checks against the authority of its configured public
/// URL, so a signature made for one server cannot be replayed to another, even by a server that
/// relays the client's challenge. (A server without a public URL falls back to the client's `Host`
/// header, which a relaying server controls.)
pub fn signal_challenge(host: &str, nonce: &[u8]) -> Vec<u8> {
    [b"mesh signal auth v1\n".as_slice(), host.as_bytes(), b"\n", nonce].concat()
}

/// The authority (`host[:port]`) of a `ws://` or `wss://` URL, exactly as written in it: what
/// [`signal_challenge`] covers. `None` for other schemes or an empty authority.
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty()).then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(authority("ws://127.0.0.1:4000/.well-known/dx/signal"), Some("127.0.0.1:4000"));
        assert_eq!(authority("wss://signal.example"), Some("signal.example"));
        assert_eq!(authority("wss://signal.example?x=1"), Some("signal.example"));
        assert_eq!(authority("http://x"), None);
        assert_eq!(authority("ws:///path"), None);
    }
}
