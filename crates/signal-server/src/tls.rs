//! Terminating TLS: loading a PEM certificate chain and key into a rustls acceptor.

use std::{fs::File, io::BufReader, sync::Arc};

use tokio_rustls::TlsAcceptor;

use crate::{StartError, TlsFiles};

pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StartError> {
    let tls_error = |what: &str, err: &dyn std::fmt::Display| StartError::Tls(format!("{what}: {err}"));
    let mut certs_file =
        BufReader::new(File::open(&files.cert).map_err(|e| tls_error("opening certificate", &e))?);
    let certs = rustls_pemfile::certs(&mut certs_file)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("reading certificate", &e))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!("no certificate in {}", files.cert.display())));
    }
    let mut key_file = BufReader::new(File::open(&files.key).map_err(|e| tls_error("opening key", &e))?);
    let key = rustls_pemfile::private_key(&mut key_file)
        .map_err(|e| tls_error("reading key", &e))?
        .ok_or_else(|| StartError::Tls(format!("no private key in {}", files.key.display())))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_error("certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
