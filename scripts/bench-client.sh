#!/usr/bin/env bash
#
# bench-client.sh: is shoal-client the bottleneck? Throughput of the shoal-load generator
# (benches/src/bin/shoal-load.rs, built on shoal-client) next to redis-benchmark --cluster, on
# the same 3-node shoal cluster, at equal concurrency and pipelining.
#
# redis-benchmark --cluster gives each node one hash tag and binds each client to one node, so
# every key it sends is `key:{TAG}:<rand>` and every pipeline goes to one slot of one node.
# shoal-load is measured twice:
#   load     with --tag-per-node: the same key layout, so the two tools do the same work;
#   spread   keys spread over all slots (a realistic load: each pipeline fans out to every
#            node and shard), shown for reference.
# The ratio load/redis-benchmark is the figure to watch: near 1.0 means the client is not the
# bottleneck. Every run uses -n N commands, -c CLIENTS connections/tasks, -P PIPELINE,
# -d DATA_SIZE bytes and keys drawn from KEYSPACE (-r); runs rotate which tool goes first.
# GET runs read what the SET runs before them wrote (put set before get in TESTS).
#
# Cluster: if SHOAL_BASE_PORT is set and a node answers PING there, that cluster is used and
# left running; otherwise a fresh one is started with scripts/cluster.sh on BENCH_BASE_PORT
# (its own state folder) and stopped (and deleted) at exit.
#
# Exit status is non-zero if a run failed or reported errors.
#
# Usage:
#   scripts/bench-client.sh
#   N=100000 PIPELINES="1 16" REPEAT=3 scripts/bench-client.sh
#   SHOAL_BASE_PORT=7001 scripts/bench-client.sh        # reuse the cluster of `cluster.sh up`
#
# Knobs (environment):
#   N (200000), CLIENTS (50), DATA_SIZE (100), KEYSPACE (100000), TESTS (set,get),
#   PIPELINES ("1 16"), REPEAT (1: each cell is the median of REPEAT runs),
#   BENCH_TIMEOUT (seconds per run, 600), BENCH_BASE_PORT (7301), SHOAL_NODE_ARGS (for a
#   started cluster, see scripts/cluster.sh), SHOAL_BIN, SHOAL_SKIP_BUILD (see
#   scripts/lib/servers.sh; also skips building shoal-load).
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
KEYSPACE=${KEYSPACE:-100000}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-1 16}
REPEAT=${REPEAT:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
NODES=3
for v in N CLIENTS DATA_SIZE KEYSPACE REPEAT BENCH_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
parse_bench_lists
for t in "${TEST_LIST[@]}"; do
    [[ $t == set || $t == get ]] || die "TESTS: only set and get are supported, got '$t'"
done
require_cmds redis-cli redis-benchmark timeout awk setsid

CLUSTER_SH="$ROOT/scripts/cluster.sh"
LOAD_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shoal-load

# Reuse a running cluster named by SHOAL_BASE_PORT, or start our own.
REUSE=0
if [[ -n ${SHOAL_BASE_PORT:-} ]] &&
    [[ $(timeout 3 redis-cli -h "$HOST" -p "$SHOAL_BASE_PORT" ping 2>/dev/null) == PONG ]]; then
    REUSE=1
else
    export SHOAL_BASE_PORT=${BENCH_BASE_PORT:-7301}
    export SHOAL_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/shoal-bench-client-$SHOAL_BASE_PORT}
fi
PORT=$SHOAL_BASE_PORT

if ((REUSE == 0)); then maybe_build_shoal; fi
if [[ $SHOAL_SKIP_BUILD != 1 ]]; then
    log "building the load generator: cargo build --release -p shoal-benches --bin shoal-load"
    (cd "$ROOT" && cargo build --release -p shoal-benches --bin shoal-load) >&2
fi
[[ -x $LOAD_BIN ]] || die "shoal-load not found at $LOAD_BIN"

CLUSTER_STARTED=0
# shellcheck disable=SC2317 # invoked by cleanup
cluster_down() {
    ((CLUSTER_STARTED)) || return 0
    if ((${rc:-1} != 0)); then
        "$CLUSTER_SH" down
        log "kept the cluster's data and logs in $SHOAL_CLUSTER_DIR"
    else
        "$CLUSTER_SH" down --clean
    fi
}
CLEANUP_HOOKS+=(cluster_down)
FAILED_RUNS=()
setup_workdir

if ((REUSE)); then
    log "using the running cluster on port $PORT (left running)"
else
    CLUSTER_STARTED=1
    SHOAL_CLEAN=1 "$CLUSTER_SH" down >/dev/null
    SHOAL_SKIP_BUILD=1 run_child "$CLUSTER_SH" up "$NODES" </dev/null ||
        die "the cluster did not come up (logs in $SHOAL_CLUSTER_DIR)"
