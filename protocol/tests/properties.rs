//! Property tests for the wire format: encode/decode round trips for RESP2 and RESP3, split
//! (incremental) decoding, pipelined request decoding, robustness on arbitrary bytes, and the
//! key-slot function.
//!
//! Case counts are kept small so the whole file runs in a few seconds in a debug build.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use shoal_protocol::{
    decode_frame, encode, encode_command, key_slot, Frame, Limits, ProtocolError, RequestDecoder,
    Version, SLOT_COUNT,
};

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Text for simple strings and errors: any Unicode except CR and LF (which cannot appear on a
/// RESP line).
fn line_text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Finite doubles, including awkward ones (tiny, huge, negative zero, integral).
fn finite_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 1024.0),
    ]
}

fn big_number() -> impl Strategy<Value = String> {
    ("-?", "[0-9]{1,60}").prop_map(|(sign, digits)| format!("{sign}{digits}"))
}

/// Leaf frames in their canonical RESP3 form (no `NullArray`, which RESP3 sends as `_` = `Null`).
fn resp3_leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        binary(48).prop_map(Frame::Bulk),
        Just(Frame::Null),
        finite_double().prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big_number().prop_map(Frame::BigNumber),
        ("[a-z]{3}", binary(32)).prop_map(|(format, text)| Frame::Verbatim {
            format: format.as_bytes().try_into().unwrap(),
            text,
        }),
        binary(32).prop_map(Frame::BulkError),
    ]
}

fn resp3_frame() -> impl Strategy<Value = Frame> {
    resp3_leaf().prop_recursive(4, 48, 6, |inner| {
        let pairs = vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            pairs.clone().prop_map(Frame::Map),
            (pairs, inner).prop_map(|(attributes, data)| Frame::Attribute {
                attributes,
                data: Box::new(data),
            }),
        ]
    })
}

/// The RESP2 subset; every one of these survives a RESP2 round trip unchanged.
fn resp2_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        binary(48).prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| vec(inner, 0..6).prop_map(Frame::Array))
}

/// A random client command: 1..6 binary-safe arguments.
fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 0..40), 1..6)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encoded(frames: &[Frame], version: Version) -> BytesMut {
    let mut out = BytesMut::new();
    for f in frames {
        encode(f, version, &mut out);
    }
    out
}

/// Decodes every whole frame in `buf`, leaving any incomplete tail in it.
fn drain_frames(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), ProtocolError> {
    let limits = Limits::default();
    loop {
        let before = buf.clone();
        match decode_frame(buf, &limits)? {
            Some(frame) => out.push(frame),
            None => {
                // An incomplete frame must leave the buffer exactly as it was.
                assert_eq!(&buf[..], &before[..], "incomplete input was consumed");
                return Ok(());
            }
        }
    }
}

fn drain_requests(
    dec: &mut RequestDecoder,
    buf: &mut BytesMut,
    out: &mut Vec<Vec<Bytes>>,
) -> Result<(), ProtocolError> {
    while let Some(cmd) = dec.decode_request(buf)? {
        out.push(cmd);
    }
    Ok(())
}

