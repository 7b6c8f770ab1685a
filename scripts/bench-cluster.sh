#!/usr/bin/env bash
#
# bench-cluster.sh: throughput of a 3-node shoal cluster (every shard replicated 3 times)
# next to a single real redis-server, measured with redis-benchmark on the same machine.
#
# Without -r, redis-benchmark uses one fixed key per test (SET and GET both send the literal
# `key:__rand_int__`, INCR `counter:__rand_int__`; checked with MONITOR against redis 7.0), so a
# run hits a single shard. Two shoal targets are measured for that shard:
#   leader      the node that leads the shard: writes go straight into its Raft group;
#   forwarded   a node that does not lead it: every request is forwarded to the leader over the
#               peer connection and the reply relayed back.
# The leader is looked up before every run (`failover leader-of KEY`, which reads INFO raft and
# maps the key to its shard exactly as a node does); a run during which the leader moved is
# reported and its cell is marked with `*`.
#
# What it does:
#   1. builds shoal-server and the failover tool in release mode unless SHOAL_SKIP_BUILD=1;
#   2. starts a reference `redis-server --save '' --appendonly no` (scripts/lib/servers.sh) and
#      a fresh cluster with `scripts/cluster.sh up 3` on its own ports and folder;
#   3. for every pipeline depth in PIPELINES and every test in TESTS runs
#        redis-benchmark -q --csv -t TEST -n N -c CLIENTS -d DATA_SIZE -P PIPELINE
#      once against each target, rotating which target goes first. For `get` the key is first
#      set to a DATA_SIZE-byte value, so GET measures hits;
#   4. prints one row per (test, pipeline): ops/s of redis, leader and forwarded, and the ratios
#      to redis. With REPEAT=R > 1 the sweep runs R times and each cell is the median.
#
# The cluster replicates every write to 3 nodes on this machine, with the nodes' default
# --appendfsync (always: an fsync per append batch) unless SHOAL_NODE_ARGS says otherwise;
# redis-server here neither replicates nor persists. The ratio is the price of replication, not
# a like-for-like comparison. Noise: see scripts/bench-vs-redis.sh (use REPEAT=3 or more).
#
# Exit status is non-zero if shoal sent any error reply, a run failed or timed out, or a
# server died.
#
# Usage:
#   scripts/bench-cluster.sh
#   N=20000 REPEAT=3 scripts/bench-cluster.sh
#   SHOAL_NODE_ARGS="--appendfsync everysec" scripts/bench-cluster.sh
#
# Knobs (environment):
#   N, CLIENTS, DATA_SIZE, PIPELINES, REPEAT, BENCH_TIMEOUT, OUT_CSV: as in bench-vs-redis.sh
#   TESTS                 set, get and/or incr                    (default set,get)
#   BENCH_BASE_PORT       client port of cluster node 1           (default 7201)
#   BENCH_CLUSTER_DIR     the cluster's state folder  (default /tmp/shoal-bench-cluster-BASE)
#   SHOAL_NODE_ARGS, SHOAL_UP_TIMEOUT: see scripts/cluster.sh
#   REDIS_PORT, REDIS_SERVER_BIN, SHOAL_BIN, SHOAL_SKIP_BUILD, STARTUP_TIMEOUT, KEEP_WORKDIR:
#                         see scripts/lib/servers.sh (KEEP_WORKDIR=1 also keeps the cluster's
#                         data and logs)
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-1 16}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
REPEAT=${REPEAT:-1}
OUT_CSV=${OUT_CSV:-}
NODES=3
export SHOAL_BASE_PORT=${BENCH_BASE_PORT:-7201}
export SHOAL_CLUSTER_DIR=${BENCH_CLUSTER_DIR:-/tmp/shoal-bench-cluster-$SHOAL_BASE_PORT}

for v in N CLIENTS DATA_SIZE BENCH_TIMEOUT REPEAT SHOAL_BASE_PORT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
parse_bench_lists

