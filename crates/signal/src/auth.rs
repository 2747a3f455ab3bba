//! Authenticated signaling, client side.

/// The authority (`host[:port]`) of a WebSocket URL, as the client sends it in `Host`.
pub(crate) fn authority(url: &str) -> Option<&str> {
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
        assert_eq!(authority("http://x"), None);
        assert_eq!(authority("ws:///path"), None);
    }
}
