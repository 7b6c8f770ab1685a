#!/usr/bin/env bash
# Runs every cargo-fuzz target of protocol/fuzz for RUNS executions each (default 10 M),
# one at a time and niced, seeded from protocol/fuzz/seeds/<dir> (resp for decoder and command, else the
# target's name), and prints per target: executions, coverage (libFuzzer's cov/ft counters),
# corpus size and crashes (files in artifacts/<target>/).
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]   (installs cargo-fuzz from crates.io if missing)
# Targets: decoder command peer_frame log_segment (all by default).
set -euo pipefail
cd "$(dirname "$0")/../protocol/fuzz"
RUNS=${1:-10000000}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=(decoder command peer_frame log_segment); fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 allows them on the stable toolchain.
export RUSTC_BOOTSTRAP=1
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target.log"
    extra=()
    seeds=seeds/$target
    case $target in
    decoder | command)
        seeds=seeds/resp
        # Inputs of RESP text: a run costs about a microsecond (under ASan) per command or
        # frame in it, and libFuzzer's corpus drifts toward inputs of thousands of tiny ones,
        # which took these targets from ~10k to ~500 exec/s. 1 KB holds every structure the
        # decoders have (the limits are reached through claimed lengths, not real bytes).
        extra=(-dict=decoder.dict -max_len=1024)
        ;;
    esac
    # No allocation stack traces (ASan records one per malloc and free, most of the cost of
    # these allocation-heavy targets) and no leak check: Rust does not leak by accident, and a
    # runaway allocation is still caught by -rss_limit_mb / -malloc_limit_mb.
    ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0:detect_leaks=0} \
        nice -n 10 cargo fuzz run "$target" "corpus/$target" "$seeds" -- \
        -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
        >"$log" 2>&1 || true
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
    cov_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    crashes=$(find "artifacts/$target" -type f | wc -l)
    echo "$target: ${done_line:-did not finish (see $log)}"
    echo "$target: last status: ${cov_line}"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
        sed "s/^/$target: /" || true
    echo "$target: corpus files: $(find "corpus/$target" -type f | wc -l), crashes: $crashes"
done