# The key redis-benchmark sends for TEST when run without -r.
bench_key() {
    case $1 in
    set | get) echo 'key:__rand_int__' ;;
    incr) echo 'counter:__rand_int__' ;;
    *) return 1 ;;
    esac
}
for t in "${TEST_LIST[@]}"; do
    bench_key "$t" >/dev/null || die "TESTS: only set, get and incr are supported, got '$t'"
done

require_cmds redis-cli redis-benchmark timeout awk setsid "$REDIS_SERVER_BIN"
CLUSTER_SH="$ROOT/scripts/cluster.sh"

maybe_build_shoal
maybe_build_failover_tool

# Stops the cluster from servers.sh's cleanup; deletes its data and logs unless the script
# failed or KEEP_WORKDIR=1.
CLUSTER_STARTED=0
# shellcheck disable=SC2317 # invoked by cleanup
cluster_down() {
    ((CLUSTER_STARTED)) || return 0
    if [[ $KEEP_WORKDIR == 1 ]] || ((${rc:-1} != 0)); then
        "$CLUSTER_SH" down
        log "kept the cluster's data and logs in $SHOAL_CLUSTER_DIR"
    else
        "$CLUSTER_SH" down --clean
    fi
}
FAILED_RUNS=()
CLEANUP_HOOKS+=(cluster_down)

setup_workdir
start_redis
wait_ready redis
CLUSTER_STARTED=1
SHOAL_CLEAN=1 "$CLUSTER_SH" down >/dev/null
SHOAL_SKIP_BUILD=1 run_child "$CLUSTER_SH" up "$NODES" </dev/null ||
    die "the cluster did not come up (logs in $SHOAL_CLUSTER_DIR)"

log "redis-benchmark: $(redis-benchmark --version 2>&1 | head -n 1); N=$N clients=$CLIENTS" \
    "data=${DATA_SIZE}B tests=${TEST_LIST[*]} pipelines=${PIPELINE_LIST[*]} repeat=$REPEAT" \
    "node args: ${SHOAL_NODE_ARGS:-(none)}"

GET_VALUE=$(printf '%*s' "$DATA_SIZE" '' | tr ' ' x)

# leader_of KEY: "SHARD LEADER_ID LEADER_PORT", retried while the shard has no leader.
leader_of() {
    local out i
    for ((i = 0; i < 100; i++)); do
        if out=$("$FAILOVER_BIN" leader-of "$1" --port "$SHOAL_BASE_PORT" 2>/dev/null); then
            echo "$out"
            return 0
        fi
        sleep 0.1
    done
    "$FAILOVER_BIN" leader-of "$1" --port "$SHOAL_BASE_PORT" || die "cannot find the leader of $1"
}

# Fails if a cluster node stopped answering PING.
ensure_cluster_alive() {
    local i port
    for ((i = 1; i <= NODES; i++)); do
        port=$((SHOAL_BASE_PORT + i - 1))
        [[ $(timeout 5 redis-cli -h "$HOST" -p "$port" ping 2>/dev/null) == PONG ]] ||
            die "cluster node $i (port $port) does not answer PING; logs in $SHOAL_CLUSTER_DIR"
    done
}

declare -A RPS=()         # "test|pipeline|target" -> space-separated ops/s of each run
declare -A FAILED=()      # "test|pipeline|target" -> 1 if any run failed
declare -A MOVED=()       # "test|pipeline|target" -> 1 if the leader moved during a run
declare -A ERR_REPLIES=() # target -> error replies seen
TARGETS=(redis leader forwarded)
for t in "${TARGETS[@]}"; do ERR_REPLIES[$t]=0; done

