#!/usr/bin/env bash
#
# failover.sh: how long a shard is unavailable for writes when its leader is SIGKILLed, and
# whether any acknowledged write is lost.
#
# What it does:
#   1. builds shoal-server and the `failover` tool (benches/src/bin/failover.rs) in release mode,
#      unless SHOAL_SKIP_BUILD=1;
#   2. starts a fresh NODES-node cluster with scripts/cluster.sh on its own ports and folder
#      (client ports FAILOVER_BASE_PORT.., default 7101; folder FAILOVER_CLUSTER_DIR, default
#      /tmp/shoal-failover-BASE), so it does not touch a cluster you run on 7001;
#   3. runs `failover run`: ROUNDS times, while a client writes `SET key <counter>` continuously
#      through a surviving node, it kills the node leading shard SHARD (`cluster.sh kill I`),
#      measures the time until a write succeeds again, restarts the node (`cluster.sh restart I`)
#      and checks that the last acknowledged value reads back from every node. See the tool's
#      documentation for the exact definitions;
#   4. stops the cluster however the script ends; its data and logs are deleted after a clean
#      run and kept (path printed) after a failure or with KEEP_CLUSTER=1.
#
# Output: one line per round, then
#   rounds: N
#   unavailability p50: X ms / unavailability p99: X ms / unavailability max: X ms
#   lost acknowledged writes: N
# Exit status: 0 when every round recovered and no acknowledged write was lost; 1 when an
# acknowledged write was lost; 2 when a round could not run or did not recover in time (or the
# cluster did not come up).
#
# Usage:
#   scripts/failover.sh
#   ROUNDS=3 scripts/failover.sh
#   SHOAL_NODE_ARGS="--appendfsync everysec" scripts/failover.sh
#
# Knobs (environment):
#   ROUNDS                kills to perform                                   (default 20)
#   NODES                 cluster size                                       (default 3)
#   SHARD                 shard whose leader is killed                       (default 0)
#   FAILOVER_BASE_PORT    client port of node 1                              (default 7101)
#   FAILOVER_CLUSTER_DIR  the cluster's state folder      (default /tmp/shoal-failover-BASE)
#   RECOVER_TIMEOUT       seconds a round may take to accept a write again   (default 60)
#   IO_TIMEOUT_MS         the writer's socket timeout                        (default 2000)
#   KEEP_CLUSTER          1: keep the cluster's data and logs after a clean run
#   SHOAL_NODE_ARGS, SHOAL_UP_TIMEOUT, SHOAL_STOP_TIMEOUT: see scripts/cluster.sh
#   SHOAL_SKIP_BUILD, SHOAL_BIN, STARTUP_TIMEOUT: see scripts/lib/servers.sh
#
# Only 127.0.0.1 is used.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

ROUNDS=${ROUNDS:-20}
NODES=${NODES:-3}
SHARD=${SHARD:-0}
RECOVER_TIMEOUT=${RECOVER_TIMEOUT:-60}
IO_TIMEOUT_MS=${IO_TIMEOUT_MS:-2000}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
export SHOAL_BASE_PORT=${FAILOVER_BASE_PORT:-7101}
export SHOAL_CLUSTER_DIR=${FAILOVER_CLUSTER_DIR:-/tmp/shoal-failover-$SHOAL_BASE_PORT}
for v in ROUNDS NODES RECOVER_TIMEOUT IO_TIMEOUT_MS SHOAL_BASE_PORT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
is_uint "$SHARD" || die "SHARD must be a non-negative integer, got '$SHARD'"
((NODES >= 2)) || die "NODES must be at least 2 (a leader is killed)"

CLUSTER_SH="$ROOT/scripts/cluster.sh"
require_cmds redis-cli timeout setsid awk

maybe_build_shoal
maybe_build_failover_tool

CLUSTER_STARTED=0
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $CHILD_PID ]]; then
        # The child leads its own process group (see run_group): stop it together with any
        # `cluster.sh kill/restart` it is running, so nothing starts a node after `down`.
        kill -TERM -- "-$CHILD_PID" 2>/dev/null || kill -TERM "$CHILD_PID" 2>/dev/null
        wait "$CHILD_PID" 2>/dev/null
    fi
    if ((CLUSTER_STARTED)); then
        if ((rc == 0)) && [[ $KEEP_CLUSTER != 1 ]]; then
            "$CLUSTER_SH" down --clean
        else
            "$CLUSTER_SH" down
            log "kept the cluster's data and logs in $SHOAL_CLUSTER_DIR" \
                "(delete with: SHOAL_BASE_PORT=$SHOAL_BASE_PORT SHOAL_CLUSTER_DIR=$SHOAL_CLUSTER_DIR $CLUSTER_SH down --clean)"
        fi
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_group CMD...: run_child (servers.sh) with CMD in a process group of its own (setsid does
# not fork here, so the child's pid is the group's id).
run_group() { run_child setsid "$@"; }

# A fresh cluster every time: leftovers of an earlier run in our folder go first.
CLUSTER_STARTED=1
SHOAL_CLEAN=1 "$CLUSTER_SH" down >/dev/null
rc=0
SHOAL_SKIP_BUILD=1 run_group "$CLUSTER_SH" up "$NODES" </dev/null || rc=$?
((rc == 0)) || exit 2

rc=0
run_group "$FAILOVER_BIN" run --cluster-sh "$CLUSTER_SH" --base-port "$SHOAL_BASE_PORT" \
    --nodes "$NODES" --rounds "$ROUNDS" --shard "$SHARD" \
    --recover-timeout-s "$RECOVER_TIMEOUT" --io-timeout-ms "$IO_TIMEOUT_MS" </dev/null || rc=$?
exit "$rc"
