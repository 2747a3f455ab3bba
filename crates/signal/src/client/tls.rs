//! TLS for `wss://` URLs: the system's root certificates, plus an optional extra CA (for servers
//! with a private or self-signed certificate).

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::SignalError;

pub(crate) fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, SignalError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: an extra CA may be all a deployment needs.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_ca_pem {
        let mut reader = pem;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|err| SignalError::Tls(format!("reading extra CA: {err}")))?;
            roots.add(cert).map_err(|err| SignalError::Tls(format!("adding extra CA: {err}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(SignalError::Tls("no certificate in the extra CA PEM".into()));
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| SignalError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
