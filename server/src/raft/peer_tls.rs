//! Mutual TLS on the peer port (`--tls-cluster yes`), with rustls.
//!
//! Both ends of every peer connection present a certificate and check the other's against
//! `--tls-ca-cert-file`: the acceptor presents `--tls-cert-file`, the connector
//! `--tls-client-cert-file` (or `--tls-cert-file` when that is not given), as in Redis. A peer
//! whose certificate does not chain to the CA fails the TLS handshake, before the cluster
//! secret's handshake (which then runs inside TLS) or any frame.
//!
//! As in Redis's cluster bus, a peer's certificate is checked against the CA only, not against
//! the peer's address: nodes reach each other by announced IP, which certificates rarely name,
//! and membership in the cluster is what the CA (and the cluster secret) vouch for.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::config::Config;
use crate::net::tls::read_certs;

/// The TLS ends of this node's peer connections.
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// The name the connector sends; never checked (see the module's doc), never sent as SNI.
const PEER_NAME: &str = "shoal-peer";

impl PeerTls {
    /// The peer TLS `config` describes, or `None` without `--tls-cluster yes`.
    pub fn from_config(config: &Config) -> Result<Option<PeerTls>, String> {
        if config.tls_cluster != "yes" {
            return Ok(None);
        }
        let (Some(cert_file), Some(key_file), Some(ca_file)) = (
            &config.tls_cert_file,
            &config.tls_key_file,
            &config.tls_ca_cert_file,
        ) else {
            return Err(
                "--tls-cluster yes needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file"
                    .into(),
            );
        };
        let (client_cert, client_key) =
            match (&config.tls_client_cert_file, &config.tls_client_key_file) {
                (Some(c), Some(k)) => (c, k),
                (None, None) => (cert_file, key_file),
                _ => {
                    return Err(
                        "--tls-client-cert-file and --tls-client-key-file go together".into(),
                    )
                }
            };
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_file)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(read_certs(cert_file)?, read_key(key_file)?)
            .map_err(|e| format!("TLS certificate and key: {e}"))?;

        let server_verifier = Arc::new(CaOnlyVerifier {
            roots,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_auth_cert(read_certs(client_cert)?, read_key(client_key)?)
            .map_err(|e| format!("TLS client certificate and key: {e}"))?;
        client.enable_sni = false;
        Ok(Some(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
        }))
    }

    /// The connecting side's TLS handshake over a fresh peer connection.
    pub async fn connect(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(PEER_NAME).expect("a valid DNS name");
        self.connector.connect(name, stream).await
    }

    /// The accepting side's TLS handshake: the peer must present a certificate from the CA.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<server::TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

/// Checks the accepting peer's certificate chain against the CA, and not its name.
#[derive(Debug)]
struct CaOnlyVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
