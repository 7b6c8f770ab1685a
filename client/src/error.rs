//! The client's one error type, and the reading of server error replies into it.

use std::time::Duration;

/// The kind of an error reply, from its code (the reply's first word).
///
/// Kinds that change what the client does (redirects, retries) or that callers commonly match
/// on have variants of their own; anything else keeps its code in [`ServerErrorKind::Other`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// `ERR ...`: the generic code (syntax errors, "value is not an integer", ...).
    Err,
    /// `WRONGTYPE`: the key holds a value of another type.
    WrongType,
    /// `NOAUTH`: a password is needed.
    NoAuth,
    /// `WRONGPASS`: the password (or user) was refused.
    WrongPass,
    /// `NOPERM`: the user may not run this command.
    NoPerm,
    /// `CROSSSLOT`: a multi-key command's keys hash to different slots.
    CrossSlot,
    /// `TRYAGAIN`: no leader could take the request right now; nothing was applied.
    TryAgain,
    /// `CLUSTERDOWN`: the slot is not served right now.
    ClusterDown,
    /// `MOVED`: the slot lives elsewhere (only seen when redirects ran out).
    Moved,
    /// `ASK`: the key is being migrated (only seen when redirects ran out).
    Ask,
    /// `LOADING`: the node is still loading its data.
    Loading,
    /// `READONLY`: a write was sent to a replica.
    ReadOnly,
    /// Any other code, as sent.
    Other(String),
}

impl ServerErrorKind {
    fn from_code(code: &str) -> ServerErrorKind {
        match code {
            "ERR" => ServerErrorKind::Err,
            "WRONGTYPE" => ServerErrorKind::WrongType,
            "NOAUTH" => ServerErrorKind::NoAuth,
            "WRONGPASS" => ServerErrorKind::WrongPass,
            "NOPERM" => ServerErrorKind::NoPerm,
            "CROSSSLOT" => ServerErrorKind::CrossSlot,
            "TRYAGAIN" => ServerErrorKind::TryAgain,
            "CLUSTERDOWN" => ServerErrorKind::ClusterDown,
            "MOVED" => ServerErrorKind::Moved,
            "ASK" => ServerErrorKind::Ask,
            "LOADING" => ServerErrorKind::Loading,
            "READONLY" => ServerErrorKind::ReadOnly,
            other => ServerErrorKind::Other(other.to_owned()),
        }
    }
}

/// Everything that can go wrong with a request.
///
/// Errors are `Clone` because one broken connection fails every request waiting on it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error reply. `message` is the whole reply text, code
    /// included (`"WRONGTYPE Operation against a key holding the wrong kind of value"`).
    #[error("{message}")]
    Server {
        kind: ServerErrorKind,
        message: String,
    },
    /// A write may or may not have been applied: the server said so (its leader was lost
    /// mid-commit), or the connection broke after the write had been handed to it, or no reply
    /// came in time. It is never retried by the client, because retrying a write that did
    /// apply (an `INCR`, an `APPEND`) would apply it twice. Read the key to learn the outcome,
    /// or retry yourself if the write is idempotent (a plain `SET`).
    #[error("the write's outcome is unknown (it may or may not have been applied): {reason}")]
    OutcomeUnknown { reason: String },
    /// Could not open (or set up) a connection to `addr`; nothing was sent.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection to `addr` broke. `request_sent` is false when the request was never
    /// handed to the socket (the connection was already gone), so it was surely not applied.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        addr: String,
        reason: String,
        request_sent: bool,
    },
    /// No reply within the response timeout.
    #[error("no reply from {addr} within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The node's circuit breaker is open: it failed repeatedly, so the client fails fast
    /// instead of waiting for it until a background probe finds it back.
    #[error("circuit breaker open for {addr}")]
    CircuitOpen { addr: String },
    /// The peer sent bytes that are not RESP.
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    /// The reply has a shape the caller's type cannot take (e.g. a string where a number was
    /// expected).
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// A request's keys hash to different slots, so no single node can run it. (Typed
    /// multi-key methods such as `mget` split their keys by slot instead.)
    #[error("the keys of one command hash to different slots")]
    CrossSlot,
    /// The request is malformed before it is sent (e.g. an empty command).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// More `MOVED`/`ASK` redirects than `max_redirects` for one request.
    #[error("too many redirects ({0}); the cluster's topology keeps changing")]
    TooManyRedirects(usize),
    /// None of the seeds answered.
    #[error("no seed could be reached: {0}")]
    NoReachableSeed(String),
    /// The retry deadline passed; `last` is the last attempt's error.
    #[error("gave up after {attempts} attempts in {elapsed:?}; last error: {last}")]
    DeadlineExceeded {
        attempts: u32,
        elapsed: Duration,
        last: Box<Error>,
    },
}

