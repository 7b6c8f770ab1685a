//! Argument parsing shared by command implementations.

use bytes::Bytes;

use crate::error::CommandError;
use crate::numbers::parse_i64;
use crate::store::{Expiry, UnixMillis};

pub fn int(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// A database index (`SELECT`, `COPY ... DB`): a C int as Redis reads it, and only database 0
/// exists (as in Redis Cluster).
pub fn db_index(arg: &[u8]) -> Result<(), CommandError> {
    match i32::try_from(int(arg)?) {
        Err(_) => Err(CommandError::NotInt32),
        Ok(0) => Ok(()),
        Ok(_) => Err(CommandError::DbIndexOutOfRange),
    }
}

/// Case-insensitive keyword comparison.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

pub fn text(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// The four ways to give a deadline (`EX`, `PX`, `EXAT`, `PXAT`), made absolute in unix ms.
/// `command` names the command in the error, as Redis does.
pub fn deadline(
    keyword: &[u8],
    value: &[u8],
    command: &'static str,
    now: UnixMillis,
) -> Result<Option<Expiry>, CommandError> {
    let (unit, relative) = if is(keyword, "ex") {
        (1000, true)
    } else if is(keyword, "px") {
        (1, true)
    } else if is(keyword, "exat") {
        (1000, false)
    } else if is(keyword, "pxat") {
        (1, false)
    } else {
        return Ok(None);
    };
    let n = int(value)?;
    if n <= 0 {
        return Err(CommandError::InvalidExpireTime(command));
    }
    absolute_ms(n, unit, relative, command, now).map(|at| Some(Expiry::At(at)))
}

/// `n` units (1000 for seconds, 1 for ms), relative to now or absolute, as unix ms; overflow is
/// Redis's "invalid expire time".
pub fn absolute_ms(
    n: i64,
    unit: i64,
    relative: bool,
    command: &'static str,
    now: UnixMillis,
) -> Result<i64, CommandError> {
    let invalid = CommandError::InvalidExpireTime(command);
    let ms = n.checked_mul(unit).ok_or(invalid.clone())?;
    if relative {
        ms.checked_add(now as i64).ok_or(invalid)
    } else {
        Ok(ms)
    }
}
