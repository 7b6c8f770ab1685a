//! Peer authentication: before a single Raft or forwarded message crosses a peer connection,
//! both ends prove they know the cluster secret, by HMAC-SHA256 challenge-response.
//!
//! ```text
//! connector -> acceptor   MAGIC, nonce_c                      (40 bytes)
//! acceptor  -> connector  MAGIC, nonce_a, HMAC(k, "acceptor" nonce_c nonce_a)   (72 bytes)
//! connector -> acceptor   HMAC(k, "connector" nonce_a nonce_c)                 (32 bytes)
//! acceptor  -> connector  ACCEPTED                             (1 byte)
//! ```
//!
//! Each side proves knowledge of `k` over a fresh nonce chosen by the other, so a recorded
//! exchange cannot be replayed, and the two proofs carry different labels, so one side's proof
//! can never be reflected back as the other's. The connector checks the acceptor too: a node
//! never sends data to a process that does not know the secret. Every message has a fixed size
//! (nothing is allocated from what the other end claims) and the whole exchange has a deadline,
//! so a stranger cannot hold a peer slot open.
//!
//! With no secret configured the key is empty: nodes without a secret still run the exchange
//! (and so only talk to each other), which is "open", like Redis without `requirepass`. The
//! handshake is generic over the stream: under `--tls-cluster yes` it runs inside TLS (the
//! certificates say a peer belongs to the cluster's CA, the secret that it belongs to this
//! cluster; either alone refuses a stranger).
//!
//! What it does not give on its own: confidentiality and per-frame integrity after the
//! handshake (the frames keep their CRC only). Against an attacker who can read or rewrite TCP
//! segments in flight, `--tls-cluster yes` adds both.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::peer_tls::PeerTls;

/// Opens every handshake: protocol name and version, so a stray client fails fast.
const MAGIC: &[u8; 8] = b"SHOALPA1";
const NONCE: usize = 32;
const MAC: usize = 32;
const ACCEPTED: u8 = b'+';
/// How long either side waits for the other to finish the exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type HmacSha256 = Hmac<Sha256>;

/// How this node and its peers prove themselves to each other: the cluster secret, and with
/// `--tls-cluster yes` the certificates of mutual TLS, inside which the secret's exchange runs.
#[derive(Clone, Default)]
pub struct PeerAuth {
    key: Vec<u8>,
    tls: Option<Arc<PeerTls>>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PeerAuth")
            .field("open", &self.is_open())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("not a shoal peer (bad handshake greeting)")]
    NotAPeer,
    #[error("the peer does not know the cluster secret")]
    WrongSecret,
    #[error("the peer refused our proof of the cluster secret (different --cluster-secret?)")]
    Refused,
    #[error("the peer handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("peer TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("peer handshake: {0}")]
    Io(#[from] std::io::Error),
}

impl PeerAuth {
    /// `secret`: the cluster secret; `None` (or empty) leaves the cluster open.
    pub fn new(secret: Option<&[u8]>) -> PeerAuth {
        PeerAuth {
            key: secret.unwrap_or_default().to_vec(),
            tls: None,
        }
    }

    /// The same, with peer connections wrapped in mutual TLS first (`--tls-cluster yes`).
    pub fn with_tls(mut self, tls: Option<PeerTls>) -> PeerAuth {
        self.tls = tls.map(Arc::new);
        self
    }

    /// The peer TLS, when the peer port speaks it.
    pub fn tls(&self) -> Option<&PeerTls> {
        self.tls.as_deref()
    }

    /// True when no secret is configured: any shoal node without one may join.
    pub fn is_open(&self) -> bool {
        self.key.is_empty()
    }

    fn prove(&self, label: &[u8], theirs: &[u8], ours: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(theirs);
        mac.update(ours);
        mac
    }

