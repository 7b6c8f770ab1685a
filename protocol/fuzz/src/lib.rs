//! The checks every fuzz target runs, one public function per target. The cargo-fuzz binaries
//! (`fuzz_targets/`) call them on libFuzzer's inputs, and the seed-replay test
//! (`server/tests/fuzz_seeds.rs`, which includes this file) calls them on the committed seeds on
//! the stable toolchain: one set of checks, so a finding kept as a seed stays fixed.
//!
//! A panic, a hang or an allocation the input does not justify is a finding; so is a broken
//! invariant asserted here.

use bytes::BytesMut;
use shoal_protocol::{
    decode_frame, encode, key_slot, CommandSpec, Frame, Limits, RequestDecoder, Version,
};
use shoal_server::raft::handshake::PeerAuth;
use shoal_server::raft::log_store::{scan_segment, LogStoreError};
use shoal_server::raft::wire::{from_payload, header_of, to_payload, PeerCodec, PeerMessage};
use shoal_server::rpc::{PeerRequest, PeerResponse};
use tokio_util::codec::Decoder;

/// The RESP decoders: the server's `RequestDecoder` and the generic `decode_frame`. Neither may
/// panic, hang or consume input it did not decode, and every frame `decode_frame` returns must
/// survive a RESP3 re-encode → decode round trip.
pub fn decoder(data: &[u8]) {
    requests(data);
    frames(data);
}

/// The command parser: bytes → requests (`RequestDecoder`) → the command table
/// (`CommandSpec::lookup`: name, subcommand, arity) → key positions → slots. Nothing on this path
/// may panic, whatever the arguments (every client request takes it).
pub fn command(data: &[u8]) {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(args)) = decoder.decode_request(&mut buf) {
        if let Ok(spec) = CommandSpec::lookup(&args) {
            assert!(spec.check_arity(args.len()));
            for key in spec.keys(&args) {
                assert!(key_slot(key) < 16384);
            }
            let _ = spec.acl_categories();
        }
    }
}

/// The peer side of a node: the frame decoder (`PeerCodec`), the payload decoders
/// (`header_of`, `from_payload` for requests and responses) and the authentication handshake.
/// The first byte picks what the rest is fed to:
///
/// - 0: a raw byte stream for the frame decoder;
/// - 1: the same with every frame's CRC made valid (the fuzzer cannot compute CRCs, and
///   without this it would never get past the checksum to the payload decoders);
/// - 2: one frame payload (bincode of a `PeerMessage`);
/// - 3 / 4: what a stranger sends to the accepting / connecting side of the handshake.
pub fn peer_frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => peer_stream(rest),
        1 => peer_stream(&with_valid_checksums(rest)),
        2 => peer_payload(rest),
        3 => handshake(rest, false),
        _ => handshake(rest, true),
    }
}

/// The Raft log-segment reader (`log_store::scan_segment`, which `LogStore::open` runs on every
/// segment file). Input: `[mode][first index, u64 LE][segment bytes]`; mode bit 0: the segment
/// is the last one (a torn tail is cut rather than refused); bit 1: make every record's CRC
/// valid first. A corrupt segment must give `Err(Corrupt)`, never a panic or a runaway
/// allocation; what it accepts must be consecutive records from `first`.
pub fn log_segment(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let mode = data[0];
    let first = u64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
    let is_last = mode & 1 != 0;
    let bytes = if mode & 2 != 0 {
        with_valid_checksums(&data[9..])
    } else {
        data[9..].to_vec()
    };
    let path = std::path::Path::new("segment-fuzz.log");
    match scan_segment(path, &bytes, first, is_last) {
        Ok(scan) => {
            assert!(scan.valid_len <= bytes.len() as u64);
            if scan.torn.is_none() {
                assert_eq!(scan.valid_len, bytes.len() as u64, "bytes left unread");
            }
            assert!(
                is_last || scan.torn.is_none(),
                "torn tail outside the last segment"
            );
            let mut next_offset = 0;
            for (i, (offset, entry)) in scan.records.iter().enumerate() {
                assert_eq!(entry.log_id.index, first + i as u64);
                assert!(*offset >= next_offset && *offset < scan.valid_len);
                next_offset = offset + 9;
            }
        }
        Err(LogStoreError::Corrupt { offset, .. }) => assert!(offset <= bytes.len() as u64),
        Err(e) => panic!("a segment scan failed with something other than Corrupt: {e}"),
    }
}

