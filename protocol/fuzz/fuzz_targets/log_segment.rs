//! cargo-fuzz target: see `shoal_protocol_fuzz::log_segment` (src/lib.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_protocol_fuzz::log_segment(data));
