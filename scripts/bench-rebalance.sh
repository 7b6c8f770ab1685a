#!/usr/bin/env bash
#
# bench-rebalance.sh: client throughput before, during and after adding a 4th node to a loaded
# 3-node shoal cluster, and how much data the rebalance moved.
#
# What it does:
#   1. builds shoal-server in release mode unless SHOAL_SKIP_BUILD=1, and starts a fresh 3-node
#      cluster with `scripts/cluster.sh up 3` on its own ports and folder;
#   2. loads KEYS keys of DATA_SIZE bytes (redis-benchmark SET with -r KEYS);
#   3. starts a steady load: back-to-back redis-benchmark windows (-t TEST -n WINDOW -c CLIENTS
#      -r KEYS against node 1, which forwards to each key's leader), each window one sample
#      of ops/s stamped with its end time;
#   4. after BEFORE seconds runs `scripts/cluster.sh add` (which waits until the rebalancer is
#      done), then keeps the load up for AFTER more seconds;
#   5. prints the series (one line per window and a sparkline), the mean ops/s before, during
#      and after the rebalance, the ratio during/before (target >= 0.70), the moves done, the
#      shard replicas the new node received, the snapshot bytes it received and what that is as
#      a share of the data.
#
# Usage:
#   scripts/bench-rebalance.sh
#   KEYS=500000 TEST=get scripts/bench-rebalance.sh
#
# Knobs (environment):
#   KEYS         distinct keys loaded and used by the load         (default 200000)
#   DATA_SIZE    value size in bytes                               (default 100)
#   TEST         redis-benchmark test of the steady load: set|get  (default set)
#   CLIENTS      redis-benchmark connections                       (default 50)
#   WINDOW       requests per sample window (about a second)       (default 5000)
#   BEFORE       seconds of load before the add                    (default 10)
#   AFTER        seconds of load after the rebalance is done       (default 10)
#   BENCH_BASE_PORT  client port of node 1                         (default 7701)
#   SHOAL_NODE_ARGS  extra node flags (see scripts/cluster.sh), e.g. "--appendfsync everysec"
#   SHOAL_BIN, SHOAL_SKIP_BUILD, KEEP_WORKDIR: see scripts/lib/servers.sh (KEEP_WORKDIR=1 also
#                keeps the cluster's data and logs)
#
# Only 127.0.0.1 is contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

KEYS=${KEYS:-200000}
DATA_SIZE=${DATA_SIZE:-100}
TEST=${TEST:-set}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-5000}
BEFORE=${BEFORE:-10}
AFTER=${AFTER:-10}
BASE=${BENCH_BASE_PORT:-7701}
for v in KEYS DATA_SIZE CLIENTS WINDOW BEFORE AFTER BASE; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
[[ $TEST == set || $TEST == get ]] || die "TEST must be set or get, got '$TEST'"
require_cmds redis-benchmark redis-cli awk
setup_workdir

export SHOAL_BASE_PORT=$BASE SHOAL_CLUSTER_DIR=$WORKDIR/cluster SHOAL_SKIP_BUILD=1
CLUSTER="$ROOT/scripts/cluster.sh"
maybe_build_shoal

LOAD_PID=""
stop_load_and_cluster() {
    [[ -z $LOAD_PID ]] || kill "$LOAD_PID" 2>/dev/null
    local args=(--clean)
    [[ $KEEP_WORKDIR == 1 ]] && args=()
    "$CLUSTER" down "${args[@]}" >/dev/null 2>&1
}
CLEANUP_HOOKS+=(stop_load_and_cluster)