/// The text of the server's reply for a write whose leader was lost mid-commit.
const OUTCOME_UNKNOWN_PREFIX: &str = "ERR the write's outcome is unknown";

impl Error {
    /// Reads an error reply's text into an error.
    pub(crate) fn from_server(message: String) -> Error {
        if message.starts_with(OUTCOME_UNKNOWN_PREFIX) {
            return Error::OutcomeUnknown { reason: message };
        }
        let code = message.split(' ').next().unwrap_or_default();
        Error::Server {
            kind: ServerErrorKind::from_code(code),
            message,
        }
    }

    /// The server's error kind, when the server answered with an error (looking through
    /// [`Error::DeadlineExceeded`] to the last attempt).
    pub fn server_kind(&self) -> Option<&ServerErrorKind> {
        match self {
            Error::Server { kind, .. } => Some(kind),
            Error::DeadlineExceeded { last, .. } => last.server_kind(),
            _ => None,
        }
    }

    /// True when a write may have been applied even though it failed (see
    /// [`Error::OutcomeUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// True for I/O failures: connecting, a lost connection, a timeout, an open breaker.
    pub fn is_io(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectionLost { .. }
            | Error::Timeout { .. }
            | Error::CircuitOpen { .. } => true,
            Error::DeadlineExceeded { last, .. } => last.is_io(),
            _ => false,
        }
    }

    /// True for a timeout (of one attempt, or of the whole retry deadline).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::DeadlineExceeded { .. })
    }
}

/// Where an error reply redirects a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// `MOVED slot addr`: the slot now lives at `addr`; update the map.
    Moved { slot: u16, addr: String },
    /// `ASK slot addr`: for this request only, send `ASKING` then the command to `addr`.
    Ask { addr: String },
}

impl Redirect {
    /// Parses `MOVED 3999 127.0.0.1:6381` / `ASK 3999 127.0.0.1:6381`.
    pub(crate) fn parse(message: &str) -> Option<Redirect> {
        let mut words = message.split(' ');
        let code = words.next()?;
        let slot: u16 = words.next()?.parse().ok()?;
        let addr = words.next()?.to_owned();
        match code {
            "MOVED" => Some(Redirect::Moved { slot, addr }),
            "ASK" => Some(Redirect::Ask { addr }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_become_kinds() {
        let e = Error::from_server("WRONGTYPE Operation against a key".into());
        assert_eq!(e.server_kind(), Some(&ServerErrorKind::WrongType));
        let e = Error::from_server("FOO bar".into());
        assert_eq!(
            e.server_kind(),
            Some(&ServerErrorKind::Other("FOO".to_owned()))
        );
        let e = Error::from_server(
            "ERR the write's outcome is unknown; it may or may not have been applied: x".into(),
        );
        assert!(e.is_outcome_unknown());
    }

    #[test]
    fn redirects_parse() {
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            Redirect::parse("ASK 1 h:2"),
            Some(Redirect::Ask { addr: "h:2".into() })
        );
        assert_eq!(Redirect::parse("MOVED x h:1"), None);
        assert_eq!(Redirect::parse("ERR nope"), None);
    }
}
