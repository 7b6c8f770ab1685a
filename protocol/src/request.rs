//! The server side of the wire: bytes → commands (`Vec<Bytes>`).
//!
//! Clients send either an array of bulk strings or an inline line (`telnet`, `redis-cli` in
//! inline mode). The decoder keeps its place between calls, so a huge `MSET` that arrives in a
//! thousand reads is parsed once, in linear time, and every argument is a zero-copy slice of the
//! read buffer.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::limits::{Limits, ProtocolError, UNAUTHENTICATED_MAX_ARRAY, UNAUTHENTICATED_MAX_BULK};
use crate::parse::{find_crlf, parse_int};

/// Decodes client requests. One per connection.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    /// Until the client authenticates, Redis 7's much smaller limits apply.
    unauthenticated: bool,
    /// A multibulk request in progress: arguments still expected, and those already read.
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    remaining: usize,
    args: Vec<Bytes>,
    /// The length of the bulk whose `$<n>` header was consumed but whose body has not arrived.
    bulk_len: Option<usize>,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            unauthenticated: false,
            pending: None,
        }
    }

    /// Applies (or lifts) the limits for a client that has not authenticated yet.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes the decoder still needs before the current bulk argument is complete (0 if it is
    /// not inside one). Lets a connection read a large argument in one go.
    pub fn bulk_bytes_wanted(&self, buffered: usize) -> usize {
        match &self.pending {
            Some(Pending {
                bulk_len: Some(n), ..
            }) => (n + 2).saturating_sub(buffered),
            _ => 0,
        }
    }

    /// Returns the next complete command, `None` if more bytes are needed.
    pub fn decode_request(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.pending.is_none() {
                // Skip empty lines and empty multibulks, as Redis does.
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        let Some(count) =
                            self.read_header(buf, ProtocolError::TooBigMultibulkCount)?
                        else {
                            return Ok(None);
                        };
                        let count =
                            parse_int(&count).ok_or(ProtocolError::InvalidMultibulkLength)?;
                        if count > self.limits.max_array_len as i64 {
                            return Err(ProtocolError::InvalidMultibulkLength);
                        }
                        if self.unauthenticated && count > UNAUTHENTICATED_MAX_ARRAY as i64 {
                            return Err(ProtocolError::UnauthenticatedMultibulkLength);
                        }
                        if count <= 0 {
                            continue;
                        }
                        let count = count as usize;
                        self.pending = Some(Pending {
                            remaining: count,
                            // Never trust the announced size for an allocation.
                            args: Vec::with_capacity(count.min(1024)),
                            bulk_len: None,
                        });
                    }
                    Some(_) => match self.decode_inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    },
                }
            }
            return self.decode_multibulk(buf);
        }
    }

    fn decode_multibulk(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            let pending = self
                .pending
                .as_mut()
                .expect("called with a pending request");
            if pending.remaining == 0 {
                let args = std::mem::take(&mut pending.args);
                self.pending = None;
                return Ok(Some(args));
            }
            let len = match pending.bulk_len {
                Some(len) => len,
                None => {
                    let Some(first) = buf.first().copied() else {
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedDollar(first as char));
                    }
                    let Some(header) = self.read_header(buf, ProtocolError::TooBigBulkCount)?
                    else {
                        return Ok(None);
                    };
                    let len = parse_int(&header).ok_or(ProtocolError::InvalidBulkLength)?;
                    if len < 0 || len as u64 > self.limits.max_bulk_len as u64 {
                        return Err(ProtocolError::InvalidBulkLength);
                    }
                    if self.unauthenticated && len as u64 > UNAUTHENTICATED_MAX_BULK as u64 {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    let pending = self.pending.as_mut().expect("still pending");
                    pending.bulk_len = Some(len as usize);
                    len as usize
                }
            };
            if buf.len() < len + 2 {
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Redis does not check the terminator either; it skips two bytes.
            buf.advance(2);
            let pending = self.pending.as_mut().expect("still pending");
            pending.args.push(arg);
            pending.remaining -= 1;
            pending.bulk_len = None;
        }
    }

    /// Reads a `*<n>\r\n` / `$<n>\r\n` line, returning the bytes after the type byte.
    fn read_header(
        &self,
        buf: &mut BytesMut,
        too_big: ProtocolError,
    ) -> Result<Option<Bytes>, ProtocolError> {
        match find_crlf(buf) {
            Some(end) => {
                let line = buf.split_to(end + 2).freeze();
                Ok(Some(line.slice(1..end)))
            }
            None if buf.len() > self.limits.max_inline_len => Err(too_big),
            None => Ok(None),
        }
    }

    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = memchr::memchr(b'\n', buf) else {
            return if buf.len() > self.limits.max_inline_len {
                Err(ProtocolError::TooBigInline)
            } else {
                Ok(None)
            };
        };
        if newline > self.limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        let line = buf.split_to(newline + 1);
        let mut line = &line[..newline];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        split_inline_args(line).map(Some)
    }
}

impl Decoder for RequestDecoder {
    type Item = Vec<Bytes>;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        self.decode_request(src)
    }
}

