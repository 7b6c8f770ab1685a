//! The protocol's hot paths: decoding pipelined requests, decoding replies, encoding replies.
//!
//! Run: `cargo bench -p shoal-benches` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick pass, or a filter such as `-- request`).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shoal_protocol::{
    decode_frame, encode, encode_command, Frame, Limits, RequestDecoder, Version,
};

const PIPELINE: usize = 16;
const VALUE_LEN: usize = 100;

fn value() -> Vec<u8> {
    (0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `PIPELINE` commands, as one client write.
fn pipeline(command: impl Fn(usize) -> Vec<Vec<u8>>) -> Bytes {
    let mut wire = BytesMut::new();
    for i in 0..PIPELINE {
        encode_command(&command(i), &mut wire);
    }
    wire.freeze()
}

fn set_pipeline() -> Bytes {
    let value = value();
    pipeline(|i| {
        vec![
            b"SET".to_vec(),
            format!("key:{i:03}").into_bytes(),
            value.clone(),
        ]
    })
}

fn get_pipeline() -> Bytes {
    pipeline(|i| vec![b"GET".to_vec(), format!("key:{i:03}").into_bytes()])
}

/// Decodes every command in `wire`, returning how many there were.
fn decode_requests(mut buf: BytesMut) -> usize {
    let mut dec = RequestDecoder::default();
    let mut n = 0;
    while let Some(cmd) = dec.decode_request(&mut buf).expect("valid request") {
        black_box(&cmd);
        n += 1;
    }
    n
}

fn request_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_decoder");
    for (name, wire) in [("set_16x100B", set_pipeline()), ("get_16", get_pipeline())] {
        assert_eq!(decode_requests(BytesMut::from(&wire[..])), PIPELINE);
        group.throughput(Throughput::Elements(PIPELINE as u64));
        group.bench_function(name, |b| {
            // The copy into a fresh read buffer is setup, as a socket read would be.
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                decode_requests,
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A typical reply: `MGET` of 16 keys, two of them missing.
fn mget_reply() -> Frame {
    let value = Bytes::from(value());
    Frame::Array(
        (0..PIPELINE)
            .map(|i| {
                if i % 8 == 7 {
                    Frame::Null
                } else {
                    Frame::Bulk(value.clone())
                }
            })
            .collect(),
    )
}

fn frame_decoder(c: &mut Criterion) {
    let reply = mget_reply();
    let mut group = c.benchmark_group("decode_frame");
    for (name, version) in [
        ("mget_16x100B_resp2", Version::Resp2),
        ("mget_16x100B_resp3", Version::Resp3),
    ] {
        let mut wire = BytesMut::new();
        encode(&reply, version, &mut wire);
        let limits = Limits::default();
        assert_eq!(
            decode_frame(&mut wire.clone(), &limits),
            Ok(Some(reply.clone()))
        );
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || wire.clone(),
                |mut buf| {
                    decode_frame(&mut buf, &limits)
                        .expect("valid")
                        .expect("whole")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let bulk = Frame::Bulk(Bytes::from(value()));
    let array = mget_reply();
    let mut group = c.benchmark_group("encode");
    let mut out = BytesMut::with_capacity(64 * 1024);
    group.throughput(Throughput::Elements(1));
    group.bench_function("bulk_100B", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&bulk), Version::Resp2, &mut out);
            out.len()
        })
    });
    group.throughput(Throughput::Elements(PIPELINE as u64));
    group.bench_function("bulk_100B_x16_pipelined", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..PIPELINE {
                encode(black_box(&bulk), Version::Resp2, &mut out);
            }
            out.len()
        })
    });
    group.bench_function("mget_16x100B_array", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&array), Version::Resp3, &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, request_decoder, frame_decoder, encoder);
criterion_main!(benches);
