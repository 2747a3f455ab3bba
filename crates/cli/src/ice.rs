//! `--ice-servers FILE|URL`: STUN and TURN servers from a JSON document, read from a file or
//! fetched as DXOS's ICE provider fetches it (a GET returning `{"iceServers": [...]}`).

use std::{io::Read, path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use mesh_transport::webrtc::IceServer;

/// How long a fetch may take, as DXOS's ICE provider allows.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest document read: a list of servers is a few hundred bytes.
const MAX_DOCUMENT: u64 = 64 * 1024;

/// Reads the servers from `source`: an `http://` or `https://` URL, or a file path.
pub(crate) fn load(source: &str) -> Result<Vec<IceServer>> {
    let json = if source.starts_with("http://") || source.starts_with("https://") {
        fetch(source).with_context(|| format!("fetching ICE servers from {source}"))?
    } else {
        std::fs::read_to_string(Path::new(source))
            .with_context(|| format!("reading ICE servers from {source}"))?
    };
    IceServer::parse_list(&json).with_context(|| format!("ICE servers from {source}"))
}

fn fetch(url: &str) -> Result<String> {
    let agent = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).build().new_agent();
    let mut response = agent.get(url).call()?;
    let mut json = String::new();
    response.body_mut().as_reader().take(MAX_DOCUMENT + 1).read_to_string(&mut json)?;
    if json.len() as u64 > MAX_DOCUMENT {
        bail!("the document is larger than {MAX_DOCUMENT} bytes");
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{io::Write, net::TcpListener};

    use super::*;

    const DOCUMENT: &str =
        r#"{"iceServers":[{"urls":"turn:127.0.0.1:3478","username":"u","credential":"p"}]}"#;

    #[test]
    fn reads_a_file() {
        let path = std::env::temp_dir().join(format!("mesh-ice-{}.json", std::process::id()));
        std::fs::write(&path, DOCUMENT).unwrap();
        let servers = load(path.to_str().unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(servers, [IceServer::turn("turn:127.0.0.1:3478", "u", "p")]);
        assert!(load("/nonexistent/ice.json").is_err());
    }

    #[test]
    fn fetches_a_url() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ice", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut socket, &mut request).unwrap();
            write!(
                socket,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{DOCUMENT}",
                DOCUMENT.len()
            )
            .unwrap();
        });
        let servers = load(&url).unwrap();
        server.join().unwrap();
        assert_eq!(servers, [IceServer::turn("turn:127.0.0.1:3478", "u", "p")]);
    }
}