/// Splits an inline command into arguments with Redis's quoting rules (`sdssplitargs`):
/// `"..."` understands `\n \r \t \b \a \" \\ \xHH`; `'...'` understands `\'`; a closing quote must
/// be followed by a space or the end of the line. Like `sdssplitargs`, which reads a C string, a
/// NUL byte ends the line.
pub fn split_inline_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    // Without this cut an unquoted NUL would end an argument without being consumed, and the
    // outer loop (which skips only whitespace) would push empty arguments forever.
    let line = memchr::memchr(0, line).map_or(line, |nul| &line[..nul]);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let Some(&c) = line.get(i) else {
                if in_double || in_single {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            if in_double {
                if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3])) {
                        current.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    current.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                current.push(c);
            } else if in_single {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    current.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                current.push(c);
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(current));
    }
}

/// C's `isspace`, which `sdssplitargs` uses: unlike Rust's ASCII whitespace it includes the
/// vertical tab.
fn is_space(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cmd) = dec.decode_request(&mut buf)? {
            out.push(cmd);
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline_requests() {
        let cmds =
            decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nSET a \"b c\"\r\n\r\nPING\n").unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0], vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(
            cmds[1],
            vec![Bytes::from("SET"), Bytes::from("a"), Bytes::from("b c")]
        );
        assert_eq!(cmds[2], vec![Bytes::from("PING")]);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_commands() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nECHO 'it\\'s'\r\nGET x\r\n";
        let whole = decode_all(input).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0][2], Bytes::from("va\r\nl"));
        assert_eq!(whole[1][1], Bytes::from("it's"));
        for cut in 0..input.len() {
            let mut dec = RequestDecoder::default();
            let mut buf = BytesMut::from(&input[..cut]);
            let mut out = Vec::new();
            while let Some(cmd) = dec.decode_request(&mut buf).unwrap() {
                out.push(cmd);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(cmd) = dec.decode_request(&mut buf).unwrap() {
                out.push(cmd);
            }
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        assert_eq!(
            decode_all(b"*1\r\n$1000000000000\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$-5\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*99999999999\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n:1\r\n"),
            Err(ProtocolError::ExpectedDollar(':'))
        );
        let long = vec![b'a'; INLINE_MAX_TEST + 1];
        assert_eq!(decode_all(&long), Err(ProtocolError::TooBigInline));
        let mut long_header = b"*1\r\n$".to_vec();
        long_header.extend(vec![b'1'; INLINE_MAX_TEST + 1]);
        assert_eq!(
            decode_all(&long_header),
            Err(ProtocolError::TooBigBulkCount)
        );
    }

    const INLINE_MAX_TEST: usize = crate::limits::INLINE_MAX;

    #[test]
    fn inline_quoting_follows_sdssplitargs() {
        let args = split_inline_args(br#"set "a\x41\n" 'it\'s' plain"#).unwrap();
        assert_eq!(
            args,
            vec![
                Bytes::from("set"),
                Bytes::from("aA\n"),
                Bytes::from("it's"),
                Bytes::from("plain")
            ]
        );
        assert_eq!(
            split_inline_args(b"get \"abc"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            split_inline_args(b"get \"a\"b"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert!(split_inline_args(b"   ").unwrap().is_empty());
        assert_eq!(
            split_inline_args(b"a\x0bb").unwrap(),
            vec![Bytes::from("a\x0bb")]
        );
        assert_eq!(
            split_inline_args(b"\x0b a").unwrap(),
            vec![Bytes::from("a")]
        );
    }

    #[test]
    fn nul_ends_an_inline_line_like_sdssplitargs() {
        // Found by the fuzzer: an unquoted NUL used to loop forever pushing empty arguments.
        assert_eq!(
            split_inline_args(b"get a\0b c").unwrap(),
            vec![Bytes::from("get"), Bytes::from("a")]
        );
        assert_eq!(split_inline_args(b"\0set x").unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            split_inline_args(b"get \"a\0b\""),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            split_inline_args(b"get \"a\"\0junk").unwrap(),
            vec![Bytes::from("get"), Bytes::from("a")]
        );
        // The fuzzer's input: an inline line `\x01\0`, then the start of another.
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"\x01\x00\n\x80"[..]);
        assert_eq!(
            dec.decode_request(&mut buf),
            Ok(Some(vec![Bytes::from_static(b"\x01")]))
        );
        assert_eq!(dec.decode_request(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"\x80");
        // A line that is nothing but a NUL is an empty command, skipped.
        assert_eq!(
            decode_all(b"\0\r\nPING\r\n").unwrap(),
            vec![vec![Bytes::from("PING")]]
        );
    }

    #[test]
    fn unauthenticated_clients_get_redis_7_limits() {
        let mut dec = RequestDecoder::default();
        dec.set_unauthenticated(true);
        let mut ok = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$3\r\npwd\r\n"[..]);
        assert_eq!(dec.decode_request(&mut ok).unwrap().unwrap().len(), 2);
        let mut many = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(
            dec.decode_request(&mut many),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
        let mut dec = RequestDecoder::default();
        dec.set_unauthenticated(true);
        let mut big = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(
            dec.decode_request(&mut big),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        dec.set_unauthenticated(false);
        let mut dec2 = RequestDecoder::default();
        let mut big = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(dec2.decode_request(&mut big), Ok(None));
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let cmds = decode_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(cmds, vec![vec![Bytes::from("PING")]]);
    }
}
