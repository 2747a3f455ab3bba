//! `wss://`: the server terminates TLS itself, and the client trusts it through an extra CA.

mod common;

use std::path::PathBuf;

use common::*;
use mesh_signal::{Client, ClientConfig, Signal, SignalError};
use mesh_signal_server::{Config, TlsFiles};

struct Files {
    dir: PathBuf,
    ca_pem: Vec<u8>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for 127.0.0.1, written where the server can read it.
fn certificate(name: &str) -> (Files, TlsFiles) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("certificate");
    let dir = std::env::temp_dir().join(format!("mesh-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, cert.cert.pem()).expect("write cert");
    std::fs::write(&files.key, cert.signing_key.serialize_pem()).expect("write key");
    (Files { dir, ca_pem: cert.cert.pem().into_bytes() }, files)
}

#[tokio::test]
async fn clients_meet_over_wss_with_an_extra_ca() {
    let (files, tls) = certificate("meet");
    let server = server_with(Config::default().with_tls(Some(tls))).await;
    assert!(server.url().starts_with("wss://127.0.0.1:"));
    let (alice, bob, topic) = (peer(), peer(), topic());
    let connect = || {
        Client::with_config(ClientConfig::new(server.url()).with_extra_ca_pem(Some(files.ca_pem.clone())))
            .unwrap()
    };
    let (a, b) = (connect(), connect());
    let mut b_events = b.events();
    b.subscribe(bob).await.unwrap();
    a.join(topic, alice).await.unwrap();
    b.join(topic, bob).await.unwrap();
    wait_available(&mut b_events, topic, alice).await;
    a.send(message(alice, bob, "encrypted")).await.unwrap();
    assert_eq!(wait_message(&mut b_events, bob).await.payload.value, b"encrypted");
}

#[tokio::test]
async fn an_untrusted_certificate_never_connects() {
    let (_files, tls) = certificate("untrusted");
    let server = server_with(Config::default().with_tls(Some(tls))).await;
    let client = Client::with_config(ClientConfig::new(server.url()).with_timeouts(mesh_signal::Timeouts {
        send: std::time::Duration::from_millis(500),
        ..Default::default()
    }))
    .unwrap();
    // Without the CA the handshake fails every time, so a send waits for a connection in vain.
    let result = client.send(message(peer(), peer(), "never")).await;
    assert_eq!(result, Err(SignalError::Timeout("send")));
    assert_eq!(server.stats().connections, 0);
}

#[test]
fn a_bad_extra_ca_is_a_clear_error() {
    let config = ClientConfig::new("wss://x").with_extra_ca_pem(Some(b"not a certificate".to_vec()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let err = Client::with_config(config).unwrap_err();
    assert!(matches!(err, SignalError::Tls(_)), "{err}");
    assert!(matches!(Client::connect("http://x"), Err(SignalError::InvalidUrl(_))));
}
