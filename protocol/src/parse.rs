//! Bytes → any RESP2/RESP3 frame (the client side of the wire, and tests).
//!
//! Two passes, as in tokio's mini-redis: [`check`] walks the buffer to learn whether a whole
//! frame is there and how long it is, without allocating; only then is the frame split off the
//! buffer and [`parse`]d, with every bulk payload a zero-copy slice of it. Partial input is never
//! half-consumed.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::encode::{encode, Version};
use crate::frame::Frame;
use crate::limits::{Limits, ProtocolError};

/// A codec for whole frames: decodes any frame, encodes frames for the chosen version.
#[derive(Debug, Default, Clone)]
pub struct FrameCodec {
    pub limits: Limits,
    pub version: Version,
}

impl FrameCodec {
    pub fn new(limits: Limits, version: Version) -> Self {
        FrameCodec { limits, version }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        decode_frame(src, &self.limits)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode(&item, self.version, dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode(item, self.version, dst);
        Ok(())
    }
}

/// Takes one whole frame off the front of `src`, or returns `None` (consuming nothing) when the
/// frame is not complete yet.
pub fn decode_frame(src: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let Some(len) = check(src, 0, limits, 0)? else {
        return Ok(None);
    };
    let data = src.split_to(len).freeze();
    let mut cursor = 0;
    let frame = parse(&data, &mut cursor)?;
    debug_assert_eq!(cursor, len);
    Ok(Some(frame))
}

/// Position of the first `\r\n` in `buf`.
pub(crate) fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\r', &buf[from..]) {
        let at = from + i;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

/// A strict decimal i64: optional `-`, digits only, no overflow.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        n = if neg {
            n.checked_mul(10)?.checked_sub(d)?
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(n)
}

/// The line starting at `at` (after its type byte), and where the next item starts.
fn line_at<'a>(
    buf: &'a [u8],
    at: usize,
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    match find_crlf(&buf[at..]) {
        Some(end) => Ok(Some((&buf[at..at + end], at + end + 2))),
        None if buf.len() - at > limits.max_inline_len => {
            Err(ProtocolError::InvalidValue("line: too long"))
        }
        None => Ok(None),
    }
}

fn length(line: &[u8], max: usize, what: &'static str) -> Result<Option<usize>, ProtocolError> {
    let n = parse_int(line).ok_or(ProtocolError::InvalidValue(what))?;
    if n == -1 {
        return Ok(None);
    }
    if n < 0 || n as u64 > max as u64 {
        return Err(ProtocolError::InvalidValue(what));
    }
    Ok(Some(n as usize))
}

/// Validates the frame starting at `at`; returns the offset just past it, or `None` if the
/// buffer ends first.
fn check(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<usize>, ProtocolError> {
    if depth > limits.max_depth {
        return Err(ProtocolError::TooDeep);
    }
    let Some(&tag) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line_at(buf, at + 1, limits)? else {
        return Ok(None);
    };
    match tag {
        b'+' | b'-' => {
            std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidValue("simple string"))?;
            Ok(Some(next))
        }
        b':' => parse_int(line)
            .map(|_| Some(next))
            .ok_or(ProtocolError::InvalidValue("integer")),
        b'_' if line.is_empty() => Ok(Some(next)),
        b'#' if line == b"t" || line == b"f" => Ok(Some(next)),
        b',' => parse_double(line).map(|_| Some(next)),
        b'(' => check_big_number(line).map(|_| Some(next)),
        b'$' | b'!' | b'=' => {
            let Some(len) = length(line, limits.max_bulk_len, "bulk length")? else {
                return if tag == b'$' {
                    Ok(Some(next))
                } else {
                    Err(ProtocolError::InvalidValue("bulk length"))
                };
            };
            if tag == b'=' && (len < 4 || buf.get(next + 3).is_some_and(|&c| c != b':')) {
                return Err(ProtocolError::InvalidValue("verbatim string"));
            }
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::InvalidValue("bulk terminator"));
            }
            Ok(Some(end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some(count) = length(line, limits.max_array_len, "aggregate length")? else {
                return if tag == b'*' {
                    Ok(Some(next))
                } else {
                    Err(ProtocolError::InvalidValue("aggregate length"))
                };
            };
            let items = if matches!(tag, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            let mut pos = next;
            for _ in 0..items {
                match check(buf, pos, limits, depth + 1)? {
                    Some(p) => pos = p,
                    None => return Ok(None),
                }
            }
            if tag == b'|' {
                // An attribute decorates the frame that follows it.
                return check(buf, pos, limits, depth + 1);
            }
            Ok(Some(pos))
        }
        other => Err(ProtocolError::InvalidType(other)),
    }
}

fn parse_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidValue("double"))?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ if text
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            && !text.is_empty() =>
        {
            text.parse()
                .map_err(|_| ProtocolError::InvalidValue("double"))
        }
        _ => Err(ProtocolError::InvalidValue("double")),
    }
}

fn check_big_number(line: &[u8]) -> Result<(), ProtocolError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::InvalidValue("big number"));
    }
    Ok(())
}

