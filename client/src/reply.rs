//! Reply frames → Rust values.
//!
//! Error replies never reach these conversions: the client turns them into [`Error`]s first, so
//! a `FromReply` impl only decides whether a (non-error) frame has the shape it expects.

use bytes::Bytes;
use shoal_protocol::{parse_int, Frame};

use crate::error::Error;

/// A type a reply frame can be read into.
pub trait FromReply: Sized {
    fn from_reply(frame: Frame) -> Result<Self, Error>;
}

fn unexpected(want: &str, got: &Frame) -> Error {
    Error::UnexpectedReply(format!("expected {want}, got {got:?}"))
}

impl FromReply for Frame {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        Ok(frame)
    }
}

/// `+OK` (or any simple status).
impl FromReply for () {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Simple(_) => Ok(()),
            other => Err(unexpected("a status reply", &other)),
        }
    }
}

impl FromReply for Bytes {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Bulk(b) => Ok(b),
            Frame::Simple(s) => Ok(Bytes::from(s)),
            Frame::Verbatim { text, .. } => Ok(text),
            other => Err(unexpected("a string", &other)),
        }
    }
}

impl FromReply for String {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        let bytes = Bytes::from_reply(frame)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::UnexpectedReply("a string that is not UTF-8".into()))
    }
}

impl FromReply for i64 {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Integer(n) => Ok(n),
            Frame::Boolean(b) => Ok(b as i64),
            Frame::Bulk(ref b) => parse_int(b).ok_or_else(|| unexpected("an integer", &frame)),
            other => Err(unexpected("an integer", &other)),
        }
    }
}

impl FromReply for f64 {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Double(d) => Ok(d),
            Frame::Integer(n) => Ok(n as f64),
            Frame::Bulk(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected("a number", &frame)),
            other => Err(unexpected("a number", &other)),
        }
    }
}

/// `1`/`0`, `#t`/`#f`, `+OK` (true) and nil (false): how Redis says yes or no.
impl FromReply for bool {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Integer(n) => Ok(n != 0),
            Frame::Boolean(b) => Ok(b),
            Frame::Simple(_) => Ok(true),
            Frame::Null | Frame::NullArray => Ok(false),
            other => Err(unexpected("a yes/no reply", &other)),
        }
    }
}

/// Nil becomes `None`.
impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Null | Frame::NullArray => Ok(None),
            other => T::from_reply(other).map(Some),
        }
    }
}

/// Arrays (and RESP3 sets); a nil array is empty.
impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(frame: Frame) -> Result<Self, Error> {
        match frame {
            Frame::Array(items) | Frame::Set(items) => {
                items.into_iter().map(T::from_reply).collect()
            }
            Frame::NullArray => Ok(Vec::new()),
            other => Err(unexpected("an array", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(
            Option::<Bytes>::from_reply(Frame::Null).unwrap(),
            None::<Bytes>
        );
        assert_eq!(i64::from_reply(Frame::Integer(7)).unwrap(), 7);
        assert_eq!(i64::from_reply(Frame::bulk("-3")).unwrap(), -3);
        assert!(i64::from_reply(Frame::bulk("x")).is_err());
        assert!(bool::from_reply(Frame::ok()).unwrap());
        assert!(!bool::from_reply(Frame::Null).unwrap());
        let v: Vec<Option<Bytes>> =
            Vec::from_reply(Frame::Array(vec![Frame::bulk("a"), Frame::Null])).unwrap();
        assert_eq!(v, vec![Some(Bytes::from("a")), None]);
    }
}
