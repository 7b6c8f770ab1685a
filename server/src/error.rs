//! Command errors, typed, with Redis's exact texts (clients match on them).

use shoal_protocol::Frame;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An integer outside a C int, where Redis reads one (its text, typo included).
    #[error("ERR value is out of range, value must between -2147483648 and 2147483647")]
    NotInt32,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR unknown command '{0}', with args beginning with: {1}")]
    UnknownCommand(String, String),
    #[error("ERR unknown subcommand '{0}'. Try {1} HELP.")]
    UnknownSubcommand(String, String),
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// No leader could take the request within the retry deadline (nothing was applied).
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    /// A write reached its group but leadership changed before it committed: it may or may
    /// not have taken effect.
    #[error("ERR the write's outcome is unknown; it may or may not have been applied: {0}")]
    Unknown(String),
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    Oom,
    #[error("ERR {0}")]
    Err(String),
    /// An error whose text carries its own code (`NOPROTO ...`).
    #[error("{0}")]
    Raw(String),
}

impl From<CommandError> for Frame {
    fn from(e: CommandError) -> Frame {
        Frame::error(e.to_string())
    }
}

/// What a command handler returns: a reply, or an error that becomes one.
pub type CommandResult = Result<Frame, CommandError>;
