#!/usr/bin/env bash
#
# bench-vs-redis.sh: throughput of shoal next to a real redis-server, measured with
# redis-benchmark on the same machine.
#
# What it does:
#   1. builds shoal (`cargo build --release -p shoal-server`) unless SHOAL_SKIP_BUILD=1 or
#      SHOAL_SERVER_CMD is set;
#   2. starts shoal and a reference `redis-server --save '' --appendonly no` (no persistence)
#      on free loopback ports and waits for each to answer PING (polled, with a deadline);
#   3. for every pipeline depth in PIPELINES and every test in TESTS runs
#        redis-benchmark -q --csv -t TEST -n N -c CLIENTS -d DATA_SIZE -P PIPELINE
#      once against each server, alternating which server goes first from one test to the
#      next to even out drift (thermal, other load). Before every run the target is emptied
#      with FLUSHALL; for `get` the benchmark key (key:__rand_int__) is then set to a
#      DATA_SIZE-byte value, so GET measures hits rather than misses;
#   4. prints one row per (test, pipeline): redis ops/s, shoal ops/s, ratio shoal/redis.
#      With REPEAT=R > 1 the whole sweep is done R times and each cell is the median.
#
# Exit status is non-zero if shoal sent any error reply, if any benchmark run failed or
# timed out (against either server), or if a server died. redis-benchmark 7.x stops at the
# first error reply and prints "Error from server: ..." (older versions print at most one
# such line per second), so the error count is a lower bound: any non-zero count is a bug.
#
# Both servers share the machine with redis-benchmark, so the numbers are comparative,
# not absolute; on a small machine the client takes a large share of the CPU. Run to run
# noise is real: with redis on both sides, single runs on a 2-core box gave ratios of
# 0.93-1.14 at N=200000 and 0.6-1.7 at N=20000; use REPEAT=3 or more before trusting a
# difference of less than ~15%.
#
# Usage:
#   scripts/bench-vs-redis.sh
#   N=20000 TESTS=set,get PIPELINES="1 16" scripts/bench-vs-redis.sh
#   SHOAL_SKIP_BUILD=1 scripts/bench-vs-redis.sh            # use the existing release binary
#   SHOAL_SERVER_CMD="redis-server --port @PORT@ --bind 127.0.0.1 --save '' --appendonly no" \
#     N=20000 scripts/bench-vs-redis.sh                     # dry run with redis as "shoal"
#
# Knobs (environment):
#   N               requests per run                        (default 200000)
#   CLIENTS         parallel connections (-c)               (default 50)
#   DATA_SIZE       value size in bytes (-d)                (default 100)
#   TESTS           comma/space separated redis-benchmark tests (default set,get,incr,mset)
#   PIPELINES       comma/space separated -P values          (default "1 16")
#   REPEAT          sweeps to run; cells are medians         (default 1)
#   BENCH_TIMEOUT   seconds allowed for one redis-benchmark run (default 900)
#   OUT_CSV         if set, also write the result table as CSV to this file
#   REDIS_PORT, SHOAL_PORT, REDIS_SERVER_BIN, SHOAL_SERVER_CMD, SHOAL_BIN, SHOAL_SKIP_BUILD,
#   STARTUP_TIMEOUT, KEEP_WORKDIR: see scripts/lib/servers.sh
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
TESTS=${TESTS:-set,get,incr,mset}
PIPELINES=${PIPELINES:-1 16}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
REPEAT=${REPEAT:-1}
OUT_CSV=${OUT_CSV:-}

for v in N CLIENTS DATA_SIZE BENCH_TIMEOUT REPEAT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
parse_bench_lists

require_cmds redis-cli redis-benchmark timeout awk "$REDIS_SERVER_BIN"

maybe_build_shoal
setup_workdir
start_redis
start_shoal
wait_ready redis
wait_ready shoal

log "redis-benchmark: $(redis-benchmark --version 2>&1 | head -n 1); N=$N clients=$CLIENTS" \
    "data=${DATA_SIZE}B tests=${TEST_LIST[*]} pipelines=${PIPELINE_LIST[*]} repeat=$REPEAT"

GET_VALUE=$(printf '%*s' "$DATA_SIZE" '' | tr ' ' x)

declare -A RPS=()         # "test|pipeline|server" -> space-separated ops/s of each run
declare -A FAILED=()      # "test|pipeline|server" -> 1 if any run failed
declare -A ERR_REPLIES=() # server -> error replies seen
ERR_REPLIES[redis]=0
ERR_REPLIES[shoal]=0
FAILED_RUNS=()

# run_one SERVER TEST PIPELINE REP: one redis-benchmark run; records ops/s or a failure.
run_one() {
    local name=$1 test=$2 pipe=$3 rep=$4 key="$2|$3|$1"
    local base="$WORKDIR/bench-$name-$test-P$pipe-r$rep"
    local out="$base.out" err="$base.err" what="$name $test -P $pipe"
    ((REPEAT == 1)) || what+=" (run $rep/$REPEAT)"
    local rc=0

    flushall "$name"
    if [[ $test == get ]]; then
        [[ $(cli "$name" set key:__rand_int__ "$GET_VALUE") == OK ]] ||
            die "could not seed the GET key on $name"
    fi

    run_child timeout -k 5 "$BENCH_TIMEOUT" \
        redis-benchmark -h "$HOST" -p "${SERVER_PORT[$name]}" -q --csv \
        -t "$test" -n "$N" -c "$CLIENTS" -d "$DATA_SIZE" -P "$pipe" \
        >"$out" 2>"$err" </dev/null || rc=$?

    record_run "$key" "$what" "$out" "$err" "$rc"
    ERR_REPLIES[$name]=$((ERR_REPLIES[$name] + RUN_ERRORS))
    ensure_alive "$name"
}

sweep redis shoal

echo
((REPEAT == 1)) || echo "ops/s are medians of $REPEAT runs"
printf '%-8s %8s %14s %14s %12s\n' test pipeline "redis ops/s" "shoal ops/s" "shoal/redis"
printf '%-8s %8s %14s %14s %12s\n' -------- -------- -------------- -------------- ------------
if [[ -n $OUT_CSV ]]; then
    echo "test,pipeline,redis_ops_per_sec,shoal_ops_per_sec,ratio_shoal_redis" >"$OUT_CSV"
fi
for pipe in "${PIPELINE_LIST[@]}"; do
    for test in "${TEST_LIST[@]}"; do
        r=$(cell "$test" "$pipe" redis)
        s=$(cell "$test" "$pipe" shoal)
        q=$(ratio "$r" "$s")
        printf '%-8s %8s %14s %14s %12s\n' "$test" "$pipe" "$r" "$s" "$q"
        if [[ -n $OUT_CSV ]]; then echo "$test,$pipe,$r,$s,$q" >>"$OUT_CSV"; fi
    done
done
echo
echo "error replies: redis ${ERR_REPLIES[redis]}, shoal ${ERR_REPLIES[shoal]}" \
    "(redis-benchmark stops a run at the first one)"

status=0
print_failed_runs || status=1
if ((ERR_REPLIES[shoal] > 0)); then
    echo "FAIL: shoal returned error replies"
    status=1
fi
exit "$status"
