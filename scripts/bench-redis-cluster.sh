#!/usr/bin/env bash
#
# bench-redis-cluster.sh: `redis-benchmark --cluster` against a 3-node shoal cluster, next to a
# single redis-server and a 3-master Redis Cluster, all on this machine, in one run.
#
# Targets:
#   shoal           a fresh `scripts/cluster.sh up 3` (its own base port and state folder; every
#                   shard replicated on the 3 nodes, Raft log fsynced per --appendfsync, default
#                   `always`; SHOAL_NODE_ARGS adds flags), benchmarked with
#                   `redis-benchmark --cluster`: it reads CLUSTER NODES and sends each master
#                   keys of its own slots;
#   redis-single    one `redis-server --save '' --appendonly no` (scripts/lib/servers.sh),
#                   benchmarked without --cluster (it has no cluster support);
#   redis-cluster   three `redis-server --cluster-enabled yes --save '' --appendonly no` joined by
#                   `redis-cli --cluster create ... --cluster-replicas 0` (3 masters, no
#                   replicas, no persistence), benchmarked with --cluster like shoal.
#
# For every pipeline depth in PIPELINES each target gets one run of
#     redis-benchmark [--cluster] -q --csv -t TESTS -n REQUESTS -c CLIENTS -d DATA_SIZE -P PIPELINE
# with REQUESTS = N at -P 1 and N_PIPELINED deeper. redis-benchmark 7.0 in --cluster mode runs
# a thread per master and notices the end of a test only on a 250 ms tick, so a test's time is
# rounded UP to a multiple of ~250 ms (checked: 100k pipelined SETs to a 3-master Redis Cluster
# reported 0.251 s, 300k 0.253 s, 1M 0.751 s); REQUESTS must make each test last seconds, hence
# the larger default for pipelined runs.
# (the order of the targets rotates from one depth to the next to even out drift); with
# REPEAT=R > 1 the sweep is done R times and each cell is the median. Before each run the target
# is emptied with FLUSHALL (on every master of a cluster). Then one row per (test, pipeline):
# ops/s of each target and the ratios shoal/redis-single and shoal/redis-cluster.
#
# Redis here neither replicates nor persists; shoal replicates every write to 3 nodes and, by
# default, fsyncs its log before acknowledging. The ratios are the price of that, not a
# like-for-like comparison. All three share the machine with redis-benchmark; noise: see
# scripts/bench-vs-redis.sh (use REPEAT=3 or more before trusting a difference under ~15%).
#
# Exit status is non-zero if any run failed or timed out, reported an error (redis-benchmark
# prints "Error from server ..." or, with --cluster, a failed node or slots update), or a
# server died.
#
# Usage:
#   scripts/bench-redis-cluster.sh
#   N=50000 REPEAT=3 scripts/bench-redis-cluster.sh
#   SHOAL_NODE_ARGS="--appendfsync everysec" scripts/bench-redis-cluster.sh
#
# Knobs (environment):
#   N                     requests per test at -P 1                  (default 400000)
#   N_PIPELINED           requests per test at -P > 1                (default 3000000)
#   CLIENTS, DATA_SIZE    -c and -d                                  (default 50, 100)
#   TESTS                 redis-benchmark tests (-t)                 (default set,get)
#   PIPELINES             -P values                                  (default "1 16")
#   REPEAT, BENCH_TIMEOUT, OUT_CSV: as in scripts/bench-vs-redis.sh
#   BENCH_BASE_PORT       client port of shoal node 1 (peers: +10000)        (default 7401)
#   BENCH_CLUSTER_DIR     shoal's state folder       (default /tmp/shoal-bench-rc-BASE)
#   REDIS_CLUSTER_PORT    port of Redis Cluster node 1 (3 ports from it, bus: +10000)
#                                                                             (default 7451)
#   SHOAL_NODE_ARGS, SHOAL_UP_TIMEOUT: see scripts/cluster.sh
#   REDIS_PORT, REDIS_SERVER_BIN, SHOAL_BIN, SHOAL_SKIP_BUILD, STARTUP_TIMEOUT, KEEP_WORKDIR:
#                         see scripts/lib/servers.sh (KEEP_WORKDIR=1 also keeps shoal's data
#                         and logs)
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

