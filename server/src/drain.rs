//! A graceful stop (SIGTERM) that leaves no client with a request whose outcome is unknown.
//!
//! The order (`lib.rs::run`): stop accepting; hand every leadership over (requests keep
//! being served meanwhile: proposals already appended are answered when they apply, later ones
//! are redirected or forwarded); then **drain** ([`Drain::begin`]): each client connection
//! finishes the requests it has read and flushes their replies; from then on it answers every
//! request it reads with [`SHUTTING_DOWN`] (`-TRYAGAIN`, not run: safe to retry elsewhere), and
//! closes once its client has gone quiet or closed, or at the drain deadline. Forwarded
//! requests peers sent are finished ([`Drain::peer_work_done`]) before the groups stop, and
//! their replies go out before the peer connections close.
//!
//! Why close only a quiet connection: a request the client writes while the server closes is
//! lost with the socket, and the client cannot tell whether it ran. A connection that has been
//! silent for [`QUIET`] has no request in flight, so closing it loses none. shoal-client takes
//! the `SHUTTING_DOWN` reply as a sign to stop using the connection (it retires it and closes
//! it itself), so under load its connections close from its side, without that race; a client
//! that sends just as a quiet connection closes is the residual case.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long connections have, once the drain begins, to finish what they read and go quiet.
pub const CLIENT_DRAIN: Duration = Duration::from_secs(3);
/// A draining connection whose client sent nothing for this long is closed.
pub const QUIET: Duration = Duration::from_millis(200);
/// How long a closed connection's late bytes are read (and dropped) so that the close is a
/// FIN, not a reset that could discard replies the client has not read yet.
pub const LINGER: Duration = Duration::from_millis(100);
/// How long forwarded requests in flight may take to finish once the clients are drained.
pub const PEER_DRAIN: Duration = Duration::from_secs(2);
/// How long a stopping node waits at most for its peers to stop forwarding to it.
pub const PEER_QUIET_WAIT: Duration = Duration::from_secs(1);

/// The reply to a request read after the drain deadline: not run, safe to retry elsewhere.
pub const SHUTTING_DOWN: &str = "TRYAGAIN this node is shutting down; retry on another node";

#[derive(Default)]
pub struct Drain {
    started: CancellationToken,
    /// When connections stop running requests (set once by [`Drain::begin`]).
    deadline: OnceLock<Instant>,
    /// Forwarded requests (and transactions) peers sent that are running here.
    peer_work: AtomicUsize,
    /// When a peer last sent one (milliseconds since `epoch`).
    last_peer_work_ms: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Drain {
    /// Starts draining the client connections; they have `within` to finish.
    pub fn begin(&self, within: Duration) {
        let _ = self.deadline.set(Instant::now() + within);
        self.started.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Resolves when the drain begins.
    pub async fn started(&self) {
        self.started.cancelled().await
    }

    /// When connections stop running requests, once draining.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Whether the drain deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Counts a peer's request as running here until the guard is dropped.
    pub fn peer_work(&self) -> PeerWork<'_> {
        self.peer_work.fetch_add(1, Ordering::AcqRel);
        let ms = self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64;
        self.last_peer_work_ms.store(ms, Ordering::Release);
        PeerWork(self)
    }

    /// Waits (up to `within`) until no peer has sent a forwarded request for [`QUIET`]: a
    /// peer still forwarding here (it has not yet learnt this node no longer leads) gets its
    /// refusals answered rather than lost with the closing connection, and retries elsewhere.
    pub async fn peers_quiet(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let epoch = *self.epoch.get_or_init(Instant::now);
        loop {
            let last =
                epoch + Duration::from_millis(self.last_peer_work_ms.load(Ordering::Acquire));
            let quiet_at = last + QUIET;
            if Instant::now() >= quiet_at || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(quiet_at.min(deadline)).await;
        }
    }

    /// Waits (up to `within`) until no forwarded request is running here; false on timeout.
    pub async fn peer_work_done(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.peer_work.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// A peer request running here (see [`Drain::peer_work`]).
pub struct PeerWork<'a>(&'a Drain);

impl Drop for PeerWork<'_> {
    fn drop(&mut self) {
        self.0.peer_work.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peer_work_is_counted_until_dropped() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        assert!(drain.deadline().is_none());
        let work = drain.peer_work();
        assert!(!drain.peer_work_done(Duration::from_millis(30)).await);
        drop(work);
        assert!(drain.peer_work_done(Duration::from_millis(30)).await);
        drain.begin(Duration::ZERO);
        assert!(drain.is_draining());
        assert!(drain.past_deadline());
        drain.started().await;
    }
}
