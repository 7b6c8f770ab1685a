//! Replays every fuzz input kept on disk through the checks of its cargo-fuzz target, on the
//! stable toolchain, so a finding kept as a seed stays fixed. The checks are the fuzz crate's
//! own (`protocol/fuzz/src/lib.rs`, included below): the fuzzer and this test run the same code.
//!
//! Inputs per target: the committed seeds (`protocol/fuzz/seeds/<dir>/`), plus whatever a
//! local fuzz run left in `protocol/fuzz/corpus/<target>/` and `protocol/fuzz/artifacts/<target>/`
//! (both git-ignored). `decoder` and `command` share the RESP seeds.
//!
//! `cargo test -p shoal-server --test fuzz_seeds -- --ignored write_structured_seeds` rewrites
//! the seeds of the structured targets (peer frames, log segments) from real encodings.

#[allow(dead_code)]
#[path = "../../protocol/fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use shoal_server::raft::network::{RaftRequest, RaftResponse};
use shoal_server::raft::types::{Entry, LogId, Vote};
use shoal_server::raft::wire::{to_payload, PeerMessage};
use shoal_server::rpc::{ForwardItem, PeerRequest, PeerResponse};
use shoal_server::store::{Condition, Expiry, Proposal, WriteOp};

/// A fuzz target: its name and its checks.
type Target = (&'static str, fn(&[u8]));

/// (seed directory, targets it feeds).
const TARGETS: &[(&str, &[Target])] = &[
    (
        "resp",
        &[("decoder", checks::decoder), ("command", checks::command)],
    ),
    ("peer_frame", &[("peer_frame", checks::peer_frame)]),
    ("log_segment", &[("log_segment", checks::log_segment)]),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/fuzz")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_seed_corpus_and_artifact_input_passes_its_targets_checks() {
    let root = fuzz_dir();
    for (seeds, targets) in TARGETS {
        let mut committed = Vec::new();
        files_under(&root.join("seeds").join(seeds), &mut committed);
        assert!(
            committed.len() >= 5,
            "the {seeds} seeds are missing: {committed:?}"
        );
        for (target, check) in *targets {
            let mut files = committed.clone();
            files_under(&root.join("corpus").join(target), &mut files);
            files_under(&root.join("artifacts").join(target), &mut files);
            for path in &files {
                let data = match std::fs::read(path) {
                    Ok(data) => data,
                    // A fuzzer running meanwhile replaces corpus files by smaller ones.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        assert!(!committed.contains(path), "{} vanished", path.display());
                        continue;
                    }
                    Err(e) => panic!("read {}: {e}", path.display()),
                };
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            }
        }
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term,
            node_id: 1 + term % 3,
        },
        index,
    )
}

fn set_entry(term: u64, index: u64, value_len: usize) -> Entry {
    Entry::new_normal(
        log_id(term, index),
        Proposal {
            now_ms: 1_700_000_000_000 + index,
            op: WriteOp::Set {
                key: Bytes::from(format!("key:{index}")),
                value: Bytes::from(vec![b'v'; value_len]),
                condition: Condition::Always,
                expiry: Expiry::At(1_800_000_000_000),
                get: false,
            },
        },
    )
}

/// `[u32 len LE][u32 crc32 LE][payload]`: peer frames and log records alike.
fn record(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32_le(payload.len() as u32);
    out.put_u32_le(crc32fast::hash(payload));
    out.put_slice(payload);
    out.to_vec()
}

fn bincode(value: &impl serde::Serialize) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encode")
}

fn segment_seed(mode: u8, first: u64, entries: &[Entry], tail: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(&first.to_le_bytes());
    for entry in entries {
        out.extend(record(&bincode(entry)));
    }
    out.extend_from_slice(tail);
    out
}

fn peer_seed(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(body);
    out
}

/// `encoded` with the length prefix of `field` (a one-byte varint) replaced by one claiming
/// 1 TiB: what a flipped bit or a hostile peer can send.
fn claims_a_tebibyte(encoded: &[u8], field: &[u8]) -> Vec<u8> {
    let mut prefixed = vec![field.len() as u8];
    prefixed.extend_from_slice(field);
    let at = encoded
        .windows(prefixed.len())
        .position(|w| w == prefixed)
        .expect("the field is in the encoding");
    let mut out = encoded[..at].to_vec();
    out.push(0xfd); // varint: a u64 follows
    out.extend_from_slice(&(1u64 << 40).to_le_bytes());
    out.extend_from_slice(&encoded[at + 1..]);
    out
}

