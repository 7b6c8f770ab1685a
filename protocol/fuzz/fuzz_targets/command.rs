//! The command parser: arbitrary bytes → requests (`RequestDecoder`) → the command table
//! (`CommandSpec::lookup`: name, subcommand, arity) → key positions → slots. Nothing on this
//! path may panic, whatever the arguments (every server request takes it).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_protocol::{key_slot, CommandSpec, RequestDecoder};

fuzz_target!(|data: &[u8]| {
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
});
