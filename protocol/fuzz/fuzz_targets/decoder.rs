//! Feeds arbitrary bytes to both decoders: the server's `RequestDecoder` and the generic
//! `decode_frame`. Neither may panic, hang or consume input it did not decode, and every frame
//! `decode_frame` returns must survive a RESP3 re-encode → decode round trip.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_protocol::{decode_frame, encode, Frame, Limits, RequestDecoder, Version};

fuzz_target!(|data: &[u8]| {
    requests(data);
    frames(data);
});

fn requests(data: &[u8]) {
    // Whole, then in two halves (the decoder keeps state between calls).
    let whole = drain_requests(data, data.len().max(1));
    let split = drain_requests(data, data.len() / 2 + 1);
    if let (Ok(a), Ok(b)) = (&whole, &split) {
        assert_eq!(a, b, "split input decoded differently");
    }
}

fn drain_requests(
    data: &[u8],
    chunk: usize,
) -> Result<Vec<Vec<bytes::Bytes>>, shoal_protocol::ProtocolError> {
    let mut dec = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match dec.decode_request(&mut buf)? {
                Some(cmd) => {
                    assert!(buf.len() < before, "a command was produced from no input");
                    out.push(cmd);
                }
                None => break,
            }
        }
    }
    Ok(out)
}

fn frames(data: &[u8]) {
    let limits = Limits::default();
    let mut buf = BytesMut::from(data);
    while !buf.is_empty() {
        let before = buf.clone();
        match decode_frame(&mut buf, &limits) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before.len());
                round_trip(&frame, &limits);
            }
            Ok(None) => {
                assert_eq!(buf, before, "incomplete input was consumed");
                break;
            }
            Err(_) => break,
        }
    }
}

fn round_trip(frame: &Frame, limits: &Limits) {
    let mut wire = BytesMut::new();
    encode(frame, Version::Resp3, &mut wire);
    let first = wire.clone();
    let again = decode_frame(&mut wire, limits)
        .expect("re-encoded frame must decode")
        .expect("re-encoded frame must be complete");
    assert!(wire.is_empty(), "re-encoded frame left bytes over");
    assert!(
        same(&canonical(frame), &again),
        "round trip changed the frame: {frame:?} -> {again:?}"
    );
    // Encoding is a fixpoint after one round trip (this also covers NaN).
    let mut second = BytesMut::new();
    encode(&again, Version::Resp3, &mut second);
    assert_eq!(first, second);

    // RESP2 downgrades lose types, but must still be well-framed: exactly one frame, wholly
    // consumed. (Simple-error text must be UTF-8, so a binary BulkError may be refused.)
    let mut wire2 = BytesMut::new();
    encode(frame, Version::Resp2, &mut wire2);
    if let Ok(decoded) = decode_frame(&mut wire2, limits) {
        assert!(decoded.is_some(), "RESP2 encoding is incomplete");
        assert!(wire2.is_empty(), "RESP2 encoding left bytes over");
    }
}

/// What RESP3 can express: it has a single null.
fn canonical(frame: &Frame) -> Frame {
    let pairs = |p: &[(Frame, Frame)]| -> Vec<(Frame, Frame)> {
        p.iter()
            .map(|(k, v)| (canonical(k), canonical(v)))
            .collect()
    };
    match frame {
        Frame::NullArray => Frame::Null,
        Frame::Array(items) => Frame::Array(items.iter().map(canonical).collect()),
        Frame::Set(items) => Frame::Set(items.iter().map(canonical).collect()),
        Frame::Push(items) => Frame::Push(items.iter().map(canonical).collect()),
        Frame::Map(p) => Frame::Map(pairs(p)),
        Frame::Attribute { attributes, data } => Frame::Attribute {
            attributes: pairs(attributes),
            data: Box::new(canonical(data)),
        },
        other => other.clone(),
    }
}

/// Structural equality in which NaN equals NaN.
fn same(a: &Frame, b: &Frame) -> bool {
    let all =
        |x: &[Frame], y: &[Frame]| x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b));
    let pairs = |x: &[(Frame, Frame)], y: &[(Frame, Frame)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|((ak, av), (bk, bv))| same(ak, bk) && same(av, bv))
    };
    match (a, b) {
        (Frame::Double(x), Frame::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Frame::Array(x), Frame::Array(y))
        | (Frame::Set(x), Frame::Set(y))
        | (Frame::Push(x), Frame::Push(y)) => all(x, y),
        (Frame::Map(x), Frame::Map(y)) => pairs(x, y),
        (
            Frame::Attribute {
                attributes: xa,
                data: xd,
            },
            Frame::Attribute {
                attributes: ya,
                data: yd,
            },
        ) => pairs(xa, ya) && same(xd, yd),
        _ => a == b,
    }
}