#[test]
#[ignore = "writes seed files; run by hand after a wire or log format change"]
fn write_structured_seeds() {
    let root = fuzz_dir().join("seeds");
    let write = |dir: &str, name: &str, data: Vec<u8>| {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        std::fs::write(dir.join(name), data).expect("write seed");
    };

    // Log segments: [mode][first index][records]; mode bit 0 = last segment, bit 1 = fix CRCs.
    let three = [
        set_entry(1, 5, 40),
        Entry::new_blank(log_id(2, 6)),
        set_entry(2, 7, 3),
    ];
    write(
        "log_segment",
        "three_records",
        segment_seed(0, 5, &three, &[]),
    );
    write(
        "log_segment",
        "last_torn_tail",
        segment_seed(1, 5, &three, &[9, 0, 0, 0, 1]),
    );
    write(
        "log_segment",
        "zero_tail",
        segment_seed(1, 5, &three, &[0; 24]),
    );
    write(
        "log_segment",
        "fix_crcs",
        segment_seed(3, 5, &three[..2], &[]),
    );
    write(
        "log_segment",
        "wrong_first",
        segment_seed(0, 4, &three[..1], &[]),
    );
    let big = [set_entry(3, 1, 300)];
    write("log_segment", "big_value", segment_seed(1, 1, &big, &[]));

    // A value whose length prefix claims 1 TiB: bincode allocated that before reading.
    let payload = bincode(&set_entry(1, 1, 3));
    let record_bytes = record(&claims_a_tebibyte(&payload, b"vvv"));
    let mut seed = vec![1];
    seed.extend_from_slice(&1u64.to_le_bytes());
    seed.extend(record_bytes);
    write("log_segment", "huge_claimed_value", seed);

    // Peer frames: mode 0 raw stream, 1 CRCs fixed, 2 one payload, 3/4 handshake bytes.
    let vote = Vote::new(3, 2);
    let append = PeerMessage {
        group: 1,
        request_id: 7,
        body: PeerRequest::Raft(RaftRequest::Append(AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(1, 4)),
            entries: three.to_vec(),
            leader_commit: Some(log_id(1, 4)),
        })),
    };
    let vote_req = PeerMessage {
        group: 0,
        request_id: 8,
        body: PeerRequest::Raft(RaftRequest::Vote(VoteRequest::new(
            vote,
            Some(log_id(2, 9)),
        ))),
    };
    let forward = PeerMessage {
        group: 2,
        request_id: 9,
        body: PeerRequest::Forward(vec![ForwardItem {
            group: 2,
            args: vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from_static(b"v"),
            ],
            counted: true,
            wait: None,
        }]),
    };
    let published = PeerMessage {
        group: 0,
        request_id: 10,
        body: PeerResponse::Published(3),
    };
    let refused = PeerMessage {
        group: 1,
        request_id: 11,
        body: PeerResponse::Raft(RaftResponse::Vote(Err("not now".to_owned()))),
    };
    let frames: Vec<u8> = [
        to_payload(&append).expect("encode"),
        to_payload(&vote_req).expect("encode"),
    ]
    .iter()
    .flat_map(|p| record(p))
    .collect();
    write("peer_frame", "append_and_vote", peer_seed(0, &frames));
    write("peer_frame", "fixed_crcs", peer_seed(1, &frames));
    write(
        "peer_frame",
        "forward_payload",
        peer_seed(2, &to_payload(&forward).expect("encode")),
    );
    write(
        "peer_frame",
        "published_payload",
        peer_seed(2, &to_payload(&published).expect("encode")),
    );
    write(
        "peer_frame",
        "refused_payload",
        peer_seed(2, &to_payload(&refused).expect("encode")),
    );
    let mut hello = b"SHOALPA1".to_vec();
    hello.extend_from_slice(&[7; 32]);
    write("peer_frame", "handshake_hello", peer_seed(3, &hello));
    let publish = PeerMessage {
        group: 0,
        request_id: 12,
        body: PeerRequest::Publish {
            channel: Bytes::from_static(b"chan"),
            message: Bytes::from_static(b"hello"),
            shard: false,
        },
    };
    let payload = to_payload(&publish).expect("encode");
    write(
        "peer_frame",
        "huge_claimed_channel",
        peer_seed(2, &claims_a_tebibyte(&payload, b"chan")),
    );
    let mut challenge = hello.clone();
    challenge.extend_from_slice(&[9; 33]);
    write(
        "peer_frame",
        "handshake_challenge",
        peer_seed(4, &challenge),
    );
}
