#!/usr/bin/env bash
#
# bench-eviction.sh: hit ratio and throughput under maxmemory, shoal next to redis-server.
#
# What it does:
#   1. builds shoal and the `cache-load` tool (benches/src/bin/cache-load.rs) in release mode
#      unless SHOAL_SKIP_BUILD=1;
#   2. starts one shoal node (`--appendfsync $SHOAL_FSYNC`, default `no`, as the reference
#      redis-server runs without persistence) and one redis-server on loopback ports;
#   3. for each policy in POLICIES: on both servers `CONFIG SET maxmemory $MAXMEMORY` and
#      `maxmemory-policy`, FLUSHALL, then runs cache-load (zipfian GETs, SET on a miss) with
#      a keyspace whose data is 4x MAXMEMORY (keys x (VALUE_SIZE + 16) bytes): a warm-up run
#      that fills the cache, then the measured run with the same key sequence on both;
#   4. prints one table: per policy, each server's hit ratio and ops/s and shoal/redis ratios.
#
# Usage:
#   scripts/bench-eviction.sh
#   MAXMEMORY=64mb REQUESTS=1000000 scripts/bench-eviction.sh
#
# Knobs (environment):
#   MAXMEMORY     Redis units                                  (default 16mb)
#   POLICIES      comma/space separated                        (default allkeys-lru,allkeys-lfu,allkeys-random)
#   VALUE_SIZE    bytes per value                              (default 100)
#   REQUESTS      measured GETs per run                        (default 400000)
#   WARMUP        unmeasured GETs first                        (default 400000)
#   THREADS       connections                                  (default 4)
#   PIPELINE      GETs per batch                               (default 32)
#   ZIPF          zipfian exponent                             (default 0.99)
#   SHOAL_FSYNC   shoal's --appendfsync                        (default no)
#   REDIS_PORT, SHOAL_PORT, REDIS_SERVER_BIN, SHOAL_BIN, SHOAL_SKIP_BUILD, STARTUP_TIMEOUT,
#   KEEP_WORKDIR: see scripts/lib/servers.sh
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

MAXMEMORY=${MAXMEMORY:-16mb}
POLICIES=${POLICIES:-allkeys-lru,allkeys-lfu,allkeys-random}
VALUE_SIZE=${VALUE_SIZE:-100}
REQUESTS=${REQUESTS:-400000}
WARMUP=${WARMUP:-400000}
THREADS=${THREADS:-4}
PIPELINE=${PIPELINE:-32}
ZIPF=${ZIPF:-0.99}
SHOAL_FSYNC=${SHOAL_FSYNC:-no}
for v in VALUE_SIZE REQUESTS WARMUP THREADS PIPELINE; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
read -r -a POLICY_LIST <<<"${POLICIES//,/ }"

require_cmds redis-cli awk "$REDIS_SERVER_BIN"

CARGO_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOAD_BIN=$CARGO_TARGET/release/cache-load
if [[ ${SHOAL_SKIP_BUILD:-0} != 1 ]]; then
    log "building shoal-server and cache-load (release)"
    (cd "$ROOT" && cargo build --release -p shoal-server -p shoal-benches --bin shoal-server --bin cache-load) >&2
fi
[[ -x $LOAD_BIN ]] || die "$LOAD_BIN is missing (build it: cargo build --release -p shoal-benches --bin cache-load)"
export SHOAL_SKIP_BUILD=1
if [[ -z $SHOAL_SERVER_CMD ]]; then
    SHOAL_SERVER_CMD="$(printf '%q ' "$SHOAL_BIN") --port @PORT@ --bind 127.0.0.1 --data-dir @DATADIR@ --appendfsync $SHOAL_FSYNC"
fi

setup_workdir
start_redis
start_shoal
wait_ready redis
wait_ready shoal

BYTES=$(cli redis config set maxmemory "$MAXMEMORY" >/dev/null && cli redis config get maxmemory | tail -n 1)
is_pos_int "$BYTES" || die "MAXMEMORY '$MAXMEMORY' is not a memory size redis accepts"
KEYSPACE=$((4 * BYTES / (VALUE_SIZE + 16)))
log "maxmemory $MAXMEMORY ($BYTES bytes), keyspace $KEYSPACE keys of ${VALUE_SIZE} B (4x maxmemory)," \
    "zipf $ZIPF, $REQUESTS measured GETs after $WARMUP, $THREADS connections, pipeline $PIPELINE"

declare -A HIT=() OPS=()
for policy in "${POLICY_LIST[@]}"; do
    for name in redis shoal; do
        for setting in "maxmemory $MAXMEMORY" "maxmemory-policy $policy"; do
            # shellcheck disable=SC2086
            reply=$(cli "$name" config set $setting)
            [[ $reply == OK ]] || die "CONFIG SET $setting on $name replied: $reply"
        done
        flushall "$name"
        out="$WORKDIR/load-$name-$policy.out"
        run_child timeout -k 5 1800 "$LOAD_BIN" --addr "127.0.0.1:${SERVER_PORT[$name]}" \
            --threads "$THREADS" --requests "$REQUESTS" --warmup "$WARMUP" \
            --keyspace "$KEYSPACE" --zipf-exponent "$ZIPF" --value-size "$VALUE_SIZE" \
            --pipeline "$PIPELINE" >"$out" 2>&1 </dev/null || die "cache-load on $name ($policy) failed: $(tail -n 3 "$out")"
        line=$(grep '^RESULT' "$out") || die "no RESULT line from cache-load on $name"
        HIT[$name,$policy]=$(sed -E 's/.*hit_ratio=([0-9.]+).*/\1/' <<<"$line")
        OPS[$name,$policy]=$(sed -E 's/.*ops_per_sec=([0-9]+).*/\1/' <<<"$line")
        evicted=$(cli "$name" info stats | awk -F: '/^evicted_keys/ { print $2 }' | tr -d '\r')
        log "$name $policy: hit ratio ${HIT[$name,$policy]}, ${OPS[$name,$policy]} ops/s, evicted_keys $evicted"
        ensure_alive "$name"
    done
done

echo
printf '%-16s %10s %10s %10s %12s %12s %10s\n' policy "redis hit" "shoal hit" "hit ratio" \
    "redis ops/s" "shoal ops/s" "ops ratio"
for policy in "${POLICY_LIST[@]}"; do
    awk -v p="$policy" -v rh="${HIT[redis,$policy]}" -v sh="${HIT[shoal,$policy]}" \
        -v ro="${OPS[redis,$policy]}" -v so="${OPS[shoal,$policy]}" 'BEGIN {
        printf "%-16s %10.4f %10.4f %10.3f %12d %12d %10.3f\n", p, rh, sh, sh / rh, ro, so, so / ro
    }'
done
