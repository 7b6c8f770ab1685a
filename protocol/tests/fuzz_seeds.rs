//! Replays the fuzz seed corpus (`fuzz/seeds/`, plus any `fuzz/corpus/<target>/` a local fuzz
//! run left) through what the cargo-fuzz targets exercise, on the stable toolchain: the request
//! decoder, the command table (lookup, arity, key positions, slots) and the frame decoder.
//! A past crash kept as a seed stays fixed.

use std::path::Path;

use bytes::BytesMut;
use shoal_protocol::{decode_frame, key_slot, CommandSpec, Limits, RequestDecoder};

fn replay(data: &[u8]) {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(args)) = decoder.decode_request(&mut buf) {
        if let Ok(spec) = CommandSpec::lookup(&args) {
            assert!(spec.check_arity(args.len()));
            for key in spec.keys(&args) {
                assert!(key_slot(key) < 16384);
            }
        }
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = decode_frame(&mut buf, &Limits::default()) {}
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
fn every_seed_and_corpus_input_decodes_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    files_under(&root.join("seeds"), &mut files);
    files_under(&root.join("corpus"), &mut files);
    files_under(&root.join("artifacts"), &mut files);
    assert!(files.len() >= 10, "the seed corpus is missing: {files:?}");
    for path in &files {
        let data = std::fs::read(path).expect("read seed");
        replay(&data);
    }
}
