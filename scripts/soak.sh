#!/usr/bin/env bash
# Fault-injection soak: `scripts/soak.sh DURATION [SEED]` (DURATION like 90s, 30m, 1h) runs
# seeded fault schedules against fresh 3-node clusters until DURATION has passed, and ends
# with `schedules: N`, `operations: N`, `violations: N`, `lost acknowledged writes: N` (after
# `anomalies: N` and `inconclusive keys: N`); exits non-zero on any violation, lost write or
# anomaly (a crash, a cluster that does not heal, replicas that differ).
# Same library code as the CI test (cluster-tests/tests/fault.rs), more and longer schedules.
# Env: SHOAL_FAULT_SECONDS (fault time per schedule, default 45), SHOAL_FAULT_FAULTS
# (comma-separated fault names or `all`, the default), SHOAL_FAULT_NODES/SHARDS/CLIENTS/
# SPARE_NODES/SNAPSHOT_ENTRIES, SHOAL_FAULT_KEEP + SHOAL_FAULT_LOG_LEVEL (keep the logs of a
# schedule with an anomaly), SHOAL_SERVER_BIN (another server build).
# Needs root (network namespaces, iptables).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
    echo "usage: scripts/soak.sh DURATION [SEED]" >&2
    exit 2
fi
cluster-tests/setup.sh
cargo build -j2 --release -p shoal-server --bin shoal-server
cargo build -j2 --release -p shoal-cluster-tests --bin soak
export SHOAL_SERVER_BIN="${SHOAL_SERVER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/shoal-server}"
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/soak" "$@"