    /// The connecting side of the exchange; `Ok` means both ends know the secret.
    pub async fn connect<S>(&self, stream: &mut S) -> Result<(), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        with_deadline(async {
            let nonce_c = fresh_nonce();
            let mut hello = [0u8; 8 + NONCE];
            hello[..8].copy_from_slice(MAGIC);
            hello[8..].copy_from_slice(&nonce_c);
            stream.write_all(&hello).await?;
            stream.flush().await?;
            let mut challenge = [0u8; 8 + NONCE + MAC];
            stream.read_exact(&mut challenge).await?;
            if &challenge[..8] != MAGIC {
                return Err(HandshakeError::NotAPeer);
            }
            let nonce_a = &challenge[8..8 + NONCE];
            self.prove(b"acceptor", &nonce_c, nonce_a)
                .verify_slice(&challenge[8 + NONCE..])
                .map_err(|_| HandshakeError::WrongSecret)?;
            let proof = self
                .prove(b"connector", nonce_a, &nonce_c)
                .finalize()
                .into_bytes();
            stream.write_all(&proof).await?;
            stream.flush().await?;
            let mut verdict = [0u8; 1];
            match stream.read_exact(&mut verdict).await {
                Ok(_) if verdict[0] == ACCEPTED => Ok(()),
                Ok(_) => Err(HandshakeError::Refused),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Err(HandshakeError::Refused)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The accepting side of the exchange; `Ok` means both ends know the secret.
    pub async fn accept<S>(&self, stream: &mut S) -> Result<(), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        with_deadline(async {
            let mut hello = [0u8; 8 + NONCE];
            stream.read_exact(&mut hello).await?;
            if &hello[..8] != MAGIC {
                return Err(HandshakeError::NotAPeer);
            }
            let nonce_c = &hello[8..];
            let nonce_a = fresh_nonce();
            let mut challenge = [0u8; 8 + NONCE + MAC];
            challenge[..8].copy_from_slice(MAGIC);
            challenge[8..8 + NONCE].copy_from_slice(&nonce_a);
            challenge[8 + NONCE..].copy_from_slice(
                &self
                    .prove(b"acceptor", nonce_c, &nonce_a)
                    .finalize()
                    .into_bytes(),
            );
            stream.write_all(&challenge).await?;
            stream.flush().await?;
            let mut proof = [0u8; MAC];
            stream.read_exact(&mut proof).await?;
            self.prove(b"connector", &nonce_a, nonce_c)
                .verify_slice(&proof)
                .map_err(|_| HandshakeError::WrongSecret)?;
            stream.write_all(&[ACCEPTED]).await?;
            stream.flush().await?;
            Ok(())
        })
        .await
    }
}

fn fresh_nonce() -> [u8; NONCE] {
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

async fn with_deadline(
    exchange: impl std::future::Future<Output = Result<(), HandshakeError>>,
) -> Result<(), HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(HandshakeError::Timeout(HANDSHAKE_TIMEOUT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(
        connector: &PeerAuth,
        acceptor: &PeerAuth,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::join!(connector.connect(&mut a), acceptor.accept(&mut b))
    }

    #[tokio::test]
    async fn the_same_secret_is_accepted_both_ways() {
        let auth = PeerAuth::new(Some(b"s3cret"));
        let (c, a) = exchange(&auth, &auth).await;
        assert!(c.is_ok() && a.is_ok(), "{c:?} {a:?}");
        let open = PeerAuth::new(None);
        let (c, a) = exchange(&open, &open).await;
        assert!(c.is_ok() && a.is_ok(), "{c:?} {a:?}");
    }

    #[tokio::test]
    async fn a_different_secret_is_refused_by_both_sides() {
        let real = PeerAuth::new(Some(b"s3cret"));
        let rogue = PeerAuth::new(Some(b"guess"));
        // A rogue connecting: it cannot verify the acceptor, and never sends a valid proof.
        let (c, a) = exchange(&rogue, &real).await;
        assert!(matches!(c, Err(HandshakeError::WrongSecret)), "{c:?}");
        assert!(a.is_err(), "{a:?}");
        // A rogue accepting: the real node refuses to talk to it.
        let (c, a) = exchange(&real, &rogue).await;
        assert!(matches!(c, Err(HandshakeError::WrongSecret)), "{c:?}");
        assert!(a.is_err(), "{a:?}");
        // An open node and a secret one do not mix either.
        let (c, _) = exchange(&PeerAuth::new(None), &real).await;
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn a_stranger_is_not_a_peer() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let auth = PeerAuth::new(Some(b"s3cret"));
        let (_, accepted) = tokio::join!(
            async move {
                a.write_all(b"*1\r\n$4\r\nPING\r\n0123456789012345678901234567")
                    .await
                    .unwrap();
                a
            },
            auth.accept(&mut b)
        );
        assert!(matches!(accepted, Err(HandshakeError::NotAPeer)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connector_times_out() {
        let (_a, mut b) = tokio::io::duplex(1024);
        let r = PeerAuth::new(Some(b"x")).accept(&mut b).await;
        assert!(matches!(r, Err(HandshakeError::Timeout(_))), "{r:?}");
    }
}