# run_one TARGET TEST PIPELINE REP: one redis-benchmark run; records ops/s or a failure.
run_one() {
    local target=$1 test=$2 pipe=$3 rep=$4 key="$2|$3|$1"
    local base="$WORKDIR/bench-$target-$test-P$pipe-r$rep"
    local out="$base.out" err="$base.err" what="$target $test -P $pipe"
    ((REPEAT == 1)) || what+=" (run $rep/$REPEAT)"
    local rc=0 port bkey shard leader leader_port after="" i

    bkey=$(bench_key "$test")
    if [[ $target == redis ]]; then
        port=$REDIS_PORT
        flushall redis
    else
        read -r shard leader leader_port <<<"$(leader_of "$bkey")"
        if [[ $target == leader ]]; then
            port=$leader_port
        else
            for ((i = 1; i <= NODES; i++)); do
                port=$((SHOAL_BASE_PORT + i - 1))
                [[ $port == "$leader_port" ]] || break
            done
        fi
        what+=" (shard $shard, leader node id $leader, sending to port $port)"
    fi
    if [[ $test == get ]]; then
        [[ $(timeout 30 redis-cli -h "$HOST" -p "$port" set "$bkey" "$GET_VALUE") == OK ]] ||
            die "could not seed the GET key on $target (port $port)"
    fi

    run_child timeout -k 5 "$BENCH_TIMEOUT" \
        redis-benchmark -h "$HOST" -p "$port" -q --csv \
        -t "$test" -n "$N" -c "$CLIENTS" -d "$DATA_SIZE" -P "$pipe" \
        >"$out" 2>"$err" </dev/null || rc=$?

    if [[ $target != redis ]]; then
        after=$(leader_of "$bkey")
        if [[ $after != "$shard $leader $leader_port" ]]; then
            MOVED[$key]=1
            log "$what: the leader moved during the run (now: $after)"
        fi
    fi

    record_run "$key" "$what" "$out" "$err" "$rc"
    ERR_REPLIES[$target]=$((ERR_REPLIES[$target] + RUN_ERRORS))
    if [[ $target == redis ]]; then ensure_alive redis; else ensure_cluster_alive; fi
}

sweep "${TARGETS[@]}"

echo
((REPEAT == 1)) || echo "ops/s are medians of $REPEAT runs"
fmt='%-6s %8s %14s %14s %14s %12s %12s\n'
# shellcheck disable=SC2059 # the format is the constant above
printf "$fmt" test pipeline "redis ops/s" "leader ops/s" "fwd ops/s" "leader/redis" "fwd/redis"
# shellcheck disable=SC2059
printf "$fmt" ------ -------- -------------- -------------- -------------- ------------ ------------
if [[ -n $OUT_CSV ]]; then
    echo "test,pipeline,redis_ops_per_sec,leader_ops_per_sec,forwarded_ops_per_sec,ratio_leader_redis,ratio_forwarded_redis" >"$OUT_CSV"
fi
any_moved=0
for pipe in "${PIPELINE_LIST[@]}"; do
    for test in "${TEST_LIST[@]}"; do
        r=$(cell "$test" "$pipe" redis)
        l=$(cell "$test" "$pipe" leader)
        f=$(cell "$test" "$pipe" forwarded)
        ql=$(ratio "$r" "$l")
        qf=$(ratio "$r" "$f")
        [[ -z ${MOVED["$test|$pipe|leader"]:-} ]] || { l+="*" && any_moved=1; }
        [[ -z ${MOVED["$test|$pipe|forwarded"]:-} ]] || { f+="*" && any_moved=1; }
        # shellcheck disable=SC2059
        printf "$fmt" "$test" "$pipe" "$r" "$l" "$f" "$ql" "$qf"
        if [[ -n $OUT_CSV ]]; then echo "$test,$pipe,$r,${l%\*},${f%\*},$ql,$qf" >>"$OUT_CSV"; fi
    done
done
echo
((any_moved == 0)) || echo "* the shard's leader moved during at least one of these runs"
echo "error replies: redis ${ERR_REPLIES[redis]}, shoal leader ${ERR_REPLIES[leader]}," \
    "shoal forwarded ${ERR_REPLIES[forwarded]} (redis-benchmark stops a run at the first one)"

status=0
print_failed_runs || status=1
if ((ERR_REPLIES[leader] + ERR_REPLIES[forwarded] > 0)); then
    echo "FAIL: shoal returned error replies"
    status=1
fi
exit "$status"
