//! TLS on the client port (`--tls-port`), with rustls: the server's certificate and key, and
//! client certificates checked against `--tls-ca-cert-file` as `--tls-auth-clients` says
//! (Redis's `yes`, `no`, `optional`).
//!
//! After the handshake a TLS connection is served exactly as a plain one (the connection loop
//! is generic over the stream).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor `config` describes, or `None` without `--tls-port`.
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, String> {
    if config.tls_port.is_none() {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Err("--tls-port needs --tls-cert-file and --tls-key-file".into());
    };
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no usable private key: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match config.tls_auth_clients.as_str() {
        "no" => builder.with_no_client_auth(),
        mode => {
            let ca_file = config.tls_ca_cert_file.as_ref().ok_or(
                "--tls-auth-clients yes|optional needs --tls-ca-cert-file (or --tls-auth-clients no)",
            )?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if mode == "optional" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    server.alpn_protocols = Vec::new();
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}
