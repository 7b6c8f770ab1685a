//! What to do after one attempt: return, follow a redirect, retry after a backoff, or fail.
//!
//! The rule for writes: a write is only retried when it surely was not applied (it never left
//! the client, or the server refused it before proposing: `TRYAGAIN`, `CLUSTERDOWN`, `MOVED`).
//! A write that was sent and then lost its connection, timed out, or got the server's
//! "outcome is unknown" reply fails with [`Error::OutcomeUnknown`] instead.

use std::time::Duration;

use rand::Rng;
use shoal_protocol::Frame;

use crate::error::{Error, Redirect, ServerErrorKind};

pub(crate) enum Outcome {
    Reply(Frame),
    Moved {
        slot: u16,
        addr: String,
    },
    Ask {
        addr: String,
    },
    /// Safe to try again (after refreshing the topology and a backoff).
    Retry(Error),
    Fail(Error),
}

/// Sorts one attempt's result for a command that writes (`write`) or only reads.
pub(crate) fn classify(result: Result<Frame, Error>, write: bool) -> Outcome {
    let frame = match result {
        Ok(frame) => frame,
        Err(e) => return classify_error(e, write),
    };
    let message = match frame {
        Frame::Error(message) => message,
        Frame::BulkError(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        reply => return Outcome::Reply(reply),
    };
    match Redirect::parse(&message) {
        Some(Redirect::Moved { slot, addr }) => Outcome::Moved { slot, addr },
        Some(Redirect::Ask { addr }) => Outcome::Ask { addr },
        None => classify_error(Error::from_server(message), write),
    }
}

fn classify_error(error: Error, write: bool) -> Outcome {
    match &error {
        Error::Server {
            kind:
                ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown | ServerErrorKind::Loading,
            ..
        } => Outcome::Retry(error),
        Error::Connect { .. } | Error::CircuitOpen { .. } => Outcome::Retry(error),
        Error::ConnectionLost {
            request_sent: false,
            ..
        } => Outcome::Retry(error),
        Error::ConnectionLost { .. } | Error::Timeout { .. } if write => {
            Outcome::Fail(Error::OutcomeUnknown {
                reason: error.to_string(),
            })
        }
        Error::ConnectionLost { .. } | Error::Timeout { .. } => Outcome::Retry(error),
        _ => Outcome::Fail(error),
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in
/// `[0, min(max, base * 2^n))`, so clients that failed together do not retry together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max)
            .max(Duration::from_millis(1));
        rand::thread_rng().gen_range(Duration::ZERO..ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_not_retried_once_sent() {
        let lost = |sent| Error::ConnectionLost {
            addr: "a".into(),
            reason: "r".into(),
            request_sent: sent,
        };
        assert!(
            matches!(classify(Err(lost(true)), true), Outcome::Fail(e) if e.is_outcome_unknown())
        );
        assert!(matches!(
            classify(Err(lost(true)), false),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            classify(Err(lost(false)), true),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            classify(Ok(Frame::Error("TRYAGAIN no leader".into())), true),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            classify(Ok(Frame::Error("MOVED 5 h:1".into())), true),
            Outcome::Moved { slot: 5, .. }
        ));
        assert!(matches!(
            classify(
                Ok(Frame::Error("ERR the write's outcome is unknown; x".into())),
                true
            ),
            Outcome::Fail(e) if e.is_outcome_unknown()
        ));
        assert!(matches!(
            classify(Ok(Frame::Error("WRONGTYPE x".into())), false),
            Outcome::Fail(Error::Server {
                kind: ServerErrorKind::WrongType,
                ..
            })
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        };
        for attempt in 0..40 {
            assert!(b.delay(attempt) < Duration::from_millis(100));
        }
        assert!(b.delay(0) < Duration::from_millis(10));
    }
}
