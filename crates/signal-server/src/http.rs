//! The HTTP side of a connection: read the request head, then upgrade to WebSocket or answer
//! plainly (readiness on the signal path, `/metrics`, 404 elsewhere).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The path DXOS clients connect to.
pub const SIGNAL_PATH: &str = "/.well-known/dx/signal";
/// Where the Prometheus metrics are served.
pub const METRICS_PATH: &str = "/metrics";

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("connection closed before the request head ended")]
    Eof,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(#[from] httparse::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A WebSocket upgrade on the signal path, with its `Sec-WebSocket-Key` and `Host`.
    Upgrade {
        key: String,
        host: String,
    },
    /// A plain GET on the signal path: the server is ready.
    Ready,
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// A request head and any bytes read past it.
pub(crate) struct Head {
    pub(crate) route: Route,
    pub(crate) rest: Vec<u8>,
}

/// Reads one request head from `stream`.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, HeadError> {
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(HeadError::Eof);
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer)? {
            httparse::Status::Complete(length) => {
                let route = route(&request);
                return Ok(Head { route, rest: buffer.split_off(length) });
            }
            httparse::Status::Partial if buffer.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
            httparse::Status::Partial => {}
        }
    }
}

fn header<'a>(request: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .and_then(|header| std::str::from_utf8(header.value).ok())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

fn route(request: &httparse::Request<'_, '_>) -> Route {
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if request.method != Some("GET") {
        return Route::MethodNotAllowed;
    }
    match path {
        SIGNAL_PATH => {
            let upgrade = has_token(header(request, "upgrade"), "websocket")
                && has_token(header(request, "connection"), "upgrade");
            if !upgrade {
                return Route::Ready;
            }
            match (header(request, "sec-websocket-key"), header(request, "sec-websocket-version")) {
                (Some(key), Some("13")) => Route::Upgrade {
                    key: key.trim().to_owned(),
                    host: header(request, "host").unwrap_or("").to_owned(),
                },
                _ => Route::BadRequest,
            }
        }
        METRICS_PATH => Route::Metrics,
        _ => Route::NotFound,
    }
}

/// Answers a plain request and leaves the connection to be closed.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Accepts a WebSocket upgrade.
pub(crate) async fn switch_protocols<S: AsyncWrite + Unpin>(
    stream: &mut S,
    key: &str,
) -> std::io::Result<()> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn route_of(request: &str) -> Result<Route, HeadError> {
        read_head(&mut request.as_bytes()).await.map(|head| head.route)
    }

    #[tokio::test]
    async fn routes_requests() {
        let upgrade = "GET /.well-known/dx/signal HTTP/1.1\r\nHost: a:1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            route_of(upgrade).await.unwrap(),
            Route::Upgrade { key: "abc".into(), host: "a:1".into() }
        );
        assert_eq!(route_of("GET /.well-known/dx/signal HTTP/1.1\r\n\r\n").await.unwrap(), Route::Ready);
        assert_eq!(route_of("GET /metrics HTTP/1.1\r\n\r\n").await.unwrap(), Route::Metrics);
        assert_eq!(route_of("GET /other HTTP/1.1\r\n\r\n").await.unwrap(), Route::NotFound);
        assert_eq!(route_of("POST /metrics HTTP/1.1\r\n\r\n").await.unwrap(), Route::MethodNotAllowed);
        let old_version = "GET /.well-known/dx/signal HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 8\r\n\r\n";
        assert_eq!(route_of(old_version).await.unwrap(), Route::BadRequest);
    }

    #[tokio::test]
    async fn rejects_bad_heads() {
        assert!(matches!(route_of("GET / HTTP/1.1\r\n").await, Err(HeadError::Eof)));
        assert!(matches!(route_of("\x00\x01\x02\r\n\r\n").await, Err(HeadError::Malformed(_))));
        let huge = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(route_of(&huge).await, Err(HeadError::TooLarge)));
    }
}