"$CLUSTER" up 3 >&"$LOG_FD"
node_port() { echo $((BASE + $1 - 1)); }
info_field() { redis-cli -h "$HOST" -p "$1" cluster info | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

log "loading $KEYS keys of $DATA_SIZE bytes"
redis-benchmark -h "$HOST" -p "$(node_port 1)" -q -t set -n "$KEYS" -r "$KEYS" -d "$DATA_SIZE" \
    -c "$CLIENTS" -P 16 >/dev/null
stored=$(redis-cli -h "$HOST" -p "$(node_port 1)" dbsize)
log "stored $stored keys"

# One sample per window: "<end time> <ops/s>" lines in $SERIES.
SERIES=$WORKDIR/series
STOP=$WORKDIR/stop-load
: >"$SERIES"
run_load() {
    local t0 rps
    while [[ ! -e $STOP ]]; do
        t0=${EPOCHREALTIME/,/.}
        rps=$(redis-benchmark -h "$HOST" -p "$(node_port 1)" -q --csv -t "$TEST" -n "$WINDOW" \
            -r "$KEYS" -d "$DATA_SIZE" -c "$CLIENTS" 2>/dev/null | awk -F, 'NR == 2 { gsub(/"/, "", $2); print $2 }')
        [[ -n $rps ]] && echo "$t0 ${EPOCHREALTIME/,/.} $rps" >>"$SERIES"
    done
}
run_load &
LOAD_PID=$!

sleep "$BEFORE"
done_before=$(info_field "$(node_port 1)" shoal_moves_done)
add_start=${EPOCHREALTIME/,/.}
log "adding node 4 under load"
"$CLUSTER" add >&"$LOG_FD"
add_end=${EPOCHREALTIME/,/.}
sleep "$AFTER"
touch "$STOP"
wait "$LOAD_PID"
LOAD_PID=""

done_after=$(info_field "$(node_port 1)" shoal_moves_done)
new_bytes=$(info_field "$(node_port 4)" shoal_snapshot_bytes_received)
new_replicas=$(redis-cli -h "$HOST" -p "$(node_port 4)" info raft | tr -d '\r' | awk -F: '$1 == "raft_shards_hosted" { print $2 }')
shards=$(info_field "$(node_port 1)" cluster_size)
# What the new node's replicas hold (keys summed over its shard replicas).
new_keys=$(redis-cli -h "$HOST" -p "$(node_port 4)" info digest | tr -d '\r' | awk -F'[=,]' '/^shard_/ { n += $4 } END { print n + 0 }')
total_keys=$(redis-cli -h "$HOST" -p "$(node_port 1)" dbsize)

echo
echo "rebalance under load: $TEST, $CLIENTS clients, $KEYS keys x $DATA_SIZE B, window $WINDOW requests"
awk -v a="$add_start" -v b="$add_end" '
    NR == 1 { first = $1 }
    { t = ($1 + $2) / 2; phase = (t < a) ? "before" : (t <= b ? "during" : "after");
      printf "  %7.1f s  %9.0f ops/s  %s\n", $2 - first, $3, phase }' "$SERIES"
awk -v a="$add_start" -v b="$add_end" '
    BEGIN { split("▁ ▂ ▃ ▄ ▅ ▆ ▇ █", bars, " ") }
    { t[NR] = ($1 + $2) / 2; v[NR] = $3; if ($3 > max) max = $3 }
    END {
        line = ""
        for (i = 1; i <= NR; i++) {
            k = int(v[i] / max * 7.999) + 1; line = line bars[k]
            phase = (t[i] < a) ? 1 : (t[i] <= b ? 2 : 3)
            sum[phase] += v[i]; n[phase]++
        }
        printf "series: %s  (max %.0f ops/s)\n", line, max
        for (p = 1; p <= 3; p++) mean[p] = n[p] ? sum[p] / n[p] : 0
        printf "mean ops/s: before %.0f (%d windows), during %.0f (%d), after %.0f (%d)\n",
            mean[1], n[1], mean[2], n[2], mean[3], n[3]
        if (mean[1] > 0 && n[2] > 0) printf "during/before: %.2f (target >= 0.70)\n", mean[2] / mean[1]
        else if (n[2] == 0) print "during/before: the rebalance ended within one window"
        # On a small machine the extra node itself costs throughput; this ratio isolates the
        # rebalance from that.
        if (mean[3] > 0 && n[2] > 0) printf "during/after: %.2f\n", mean[2] / mean[3]
    }' "$SERIES"
awk -v a="$add_start" -v b="$add_end" 'BEGIN { printf "rebalance took %.1f s (scripts/cluster.sh add: join to balanced)\n", b - a }'
echo "moves done: $((done_after - done_before)); node 4 holds $new_replicas of $((shards * 3)) shard replicas"
awk -v nb="$new_bytes" -v nk="$new_keys" -v tk="$total_keys" -v r="$new_replicas" -v s="$shards" -v d="$DATA_SIZE" '
    BEGIN {
        printf "node 4 received %.1f MB of snapshots (new replicas are filled by a snapshot plus the\n", nb / 1e6
        printf "log tail; log entries are not counted); its %d replicas hold %d keys (%.1f MB of values),\n", r, nk, nk * d / 1e6
        printf "%d of the %d shards x 3 replicas, holding %d keys in all\n", r, s, tk
    }'
