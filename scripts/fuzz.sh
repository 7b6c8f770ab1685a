#!/usr/bin/env bash
# Runs every cargo-fuzz target of protocol/fuzz for RUNS executions each (default 10 M),
# niced, seeded from protocol/fuzz/seeds/<dir> (resp for decoder and command, else the
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
    dict=()
    seeds=seeds/$target
    case $target in
    decoder | command)
        seeds=seeds/resp
        dict=(-dict=decoder.dict)
        ;;
    esac
    nice -n 15 cargo fuzz run "$target" "corpus/$target" "$seeds" -- \
        -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" >"$log" 2>&1 || true
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
    cov_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    crashes=$(find "artifacts/$target" -type f | wc -l)
    echo "$target: ${done_line:-did not finish (see $log)}"
    echo "$target: last status: ${cov_line}"
    echo "$target: corpus files: $(find "corpus/$target" -type f | wc -l), crashes: $crashes"
done
