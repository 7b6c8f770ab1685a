//! Input limits and the errors that enforce them.
//!
//! Every length a peer announces is checked against a limit *before* anything is allocated for
//! it, so a hostile `$1000000000000` costs nothing. The texts are Redis's own (networking.c), so
//! tools that parse them keep working.

use thiserror::Error;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline command or length line.
pub const INLINE_MAX: usize = 64 * 1024;

/// Redis 7's limits for a client that has not authenticated yet (when a password is set): a
/// stranger cannot make the server buffer large requests.
pub const UNAUTHENTICATED_MAX_ARRAY: usize = 10;
pub const UNAUTHENTICATED_MAX_BULK: usize = 16384;

/// Limits a decoder enforces. Defaults are Redis's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `proto-max-bulk-len`: the largest bulk string accepted (512 MB).
    pub max_bulk_len: usize,
    /// The most elements in one array/map/set (Redis caps a multibulk at 2^31-1; we keep a
    /// bound that still lets `MSET` carry a million pairs).
    pub max_array_len: usize,
    /// The longest inline command, and the longest `*<n>` / `$<n>` header line.
    pub max_inline_len: usize,
    /// How deeply aggregates may nest in a reply (guards the recursive parser's stack).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 16 * 1024 * 1024,
            max_inline_len: INLINE_MAX,
            max_depth: 128,
        }
    }
}

/// Why a peer's bytes were refused. The connection that sent them is closed after the error is
/// reported; nothing else is affected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("Protocol error: invalid frame type byte {0:#04x}")]
    InvalidType(u8),
    #[error("Protocol error: invalid {0}")]
    InvalidValue(&'static str),
    #[error("Protocol error: frames nested too deeply")]
    TooDeep,
    #[error("Protocol error: {0}")]
    Io(String),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e.to_string())
    }
}