fi
SEEDS=$(seq -s, -f "$HOST:%g" "$PORT" $((PORT + NODES - 1)))

log "redis-benchmark: $(redis-benchmark --version 2>&1 | head -n 1); N=$N clients=$CLIENTS" \
    "data=${DATA_SIZE}B keyspace=$KEYSPACE tests=${TEST_LIST[*]} pipelines=${PIPELINE_LIST[*]}" \
    "repeat=$REPEAT"

declare -A RPS=()    # "test|pipeline|target" -> space-separated ops/s of each run
declare -A FAILED=() # "test|pipeline|target" -> 1 if any run failed
declare -A P50=()    # "test|pipeline|target" -> p50 ms of the last run (shoal-load)
declare -A P99=()    # "test|pipeline|target" -> p99 ms of the last run (shoal-load)

# record_load_run KEY WHAT OUT RC: files one shoal-load run by its RESULT line.
record_load_run() {
    local key=$1 what=$2 out=$3 rc=$4 line ops errors
    line=$(grep '^RESULT ' "$out" || true)
    ops=$(sed -n 's/.*ops_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    if ((rc != 0)) || [[ -z $ops || ${errors:-1} != 0 ]]; then
        FAILED[$key]=1
        FAILED_RUNS+=("$what (exit $rc, errors ${errors:-?}): $(tail -n 3 "$out" | tr '\n' ' ' | cut -c1-300)")
        log "$what FAILED; output in $out"
        return
    fi
    RPS[$key]+="$ops "
    P50[$key]=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    P99[$key]=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    log "$what: $ops ops/s (p50 ${P50[$key]} ms, p99 ${P99[$key]} ms)"
}

# run_one TARGET TEST PIPELINE REP: one run of one tool (called by servers.sh's sweep).
run_one() {
    local target=$1 test=$2 pipe=$3 rep=$4 key="$2|$3|$1" rc=0 ratio
    local base="$WORKDIR/$target-$test-P$pipe-r$rep"
    local what="$target $test -P $pipe"
    ((REPEAT == 1)) || what+=" (run $rep/$REPEAT)"
    [[ $test == get ]] && ratio=1 || ratio=0
    case $target in
    redis-benchmark)
        run_child timeout -k 5 "$BENCH_TIMEOUT" redis-benchmark --cluster -h "$HOST" -p "$PORT" \
            -q --csv -t "$test" -n "$N" -c "$CLIENTS" -d "$DATA_SIZE" -P "$pipe" -r "$KEYSPACE" \
            >"$base.raw" 2>"$base.err" </dev/null || rc=$?
        # --cluster prints the masters first; record_run wants the CSV header on line 1.
        sed -n '/^"/,$p' "$base.raw" >"$base.out"
        record_run "$key" "$what" "$base.out" "$base.err" "$rc"
        ;;
    load | spread)
        local -a tags=()
        [[ $target == load ]] && tags=(--tag-per-node)
        run_child timeout -k 5 "$BENCH_TIMEOUT" "$LOAD_BIN" --seeds "$SEEDS" "${tags[@]}" \
            -c "$CLIENTS" -n "$N" -P "$pipe" -d "$DATA_SIZE" --keyspace "$KEYSPACE" \
            --get-ratio "$ratio" >"$base.out" 2>&1 </dev/null || rc=$?
        record_load_run "$key" "$what" "$base.out" "$rc"
        ;;
    esac
}

sweep redis-benchmark load spread

echo
((REPEAT == 1)) || echo "ops/s are medians of $REPEAT runs"
fmt='%-5s %8s %16s %14s %9s %14s %11s %13s %13s\n'
# shellcheck disable=SC2059 # the format is the constant above
printf "$fmt" test pipeline "redis-bench ops/s" "load ops/s" "load/rb" "spread ops/s" "spread/rb" \
    "load p50 ms" "load p99 ms"
for pipe in "${PIPELINE_LIST[@]}"; do
    for test in "${TEST_LIST[@]}"; do
        r=$(cell "$test" "$pipe" redis-benchmark)
        l=$(cell "$test" "$pipe" load)
        s=$(cell "$test" "$pipe" spread)
        # shellcheck disable=SC2059
        printf "$fmt" "$test" "$pipe" "$r" "$l" "$(ratio "$r" "$l")" "$s" "$(ratio "$r" "$s")" \
            "${P50["$test|$pipe|load"]:--}" "${P99["$test|$pipe|load"]:--}"
    done
done
echo
echo "load: shoal-load with redis-benchmark's key layout (--tag-per-node); spread: keys over all slots"

print_failed_runs || exit 1
