//! STUN and TURN servers, and reading them in the shape DXOS's ICE provider fetches.

use std::path::Path;

use serde_json::Value;

/// A STUN or TURN server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ...; all URLs of one server.
    pub urls: Vec<String>,
    /// The TURN user name.
    pub username: Option<String>,
    /// The TURN password.
    pub credential: Option<String>,
}

impl IceServer {
    /// A STUN server, which needs no credentials.
    pub fn stun(url: impl Into<String>) -> Self {
        Self { urls: vec![url.into()], ..Self::default() }
    }

    /// A TURN server with long-term credentials.
    pub fn turn(url: impl Into<String>, username: impl Into<String>, credential: impl Into<String>) -> Self {
        Self { urls: vec![url.into()], username: Some(username.into()), credential: Some(credential.into()) }
    }

    /// Reads the servers of an ICE configuration document, as DXOS's ICE provider reads the one
    /// it fetches (and as an `RTCConfiguration` holds them):
    /// `{"iceServers": [{"urls": "turn:host:3478" | ["stun:…", …], "username": "…", "credential": "…"}]}`.
    /// A bare list of servers is accepted too.
    pub fn parse_list(json: &str) -> Result<Vec<Self>, IceConfigError> {
        let document: Value = serde_json::from_str(json).map_err(|err| IceConfigError(err.to_string()))?;
        let list = match &document {
            Value::Object(object) => object.get("iceServers").ok_or_else(|| bad("no iceServers field"))?,
            list => list,
        };
        let Value::Array(entries) = list else { return Err(bad("iceServers is not a list")) };
        entries.iter().enumerate().map(|(index, entry)| Self::from_entry(entry, index)).collect()
    }

    /// [`IceServer::parse_list`] on the contents of a file.
    pub fn read_list(path: &Path) -> Result<Vec<Self>, IceConfigError> {
        let json = std::fs::read_to_string(path)
            .map_err(|err| IceConfigError(format!("reading {}: {err}", path.display())))?;
        Self::parse_list(&json).map_err(|err| IceConfigError(format!("{}: {}", path.display(), err.0)))
    }

    fn from_entry(entry: &Value, index: usize) -> Result<Self, IceConfigError> {
        let field = |name: &str| entry.get(name);
        let urls = match field("urls") {
            Some(Value::String(url)) => vec![url.clone()],
            Some(Value::Array(urls)) => urls
                .iter()
                .map(|url| url.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("iceServers[{index}].urls holds a non-string")))?,
            _ => return Err(bad(format!("iceServers[{index}] has no urls"))),
        };
        if urls.is_empty() {
            return Err(bad(format!("iceServers[{index}].urls is empty")));
        }
        for url in &urls {
            if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|scheme| url.starts_with(scheme)) {
                return Err(bad(format!("iceServers[{index}]: {url:?} is not a stun: or turn: URL")));
            }
        }
        let text = |name: &str| match field(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(bad(format!("iceServers[{index}].{name} is not a string"))),
        };
        Ok(Self { urls, username: text("username")?, credential: text("credential")? })
    }
}

/// An ICE configuration document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ICE server configuration: {0}")]
pub struct IceConfigError(String);

fn bad(message: impl Into<String>) -> IceConfigError {
    IceConfigError(message.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_what_dxos_ice_providers_serve() {
        let json = r#"{"iceServers": [
            {"urls": "stun:stun.example.org:3478"},
            {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
             "username": "u", "credential": "p"}
        ]}"#;
        let servers = IceServer::parse_list(json).unwrap();
        assert_eq!(servers[0], IceServer::stun("stun:stun.example.org:3478"));
        assert_eq!(servers[1].urls.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("u"));
        assert_eq!(servers[1].credential.as_deref(), Some("p"));
        assert_eq!(IceServer::parse_list(r#"[{"urls": "stun:h:1"}]"#).unwrap().len(), 1);
    }

    #[test]
    fn refuses_what_is_not_an_ice_configuration() {
        for bad in [
            "",
            "{}",
            r#"{"iceServers": {}}"#,
            r#"{"iceServers": [{}]}"#,
            r#"{"iceServers": [{"urls": []}]}"#,
            r#"{"iceServers": [{"urls": [1]}]}"#,
            r#"{"iceServers": [{"urls": "http://example.org"}]}"#,
            r#"{"iceServers": [{"urls": "turn:h:1", "username": 5}]}"#,
        ] {
            assert!(IceServer::parse_list(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
