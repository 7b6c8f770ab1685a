//! Frame → bytes, for RESP2 or RESP3 peers.

use bytes::{BufMut, BytesMut};

use crate::frame::Frame;

/// The protocol a connection speaks; `HELLO 3` switches a connection to RESP3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    #[default]
    Resp2,
    Resp3,
}

impl Version {
    /// The number `HELLO` takes and reports.
    pub fn number(self) -> i64 {
        match self {
            Version::Resp2 => 2,
            Version::Resp3 => 3,
        }
    }
}

/// Appends the wire form of `frame` to `out`, downgrading RESP3-only types for RESP2.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let v3 = version == Version::Resp3;
    match frame {
        Frame::Simple(s) => line(out, b'+', s.as_bytes()),
        Frame::Error(s) => line(out, b'-', s.as_bytes()),
        Frame::Integer(n) => integer(out, b':', *n as i128),
        Frame::Bulk(b) => bulk(out, b'$', b),
        Frame::Null if v3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if v3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => aggregate(out, b'*', items, version),
        Frame::Set(items) => aggregate(out, if v3 { b'~' } else { b'*' }, items, version),
        Frame::Push(items) => aggregate(out, if v3 { b'>' } else { b'*' }, items, version),
        Frame::Map(pairs) => {
            if v3 {
                integer(out, b'%', pairs.len() as i128);
            } else {
                integer(out, b'*', 2 * pairs.len() as i128);
            }
            for (k, v) in pairs {
                encode(k, version, out);
                encode(v, version, out);
            }
        }
        Frame::Pairs(pairs) if v3 => {
            integer(out, b'*', pairs.len() as i128);
            for (k, v) in pairs {
                out.put_slice(b"*2\r\n");
                encode(k, version, out);
                encode(v, version, out);
            }
        }
        Frame::Pairs(pairs) => {
            integer(out, b'*', 2 * pairs.len() as i128);
            for (k, v) in pairs {
                encode(k, version, out);
                encode(v, version, out);
            }
        }
        Frame::Double(d) => {
            let text = format_reply_double(*d);
            if v3 {
                line(out, b',', text.as_bytes());
            } else {
                bulk(out, b'$', text.as_bytes());
            }
        }
        Frame::Boolean(b) if v3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => integer(out, b':', *b as i128),
        Frame::BigNumber(digits) if v3 => line(out, b'(', digits.as_bytes()),
        Frame::BigNumber(digits) => bulk(out, b'$', digits.as_bytes()),
        Frame::Verbatim { format, text } if v3 => {
            integer(out, b'=', (text.len() + 4) as i128);
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Frame::Verbatim { text, .. } => bulk(out, b'$', text),
        Frame::BulkError(b) if v3 => bulk(out, b'!', b),
        Frame::BulkError(b) => {
            let text: Vec<u8> = b
                .iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
                .collect();
            line(out, b'-', &text);
        }
        Frame::Attribute { attributes, data } => {
            if v3 {
                integer(out, b'|', attributes.len() as i128);
                for (k, v) in attributes {
                    encode(k, version, out);
                    encode(v, version, out);
                }
            }
            encode(data, version, out);
        }
    }
}

/// Encodes a command (an array of bulk strings), the form every client sends.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    integer(out, b'*', args.len() as i128);
    for a in args {
        bulk(out, b'$', a.as_ref());
    }
}

/// Redis's text for a double: `inf`, `-inf`, `nan`, else the shortest form that reads back
/// to the same value, never in exponent notation.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d}")
    }
}

/// Redis 7.0's text for a double in a reply (`ZSCORE`, `WITHSCORES`): C's `%.17g`
/// (`0.1` is `0.10000000000000001`, `1e20` is `1e+20`), `inf`/`-inf`/`nan`.
pub fn format_reply_double(d: f64) -> String {
    if !d.is_finite() {
        return format_double(d);
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{d:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        trim(&format!("{d:.*}", (16 - exp) as usize))
    }
}

fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(tag);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn integer(out: &mut BytesMut, tag: u8, n: i128) {
    line(out, tag, itoa::Buffer::new().format(n).as_bytes());
}

fn bulk(out: &mut BytesMut, tag: u8, data: &[u8]) {
    out.reserve(data.len() + 16);
    integer(out, tag, data.len() as i128);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, tag: u8, items: &[Frame], version: Version) {
    integer(out, tag, items.len() as i128);
    for item in items {
        encode(item, version, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(frame: &Frame, version: Version) -> String {
        let mut out = BytesMut::new();
        encode(frame, version, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn resp2_downgrades_resp3_types_like_redis() {
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(wire(&map, Version::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(wire(&map, Version::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(wire(&Frame::Double(1.5), Version::Resp2), "$3\r\n1.5\r\n");
        assert_eq!(wire(&Frame::Double(1.5), Version::Resp3), ",1.5\r\n");
        assert_eq!(wire(&Frame::Boolean(true), Version::Resp2), ":1\r\n");
        assert_eq!(wire(&Frame::Null, Version::Resp2), "$-1\r\n");
        assert_eq!(wire(&Frame::NullArray, Version::Resp2), "*-1\r\n");
        assert_eq!(wire(&Frame::Null, Version::Resp3), "_\r\n");
    }

    #[test]
    fn doubles_never_use_exponents() {
        assert_eq!(format_double(1e21), "1000000000000000000000");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
        assert_eq!(format_double(5200.0), "5200");
        let pairs = Frame::Pairs(vec![(Frame::bulk("m"), Frame::Double(1.5))]);
        assert_eq!(
            wire(&pairs, Version::Resp2),
            "*2\r\n$1\r\nm\r\n$3\r\n1.5\r\n"
        );
        assert_eq!(
            wire(&pairs, Version::Resp3),
            "*1\r\n*2\r\n$1\r\nm\r\n,1.5\r\n"
        );
        assert_eq!(format_reply_double(0.1), "0.10000000000000001");
        assert_eq!(format_reply_double(1.5), "1.5");
        assert_eq!(format_reply_double(1e20), "1e+20");
        assert_eq!(format_reply_double(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(
            format_reply_double(123456789012345678.0),
            "1.2345678901234568e+17"
        );
        assert_eq!(format_reply_double(-2.0), "-2");
    }

    #[test]
    fn error_text_cannot_break_framing() {
        assert_eq!(
            wire(&Frame::error("ERR a\r\nb"), Version::Resp2),
            "-ERR a  b\r\n"
        );
    }
}