N=${N:-400000}
N_PIPELINED=${N_PIPELINED:-3000000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-1 16}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
REPEAT=${REPEAT:-1}
OUT_CSV=${OUT_CSV:-}
REDIS_CLUSTER_PORT=${REDIS_CLUSTER_PORT:-7451}
NODES=3
export SHOAL_BASE_PORT=${BENCH_BASE_PORT:-7401}
export SHOAL_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/shoal-bench-rc-$SHOAL_BASE_PORT}

for v in N N_PIPELINED CLIENTS DATA_SIZE BENCH_TIMEOUT REPEAT SHOAL_BASE_PORT REDIS_CLUSTER_PORT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
((SHOAL_BASE_PORT + NODES - 1 + 10000 < 65536)) || die "BENCH_BASE_PORT is too high"
((REDIS_CLUSTER_PORT + NODES - 1 + 10000 < 65536)) || die "REDIS_CLUSTER_PORT is too high"
parse_bench_lists
TESTS_ARG=$(IFS=,; echo "${TEST_LIST[*]}")

require_cmds redis-cli redis-benchmark timeout awk setsid "$REDIS_SERVER_BIN"
CLUSTER_SH="$ROOT/scripts/cluster.sh"

SHOAL_PORTS=()
RC_PORTS=()
for ((i = 0; i < NODES; i++)); do
    SHOAL_PORTS+=($((SHOAL_BASE_PORT + i)))
    RC_PORTS+=($((REDIS_CLUSTER_PORT + i)))
done
for p in "${SHOAL_PORTS[@]}" "${RC_PORTS[@]}"; do
    ensure_port_free "$p" "set BENCH_BASE_PORT / REDIS_CLUSTER_PORT"
    ensure_port_free $((p + 10000)) "set BENCH_BASE_PORT / REDIS_CLUSTER_PORT"
done
for p in "$REDIS_PORT" "${SHOAL_PORTS[@]}"; do
    for q in "${RC_PORTS[@]}"; do
        [[ $p != "$q" ]] || die "port $p is used twice; set REDIS_PORT / BENCH_BASE_PORT / REDIS_CLUSTER_PORT"
    done
done

maybe_build_shoal

# Stops the shoal cluster from servers.sh's cleanup (the redis-servers are stopped there
# too); deletes its data and logs unless the script failed (not counting an interrupt) or
# KEEP_WORKDIR=1, as cleanup does with the work folder.
CLUSTER_STARTED=0
# shellcheck disable=SC2317 # invoked by cleanup
cluster_down() {
    ((CLUSTER_STARTED)) || return 0
    local status=${rc:-1}
    if [[ $KEEP_WORKDIR == 1 ]] || ((status != 0 && status != 130 && status != 143)); then
        "$CLUSTER_SH" down
        log "kept the shoal cluster's data and logs in $SHOAL_CLUSTER_DIR"
    else
        "$CLUSTER_SH" down --clean
    fi
}
CLEANUP_HOOKS+=(cluster_down)

setup_workdir

# --- redis-single ----------------------------------------------------------------------------
start_redis
wait_ready redis

# --- redis-cluster ---------------------------------------------------------------------------
for ((i = 0; i < NODES; i++)); do
    p=${RC_PORTS[$i]}
    d="$WORKDIR/redis-cluster-$p"
    mkdir -p "$d"
    start_server "rc$((i + 1))" "$p" "$(printf '%q ' "$REDIS_SERVER_BIN" --port "$p" \
        --bind "$HOST" --cluster-enabled yes --cluster-config-file "$d/nodes.conf" \
        --dir "$d" --save '' --appendonly no --daemonize no --protected-mode yes)"
done
for ((i = 1; i <= NODES; i++)); do wait_ready "rc$i"; done
RC_ADDRS=()
for p in "${RC_PORTS[@]}"; do RC_ADDRS+=("$HOST:$p"); done
log "creating the Redis Cluster: redis-cli --cluster create ${RC_ADDRS[*]} --cluster-replicas 0"
run_child timeout 60 redis-cli --cluster create "${RC_ADDRS[@]}" --cluster-replicas 0 \
    --cluster-yes >"$WORKDIR/redis-cluster-create.log" 2>&1 </dev/null ||
    die "redis-cli --cluster create failed; see $WORKDIR/redis-cluster-create.log"