fn to_bytes(cmd: &[Vec<u8>]) -> Vec<Bytes> {
    cmd.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn resp3_round_trip(frame in resp3_frame()) {
        let mut buf = encoded(std::slice::from_ref(&frame), Version::Resp3);
        let decoded = decode_frame(&mut buf, &Limits::default());
        prop_assert_eq!(decoded, Ok(Some(frame)));
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    }

    #[test]
    fn resp2_round_trip(frame in resp2_frame()) {
        let mut buf = encoded(std::slice::from_ref(&frame), Version::Resp2);
        let decoded = decode_frame(&mut buf, &Limits::default());
        prop_assert_eq!(decoded, Ok(Some(frame)));
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    }

    #[test]
    fn pipelined_requests_in_random_chunks(
        commands in vec(command(), 1..12),
        chunk_sizes in vec(1usize..64, 1..32),
    ) {
        let mut wire = BytesMut::new();
        for cmd in &commands {
            encode_command(cmd, &mut wire);
        }
        let expected: Vec<Vec<Bytes>> = commands.iter().map(|c| to_bytes(c)).collect();

        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut offset = 0;
        let mut sizes = chunk_sizes.iter().cycle();
        while offset < wire.len() {
            let end = (offset + sizes.next().unwrap()).min(wire.len());
            buf.extend_from_slice(&wire[offset..end]);
            offset = end;
            drain_requests(&mut dec, &mut buf, &mut got).unwrap();
            // Commands come out whole and in order, never ahead of the bytes that carry them.
            prop_assert!(got.len() <= expected.len());
            prop_assert_eq!(&got[..], &expected[..got.len()]);
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn pipelined_requests_split_at_every_offset(commands in vec(command(), 1..5)) {
        let mut wire = BytesMut::new();
        for cmd in &commands {
            encode_command(cmd, &mut wire);
        }
        let expected: Vec<Vec<Bytes>> = commands.iter().map(|c| to_bytes(c)).collect();
        for cut in 0..=wire.len() {
            let mut dec = RequestDecoder::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            drain_requests(&mut dec, &mut buf, &mut got).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            drain_requests(&mut dec, &mut buf, &mut got).unwrap();
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&got, &expected, "cut at {}", cut);
        }
    }

    #[test]
    fn key_slot_is_in_range(key in vec(any::<u8>(), 0..64)) {
        prop_assert!(key_slot(&key) < SLOT_COUNT);
    }

    #[test]
    fn keys_sharing_a_hash_tag_share_a_slot(
        tag in "[^{}]{1,16}",
        prefix_a in "[^{]{0,12}",
        prefix_b in "[^{]{0,12}",
        suffix_a in ".{0,12}",
        suffix_b in ".{0,12}",
    ) {
        let a = format!("{prefix_a}{{{tag}}}{suffix_a}");
        let b = format!("{prefix_b}{{{tag}}}{suffix_b}");
        let slot = key_slot(a.as_bytes());
        prop_assert!(slot < SLOT_COUNT);
        prop_assert_eq!(slot, key_slot(b.as_bytes()), "{:?} vs {:?}", a, b);
        // Both hash exactly the tag.
        prop_assert_eq!(slot, key_slot(tag.as_bytes()));
    }
}

proptest! {
    // Every-offset splitting is quadratic in the wire length; fewer cases keep it quick.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn decoding_split_at_every_offset_matches_whole(
        frames in vec(resp3_frame(), 1..4),
    ) {
        let wire = encoded(&frames, Version::Resp3);

        let mut whole = wire.clone();
        let mut expected = Vec::new();
        drain_frames(&mut whole, &mut expected).unwrap();
        prop_assert!(whole.is_empty());
        prop_assert_eq!(&expected, &frames);

        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            drain_frames(&mut buf, &mut got).unwrap();
            // Only whole frames are taken from the prefix; the rest stays, byte for byte.
            let consumed = cut - buf.len();
            prop_assert_eq!(&buf[..], &wire[consumed..cut]);
            prop_assert!(got.len() <= frames.len());
            prop_assert_eq!(&got[..], &frames[..got.len()]);

            buf.extend_from_slice(&wire[cut..]);
            drain_frames(&mut buf, &mut got).unwrap();
            prop_assert!(buf.is_empty(), "cut at {}: {} bytes left", cut, buf.len());
            prop_assert_eq!(&got, &frames, "cut at {}", cut);
        }
    }

    #[test]
    fn resp2_split_at_every_offset_matches_whole(
        frames in vec(resp2_frame(), 1..4),
    ) {
        let wire = encoded(&frames, Version::Resp2);
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            drain_frames(&mut buf, &mut got).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            drain_frames(&mut buf, &mut got).unwrap();
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&got, &frames, "cut at {}", cut);
        }
    }
}

proptest! {
    // Robustness: random bytes may be refused, but must never panic, hang or over-consume.
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn decode_frame_never_panics_on_random_bytes(input in vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&input[..]);
        let limits = Limits::default();
        // Each successful decode consumes at least one byte, so this terminates.
        while !buf.is_empty() {
            let before = buf.len();
            match decode_frame(&mut buf, &limits) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn decode_frame_never_panics_on_mutated_frames(
        frame in resp3_frame(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Near-valid input reaches deeper into the parser than pure noise.
        let mut wire = encoded(&[frame], Version::Resp3).to_vec();
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let mut buf = BytesMut::from(&wire[..]);
        let _ = decode_frame(&mut buf, &Limits::default());
    }

    #[test]
    fn request_decoder_never_panics_on_random_bytes(
        input in prop_oneof![
            vec(any::<u8>(), 0..256),
            // Bias towards request-shaped noise.
            vec(prop::sample::select(&b"*$\r\n\"'\\ -0123456789x\0\tab"[..]), 0..256),
        ],
        chunk in 1usize..32,
    ) {
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        'feed: for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode_request(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// NaN never equals itself, so it is checked apart from the round-trip property.
#[test]
fn nan_double_round_trips_as_nan() {
    for version in [Version::Resp3, Version::Resp2] {
        let mut buf = encoded(&[Frame::Double(f64::NAN)], version);
        match decode_frame(&mut buf, &Limits::default()) {
            Ok(Some(Frame::Double(d))) if version == Version::Resp3 => assert!(d.is_nan()),
            Ok(Some(Frame::Bulk(b))) if version == Version::Resp2 => assert_eq!(&b[..], b"nan"),
            other => panic!("{version:?}: unexpected {other:?}"),
        }
        assert!(buf.is_empty());
    }
}

/// RESP3 has one null; a null array goes out as `_` and comes back as `Null`.
#[test]
fn resp3_null_array_decodes_as_null() {
    let mut buf = encoded(&[Frame::NullArray], Version::Resp3);
    assert_eq!(&buf[..], b"_\r\n");
    assert_eq!(
        decode_frame(&mut buf, &Limits::default()),
        Ok(Some(Frame::Null))
    );
}

#[test]
fn infinite_doubles_round_trip() {
    for d in [f64::INFINITY, f64::NEG_INFINITY] {
        let mut buf = encoded(&[Frame::Double(d)], Version::Resp3);
        assert_eq!(
            decode_frame(&mut buf, &Limits::default()),
            Ok(Some(Frame::Double(d)))
        );
    }
}