/// Builds the frame at `*cursor` from a buffer that [`check`] accepted.
fn parse(data: &Bytes, cursor: &mut usize) -> Result<Frame, ProtocolError> {
    let tag = data[*cursor];
    let start = *cursor + 1;
    let end = start + find_crlf(&data[start..]).ok_or(ProtocolError::InvalidValue("line"))?;
    let line = &data[start..end];
    *cursor = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let count = || parse_int(line).ok_or(ProtocolError::InvalidValue("length"));
    Ok(match tag {
        b'+' => Frame::Simple(text()),
        b'-' => Frame::Error(text()),
        b':' => Frame::Integer(count()?),
        b'_' => Frame::Null,
        b'#' => Frame::Boolean(line == b"t"),
        b',' => Frame::Double(parse_double(line)?),
        b'(' => Frame::BigNumber(text()),
        b'$' | b'!' | b'=' => {
            let n = count()?;
            if n < 0 {
                return Ok(Frame::Null);
            }
            let body = data.slice(*cursor..*cursor + n as usize);
            *cursor += n as usize + 2;
            match tag {
                b'$' => Frame::Bulk(body),
                b'!' => Frame::BulkError(body),
                _ => Frame::Verbatim {
                    format: [body[0], body[1], body[2]],
                    text: body.slice(4..),
                },
            }
        }
        b'*' | b'~' | b'>' => {
            let n = count()?;
            if n < 0 {
                return Ok(Frame::NullArray);
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(parse(data, cursor)?);
            }
            match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                _ => Frame::Push(items),
            }
        }
        b'%' | b'|' => {
            let n = count()?;
            let mut pairs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let k = parse(data, cursor)?;
                let v = parse(data, cursor)?;
                pairs.push((k, v));
            }
            if tag == b'%' {
                Frame::Map(pairs)
            } else {
                Frame::Attribute {
                    attributes: pairs,
                    data: Box::new(parse(data, cursor)?),
                }
            }
        }
        other => return Err(ProtocolError::InvalidType(other)),
    })
}

/// Skips a leading attribute if the caller does not care for it.
pub fn strip_attribute(frame: Frame) -> Frame {
    match frame {
        Frame::Attribute { data, .. } => strip_attribute(*data),
        other => other,
    }
}

/// Discards `n` bytes; re-exported for callers that frame by hand.
pub fn skip(buf: &mut BytesMut, n: usize) {
    buf.advance(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        decode_frame(&mut BytesMut::from(input), &Limits::default())
    }

    #[test]
    fn every_resp3_type_decodes() {
        assert_eq!(one(b"+OK\r\n"), Ok(Some(Frame::ok())));
        assert_eq!(one(b"$-1\r\n"), Ok(Some(Frame::Null)));
        assert_eq!(one(b"*-1\r\n"), Ok(Some(Frame::NullArray)));
        assert_eq!(one(b"_\r\n"), Ok(Some(Frame::Null)));
        assert_eq!(one(b"#f\r\n"), Ok(Some(Frame::Boolean(false))));
        assert_eq!(
            one(b",-inf\r\n"),
            Ok(Some(Frame::Double(f64::NEG_INFINITY)))
        );
        assert_eq!(
            one(b"(-123456789012345678901234567890\r\n"),
            Ok(Some(Frame::BigNumber(
                "-123456789012345678901234567890".into()
            )))
        );
        assert_eq!(
            one(b"=15\r\ntxt:Some string\r\n"),
            Ok(Some(Frame::Verbatim {
                format: *b"txt",
                text: Bytes::from("Some string")
            }))
        );
        assert_eq!(
            one(b"|1\r\n+ttl\r\n:3\r\n%1\r\n+a\r\n~1\r\n:1\r\n"),
            Ok(Some(Frame::Attribute {
                attributes: vec![(Frame::simple("ttl"), Frame::Integer(3))],
                data: Box::new(Frame::Map(vec![(
                    Frame::simple("a"),
                    Frame::Set(vec![Frame::Integer(1)])
                )])),
            }))
        );
        assert_eq!(
            one(b">1\r\n!3\r\nERR\r\n"),
            Ok(Some(Frame::Push(vec![Frame::BulkError(Bytes::from(
                "ERR"
            ))])))
        );
    }

    #[test]
    fn incomplete_input_consumes_nothing() {
        let input = b"*2\r\n$3\r\nfoo\r\n$3\r\nba";
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(decode_frame(&mut buf, &Limits::default()), Ok(None));
        assert_eq!(&buf[..], &input[..]);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        assert!(matches!(
            one(b"?\r\n"),
            Err(ProtocolError::InvalidType(b'?'))
        ));
        assert!(one(b":12a\r\n").is_err());
        assert!(one(b"$3\r\nfooXX").is_err());
        assert!(one(b"$99999999999\r\n").is_err());
        let deep = "*1\r\n".repeat(1000);
        assert_eq!(one(deep.as_bytes()), Err(ProtocolError::TooDeep));
    }

    #[test]
    fn parse_int_is_strict() {
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
    }
}