# cluster_state_ok PORT: CLUSTER INFO of the node says cluster_state:ok.
cluster_state_ok() {
    timeout 5 redis-cli -h "$HOST" -p "$1" cluster info 2>/dev/null | tr -d '\r' |
        grep -qx 'cluster_state:ok'
}
# masters PORT: how many masters with slots CLUSTER NODES of the node lists.
masters() {
    timeout 5 redis-cli -h "$HOST" -p "$1" cluster nodes 2>/dev/null |
        awk '$3 ~ /master/ && NF > 8 { n++ } END { print n + 0 }'
}
# wait_cluster PORT...: until each node says cluster_state:ok and lists NODES masters with
# slots, the same for two looks in a row 1 s apart (shoal balances shard leaders after `up`).
wait_cluster() {
    local deadline=$((SECONDS + 120)) p ok streak=0
    while ((streak < 2)); do
        ok=1
        for p in "$@"; do
            if ! cluster_state_ok "$p" || [[ $(masters "$p") != "$NODES" ]]; then ok=0; fi
        done
        if ((ok)); then streak=$((streak + 1)); else streak=0; fi
        ((SECONDS < deadline)) ||
            die "cluster on ports $* not ok with $NODES masters after 120 s"
        sleep 1
    done
}
wait_cluster "${RC_PORTS[@]}"
log "Redis Cluster is up: $(masters "${RC_PORTS[0]}") masters"

# --- shoal -----------------------------------------------------------------------------------
CLUSTER_STARTED=1
SHOAL_CLEAN=1 "$CLUSTER_SH" down >/dev/null
SHOAL_SKIP_BUILD=1 run_child "$CLUSTER_SH" up "$NODES" </dev/null >&2 ||
    die "the shoal cluster did not come up (logs in $SHOAL_CLUSTER_DIR)"
wait_cluster "${SHOAL_PORTS[@]}"
log "shoal cluster is up: $(masters "${SHOAL_PORTS[0]}") masters"

log "redis-benchmark: $(redis-benchmark --version 2>&1 | head -n 1); N=$N" \
    "N_PIPELINED=$N_PIPELINED clients=$CLIENTS" \
    "data=${DATA_SIZE}B tests=${TEST_LIST[*]} pipelines=${PIPELINE_LIST[*]} repeat=$REPEAT" \
    "shoal node args: ${SHOAL_NODE_ARGS:-(none)}"

TARGETS=(shoal redis-single redis-cluster)
declare -A RPS=()         # "test|pipeline|target" -> space-separated ops/s of each run
declare -A FAILED=()      # "test|pipeline|target" -> 1 if a run failed
declare -A ERR_LINES=()   # target -> error lines seen
for t in "${TARGETS[@]}"; do ERR_LINES[$t]=0; done
FAILED_RUNS=()

# ports_of TARGET: the target's client ports (a cluster's every node).
ports_of() {
    case $1 in
    shoal) echo "${SHOAL_PORTS[*]}" ;;
    redis-single) echo "$REDIS_PORT" ;;
    redis-cluster) echo "${RC_PORTS[*]}" ;;
    esac
}

# empty TARGET: FLUSHALL on each of its nodes (a shoal node's FLUSHALL covers the whole cluster;
# a Redis Cluster master's only its own slots).
empty() {
    local p reply
    for p in $(ports_of "$1"); do
        reply=$(timeout 30 redis-cli -h "$HOST" -p "$p" flushall 2>&1) ||
            die "FLUSHALL on $1 (port $p) failed: $reply"
        [[ $reply == OK ]] || die "FLUSHALL on $1 (port $p) replied: $reply"
        [[ $1 != shoal ]] || break
    done
}

# alive TARGET: fails if one of its nodes stopped answering PING.
alive() {
    local p
    for p in $(ports_of "$1"); do
        [[ $(timeout 5 redis-cli -h "$HOST" -p "$p" ping 2>/dev/null) == PONG ]] ||
            die "$1 node on port $p does not answer PING (logs: $WORKDIR, $SHOAL_CLUSTER_DIR)"
    done
}

