//! RESP frames: one enum for every RESP2 and RESP3 type.
//!
//! Frames are built without regard to the protocol version a connection speaks; the encoder
//! ([`crate::encode`]) downgrades RESP3-only types for RESP2 peers the way Redis does (a map
//! becomes a flat array, a double a bulk string, a boolean an integer, ...). Keeping that rule in
//! one place means command code never branches on the protocol version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One RESP value.
///
/// Simple strings and errors are `String` because they are single text lines by definition
/// (they cannot contain CR or LF); everything binary-safe is `Bytes`, sliced without copying
/// from the buffer it was read from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR message`; the text starts with the error code (`ERR`, `WRONGTYPE`, `MOVED` ...).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The null array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*2\r\n...`
    Array(Vec<Frame>),
    /// RESP3 `%`: key/value pairs in order. RESP2: a flat array.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~`. RESP2: an array.
    Set(Vec<Frame>),
    /// Pairs as Redis 7 answers `WITHSCORES`/`WITHVALUES`: RESP3 an array of two-element
    /// arrays, RESP2 one flat array. Only sent, never decoded.
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 `,`. RESP2: a bulk string.
    Double(f64),
    /// RESP3 `#t` / `#f`. RESP2: the integer 1 / 0.
    Boolean(bool),
    /// RESP3 `(`: the decimal digits, with an optional leading `-`. RESP2: a bulk string.
    BigNumber(String),
    /// RESP3 `=`: a three-letter format (`txt`, `mkd`) and the text. RESP2: a bulk string.
    Verbatim { format: [u8; 3], text: Bytes },
    /// RESP3 `!`: an error with a binary-safe body. RESP2: a simple error.
    BulkError(Bytes),
    /// RESP3 `>`: out-of-band data (pub/sub messages). RESP2: an array.
    Push(Vec<Frame>),
    /// RESP3 `|`: attributes describing the frame that follows them. RESP2: just that frame.
    Attribute {
        attributes: Vec<(Frame, Frame)>,
        data: Box<Frame>,
    },
}

impl Frame {
    /// `+OK`, the most common reply.
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// A simple string reply.
    pub fn simple(s: impl Into<String>) -> Frame {
        Frame::Simple(s.into())
    }

    /// An error reply. The text must start with the error code, e.g. `"ERR syntax error"`.
    /// CR and LF are replaced by spaces so a message can never break the framing.
    pub fn error(s: impl Into<String>) -> Frame {
        let mut s: String = s.into();
        if s.contains(['\r', '\n']) {
            s = s.replace(['\r', '\n'], " ");
        }
        Frame::Error(s)
    }

    /// A bulk string reply.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// A bulk string holding the decimal form of `n`.
    pub fn bulk_int(n: i64) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(
            itoa::Buffer::new().format(n).as_bytes(),
        ))
    }

    /// A bulk string or null, from an optional value.
    pub fn bulk_or_null(b: Option<impl Into<Bytes>>) -> Frame {
        b.map_or(Frame::Null, |b| Frame::Bulk(b.into()))
    }

    /// An array of bulk strings.
    pub fn bulk_array<I, B>(items: I) -> Frame
    where
        I: IntoIterator<Item = B>,
        B: Into<Bytes>,
    {
        Frame::Array(items.into_iter().map(|b| Frame::Bulk(b.into())).collect())
    }

    /// True for `Error` and `BulkError`.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BulkError(_))
    }

    /// The bytes of a string-like frame (simple, bulk, verbatim), if it is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(s) => Some(s.as_bytes()),
            Frame::Bulk(b) => Some(b),
            Frame::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }
}
