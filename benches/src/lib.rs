//! Criterion micro-benchmarks for shoal; the benchmarks live in `benches/` and run with
//! `cargo bench -p shoal-benches`.