# run_one TARGET PIPELINE REP: one redis-benchmark run of every test; records ops/s per test.
run_one() {
    local target=$1 pipe=$2 rep=$3 port cluster_flag=()
    local base="$WORKDIR/bench-$target-P$pipe-r$rep"
    local out="$base.out" err="$base.err" what="$target -P $pipe"
    ((REPEAT == 1)) || what+=" (run $rep/$REPEAT)"
    local rc=0 errors test rps upper why n=$N
    ((pipe == 1)) || n=$N_PIPELINED
    read -r port _ <<<"$(ports_of "$target")"
    [[ $target == redis-single ]] || cluster_flag=(--cluster)

    empty "$target"
    run_child timeout -k 5 "$BENCH_TIMEOUT" \
        redis-benchmark "${cluster_flag[@]}" -h "$HOST" -p "$port" -q --csv \
        -t "$TESTS_ARG" -n "$n" -c "$CLIENTS" -d "$DATA_SIZE" -P "$pipe" \
        >"$out" 2>"$err" </dev/null || rc=$?

    # Anything but the CSV rows, the cluster banner and blank lines that mentions an error.
    errors=$(cat "$out" "$err" | tr '\r' '\n' | grep -ciE 'error|moved|crossslot|fail' || true)
    ERR_LINES[$target]=$((ERR_LINES[$target] + errors))
    for test in "${TEST_LIST[@]}"; do
        upper=${test^^}
        # The rows look like: "SET","123456.79","0.2",...
        rps=$(awk -F, -v t="\"$upper\"" '$1 == t { gsub(/"/, "", $2); print $2; exit }' "$out")
        if ((rc != 0)) || ((errors > 0)) || ! [[ $rps =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
            FAILED["$test|$pipe|$target"]=1
        else
            RPS["$test|$pipe|$target"]+="$rps "
        fi
    done
    if ((rc != 0)) || ((errors > 0)); then
        why="exit $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${BENCH_TIMEOUT}s"
        FAILED_RUNS+=("$what ($why, $errors error lines): $(
            grep -hv '^"' "$out" "$err" | tr '\r\n' '  ' | cut -c1-300)")
        log "$what FAILED ($why); output in $out / $err"
    else
        log "$what: $(grep -h '^"[A-Z]' "$out" | awk -F, '{ gsub(/"/, ""); printf "%s %s ops/s  ", $1, $2 }')"
    fi
    alive "$target"
}

i=0
for ((rep = 1; rep <= REPEAT; rep++)); do
    for pipe in "${PIPELINE_LIST[@]}"; do
        for ((k = 0; k < ${#TARGETS[@]}; k++)); do
            run_one "${TARGETS[$(((i + k) % ${#TARGETS[@]}))]}" "$pipe" "$rep"
        done
        i=$((i + 1))
    done
done

# The table: cell and ratio come from scripts/lib/servers.sh.
echo
((REPEAT == 1)) || echo "ops/s are medians of $REPEAT runs"
fmt='%-6s %8s %14s %17s %18s %15s %16s\n'
# shellcheck disable=SC2059 # the format is the constant above
printf "$fmt" test pipeline "shoal ops/s" "redis-single ops/s" "redis-cluster ops/s" \
    "shoal/single" "shoal/cluster"
# shellcheck disable=SC2059
printf "$fmt" ------ -------- -------------- ----------------- ------------------ \
    --------------- ----------------
if [[ -n $OUT_CSV ]]; then
    echo "test,pipeline,shoal_ops_per_sec,redis_single_ops_per_sec,redis_cluster_ops_per_sec,ratio_shoal_single,ratio_shoal_cluster" >"$OUT_CSV"
fi
for pipe in "${PIPELINE_LIST[@]}"; do
    for test in "${TEST_LIST[@]}"; do
        s=$(cell "$test" "$pipe" shoal)
        r=$(cell "$test" "$pipe" redis-single)
        c=$(cell "$test" "$pipe" redis-cluster)
        qr=$(ratio "$r" "$s")
        qc=$(ratio "$c" "$s")
        # shellcheck disable=SC2059
        printf "$fmt" "$test" "$pipe" "$s" "$r" "$c" "$qr" "$qc"
        if [[ -n $OUT_CSV ]]; then echo "$test,$pipe,$s,$r,$c,$qr,$qc" >>"$OUT_CSV"; fi
    done
done
echo
echo "error lines: shoal ${ERR_LINES[shoal]}, redis-single ${ERR_LINES[redis-single]}," \
    "redis-cluster ${ERR_LINES[redis-cluster]}"

status=0
print_failed_runs || status=1
exit "$status"