/// Rewrites the CRC of every complete `[u32 len LE][u32 crc32 LE][payload]` record (the framing
/// of peer frames and log records alike), up to the first one that runs past the end.
fn with_valid_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0usize;
    while out.len() - pos >= 8 {
        let len = u32::from_le_bytes(out[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let Some(end) = (pos + 8).checked_add(len).filter(|&end| end <= out.len()) else {
            break;
        };
        let crc = crc32fast::hash(&out[pos + 8..end]);
        out[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
    out
}

/// Largest peer frame the fuzz codec accepts: smaller than the server's 64 MiB so that a
/// claimed length does not make every run reserve 64 MiB; the refusal path is the same.
const FUZZ_MAX_FRAME: usize = 1 << 20;

fn peer_stream(data: &[u8]) {
    let whole = drain_frames(data, data.len().max(1));
    let split = drain_frames(data, data.len() / 2 + 1);
    assert_eq!(whole, split, "split input framed differently");
    for payload in whole.0 {
        peer_payload(&payload);
    }
}

/// Payloads decoded, and whether the stream ended in an error.
fn drain_frames(data: &[u8], chunk: usize) -> (Vec<bytes::Bytes>, bool) {
    let mut codec = PeerCodec::new(FUZZ_MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= FUZZ_MAX_FRAME);
                    out.push(payload);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fn peer_payload(payload: &[u8]) {
    let header = header_of(payload);
    if let Ok(msg) = from_payload::<PeerRequest>(payload) {
        check_header(&header, &msg);
        re_encode(&msg, |bytes| from_payload::<PeerRequest>(bytes).map(|_| ()));
    }
    if let Ok(msg) = from_payload::<PeerResponse>(payload) {
        check_header(&header, &msg);
        re_encode(&msg, |bytes| {
            from_payload::<PeerResponse>(bytes).map(|_| ())
        });
    }
}

fn check_header<B>(
    header: &Result<shoal_server::raft::wire::Header, shoal_server::raft::wire::WireError>,
    msg: &PeerMessage<B>,
) {
    let header = header
        .as_ref()
        .expect("a decodable message has a decodable header");
    assert_eq!(
        (header.group, header.request_id),
        (msg.group, msg.request_id)
    );
}

/// A decoded message encodes, and that encoding decodes again.
fn re_encode<B: serde::Serialize>(
    msg: &PeerMessage<B>,
    decode: impl Fn(&[u8]) -> Result<(), shoal_server::raft::wire::WireError>,
) {
    let bytes = to_payload(msg).expect("a decoded message re-encodes");
    decode(&bytes).expect("a re-encoded message decodes");
}

fn handshake(input: &[u8], connect: bool) {
    use tokio::io::AsyncWriteExt;
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
    }
    // Everything a stranger could send before either side gives up (72 bytes at most are read).
    let input = &input[..input.len().min(256)];
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            for auth in [PeerAuth::new(None), PeerAuth::new(Some(b"fuzz secret"))] {
                let (mut stranger, mut ours) = tokio::io::duplex(4096);
                stranger.write_all(input).await.expect("duplex write");
                stranger.shutdown().await.expect("duplex shutdown");
                let verdict = if connect {
                    auth.connect(&mut ours).await
                } else {
                    auth.accept(&mut ours).await
                };
                // Bytes chosen before our nonce existed cannot prove the secret (even the empty
                // one).
                assert!(verdict.is_err(), "a stranger passed the handshake");
            }
        })
    });
}

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
        // What is left is always the input's tail, so "nothing consumed" is checked against
        // `data` itself: copying the rest before every frame made an input of many small frames
        // cost quadratic time (and an allocation per frame).
        let before = buf.len();
        match decode_frame(&mut buf, &limits) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before);
                round_trip(&frame, &limits);
            }
            Ok(None) => {
                assert_eq!(
                    &buf[..],
                    &data[data.len() - before..],
                    "incomplete input was consumed"
                );
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
