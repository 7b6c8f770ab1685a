#!/usr/bin/env bash
#
# cluster.sh: run a local shoal cluster on 127.0.0.1 for trying things out, benchmarks and
# fault injection.
#
# Usage:
#   scripts/cluster.sh up [N]          start N nodes (default 3) and wait until the cluster is ok
#   scripts/cluster.sh down [--clean]  stop every node (SIGTERM, SIGKILL after a grace period);
#                                      --clean (or SHOAL_CLEAN=1) also deletes data and logs
#   scripts/cluster.sh status          one line per node: port, pid, alive, shards led/hosted,
#                                      cluster_state; exit status 0 only if every node is alive
#                                      and says cluster_state:ok
#   scripts/cluster.sh kill I          SIGKILL node I (1-based) and wait until it is gone
#   scripts/cluster.sh stop I          SIGTERM node I (SIGKILL after the grace period)
#   scripts/cluster.sh restart I       (stop node I if it runs, then) start it again on its data
#                                      dir with its original command line; wait until it answers
#                                      PING and its CLUSTER INFO says cluster_state:ok
#
# Layout: node I listens for clients on 127.0.0.1:BASE+I-1 and for peers on that port + 10000,
# with BASE=${SHOAL_BASE_PORT:-7001}. Node 1 starts first without --join and creates the
# cluster; nodes 2..N then join it one at a time with `--join 127.0.0.1:BASE+10000` (the flag is
# ignored by a node whose data dir already holds an identity, so restarts reuse it harmlessly).
# Everything lives in one state folder, SHOAL_CLUSTER_DIR (default /tmp/shoal-cluster-BASE):
#   nodes, base-port     the cluster's size and base port (read by every command but `up`)
#   node-I/              node I's --data-dir
#   node-I.log           node I's stdout and stderr (appended to on every start)
#   node-I.pid           node I's process id
#   node-I.cmd           node I's command line (shell-quoted); `restart` runs it again as is
# `down` keeps the folder, so a later `up` with the same N restarts the same cluster from its data
# (nodes that have data reuse their saved command line; SHOAL_NODE_ARGS applies to new ones);
# `down --clean` deletes the node folders, logs and the files above (then the folder if empty).
# Nodes run in their own session (setsid), so they outlive this script and a Ctrl-C aimed at
# whatever ran it; only `down`, `stop` and `kill` end them.
#
# `kill I` prints `killed node I (pid P) at T`, where T is the wall-clock time of the kill in
# seconds since the epoch with microseconds (bash's EPOCHREALTIME, taken right before kill(2));
# scripts/failover.sh reads it to time failovers.
#
# Knobs (environment):
#   SHOAL_BASE_PORT     client port of node 1                              (default 7001)
#   SHOAL_CLUSTER_DIR   state folder                          (default /tmp/shoal-cluster-BASE)
#   SHOAL_NODE_ARGS     extra flags for every node at `up`, split on whitespace, e.g.
#                       "--shards 8 --replicas 3 --appendfsync everysec"
#   SHOAL_CLEAN         1: `down` behaves as `down --clean`
#   SHOAL_UP_TIMEOUT    seconds `up`/`restart` wait for cluster_state:ok   (default 60)
#   SHOAL_STOP_TIMEOUT  seconds `down`/`stop` wait after SIGTERM before SIGKILL (default 10)
#   SHOAL_BIN, SHOAL_SKIP_BUILD, STARTUP_TIMEOUT (seconds for a node's first PONG, default 30):
#                       see scripts/lib/servers.sh
#
# Connect with `redis-cli -p 7001` (any node accepts any key). Only 127.0.0.1 is used.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

SCRIPT=$(basename "$0")
BASE=${SHOAL_BASE_PORT:-7001}
if ! is_pos_int "$BASE" || ((BASE + 10000 >= 65536)); then
    die "SHOAL_BASE_PORT must be a port number below 55536, got '$BASE'"
fi
DIR=${SHOAL_CLUSTER_DIR:-/tmp/shoal-cluster-$BASE}
UP_TIMEOUT=${SHOAL_UP_TIMEOUT:-60}
STOP_TIMEOUT=${SHOAL_STOP_TIMEOUT:-10}
SHOAL_NODE_ARGS=${SHOAL_NODE_ARGS:-}
SHOAL_CLEAN=${SHOAL_CLEAN:-0}
NODES=0
ALL=() # 1..NODES
for v in UP_TIMEOUT STOP_TIMEOUT STARTUP_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done

usage() {
    cat >&2 <<EOF
usage: $SCRIPT up [N]          start N nodes (default 3) on 127.0.0.1:$BASE.. and wait for cluster_state:ok
       $SCRIPT down [--clean]  stop all nodes (--clean or SHOAL_CLEAN=1: also delete data and logs)
       $SCRIPT status          per node: port, pid, alive, shards led/hosted, cluster_state
       $SCRIPT kill I          SIGKILL node I (1-based)
       $SCRIPT stop I          SIGTERM node I
       $SCRIPT restart I       start node I again on its data dir and wait for cluster_state:ok
state folder: $DIR (SHOAL_CLUSTER_DIR); base port: $BASE (SHOAL_BASE_PORT)
EOF
    exit 2
}

port_of() { echo $((BASE + $1 - 1)); }
peer_port_of() { echo $((BASE + $1 - 1 + 10000)); }
pid_file() { echo "$DIR/node-$1.pid"; }
log_file() { echo "$DIR/node-$1.log"; }
cmd_file() { echo "$DIR/node-$1.cmd"; }
data_dir() { echo "$DIR/node-$1"; }

# pid_alive PID: the process exists and is not a zombie (a node killed after this script
# exited is reaped by whatever adopted it, which may be late or never).
pid_alive() {
    local pid=$1 state
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# node_pid I: node I's recorded pid if that process is alive and is node I (its command line
# names node I's data dir, so a recycled pid is not mistaken for it); empty otherwise.
node_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 0
    pid=$(<"$f")
    is_pos_int "$pid" || return 0
    pid_alive "$pid" || return 0
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$(data_dir "$1")" || return 0
    echo "$pid"
}

# Reads the cluster's size and base port written by `up`.
load_state() {
    [[ -f $DIR/nodes ]] || die "no cluster in $DIR (start one with: $SCRIPT up)"
    NODES=$(<"$DIR/nodes")
    is_pos_int "$NODES" || die "corrupt $DIR/nodes"
    mapfile -t ALL < <(seq 1 "$NODES")
    local base
    base=$(<"$DIR/base-port")
    [[ $base == "$BASE" ]] ||
        die "$DIR belongs to a cluster on base port $base, not $BASE; set SHOAL_BASE_PORT=$base"
}

check_index() {
    local i=${1:-}
    is_pos_int "$i" || usage
    ((i <= NODES)) || die "no node $i: the cluster in $DIR has $NODES nodes"
}

# ncli PORT ARGS...: redis-cli against a node, bounded so a hung node cannot hang the script;
# CRs stripped (INFO and CLUSTER INFO lines end in CRLF).
ncli() {
    local port=$1
    shift
    timeout 3 redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# field TEXT NAME: the value of the "NAME:value" line of TEXT.
field() { awk -F: -v k="$2" '$1 == k { sub(/^[^:]*:/, ""); print; exit }' <<<"$1"; }

# start_node I: runs node I's saved command line in its own session, output appended to its
# log; sets SERVER_PID/SERVER_PORT/SERVER_LOG["node I"] for servers.sh's wait_ready.
start_node() {
    local i=$1 port cmd pidf logf pid=""
    port=$(port_of "$i")
    pidf=$(pid_file "$i")
    logf=$(log_file "$i")
    cmd=$(<"$(cmd_file "$i")")
    ensure_port_free "$port" "it is node $i's client port"
    ensure_port_free "$(peer_port_of "$i")" "it is node $i's peer port"
    rm -f "$pidf"
    printf '=== %s: starting node %d: %s\n' "$(date '+%F %T')" "$i" "$cmd" >>"$logf"
    log "starting node $i on 127.0.0.1:$port"
    # The wrapper records its own pid and then becomes the node (exec), so the pid is the
    # node's even if setsid had to fork. It first closes every descriptor above stderr: an
    # inherited pipe (servers.sh's LOG_FD, a caller's `$(...)` or `| tee`) would otherwise stay
    # open for the node's lifetime and keep the caller waiting for end-of-file.
    # shellcheck disable=SC2016 # expanded by the wrapper shell, not here
    local wrapper='for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"; done'
    wrapper+="; echo \$\$ >$(printf '%q' "$pidf"); exec $cmd"
    setsid bash -c "$wrapper" >>"$logf" 2>&1 </dev/null &
    local t
    for ((t = 0; t < 100; t++)); do
        [[ -s $pidf ]] && pid=$(<"$pidf") && is_pos_int "$pid" && break
        sleep 0.02
    done
    is_pos_int "$pid" || die "node $i did not start (see $logf)"
    SERVER_PID["node $i"]=$pid
    SERVER_PORT["node $i"]=$port
    SERVER_LOG["node $i"]=$logf
}

# wait_cluster_ok DEADLINE N I...: waits until every node I listed says cluster_state:ok and,
# when N > 0, cluster_known_nodes:N; dies at DEADLINE (in $SECONDS).
wait_cluster_ok() {
    local deadline=$1 want=$2 i info state known pending
    shift 2
    while :; do
        pending=()
        for i in "$@"; do
            info=$(ncli "$(port_of "$i")" cluster info || true)
            state=$(field "$info" cluster_state)
            known=$(field "$info" cluster_known_nodes)
            if [[ $state != ok ]] || { ((want > 0)) && [[ $known != "$want" ]]; }; then
                pending+=("node $i: cluster_state:${state:-?} cluster_known_nodes:${known:-?}")
            fi
        done
        ((${#pending[@]} == 0)) && return 0
        for i in "$@"; do
            [[ -n $(node_pid "$i") ]] || die "node $i exited; see $(log_file "$i")"
        done
        if ((SECONDS >= deadline)); then
            printf '  %s\n' "${pending[@]}" >&2
            die "cluster not ok after ${UP_TIMEOUT}s; logs in $DIR"
        fi
        sleep 0.2
    done
}

# stop_nodes SIGNAL I...: sends SIGNAL to the listed live nodes; for TERM, waits up to
# STOP_TIMEOUT seconds, then SIGKILLs stragglers; waits until all are gone.
stop_nodes() {
    local sig=$1 i pid deadline
    shift
    declare -A pids=()
    for i in "$@"; do
        pid=$(node_pid "$i")
        [[ -n $pid ]] || continue
        pids[$i]=$pid
        kill -"$sig" "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + STOP_TIMEOUT))
    while ((${#pids[@]} > 0)); do
        for i in "${!pids[@]}"; do
            pid_alive "${pids[$i]}" || unset "pids[$i]"
        done
        ((${#pids[@]} == 0)) && break
        if ((SECONDS >= deadline)) && [[ $sig != KILL ]]; then
            for i in "${!pids[@]}"; do
                log "node $i (pid ${pids[$i]}) still running ${STOP_TIMEOUT}s after SIG$sig; sending SIGKILL"
                kill -KILL "${pids[$i]}" 2>/dev/null || true
            done
            sig=KILL
        fi
        sleep 0.05
    done
}

cmd_up() {
    local n=${1:-3} i pid running=() peer deadline
    if (($# > 1)) || ! is_pos_int "$n"; then usage; fi
    ((BASE + n - 1 + 10000 < 65536)) || die "ports run past 65535"
    require_cmds redis-cli timeout setsid awk
    if [[ -f $DIR/nodes ]]; then
        NODES=$(<"$DIR/nodes")
        for ((i = 1; i <= NODES; i++)); do
            pid=$(node_pid "$i")
            [[ -z $pid ]] || running+=("node $i (pid $pid)")
        done
        ((${#running[@]} == 0)) ||
            die "a cluster from $DIR is running: ${running[*]}; run: $SCRIPT down"
        [[ $(<"$DIR/base-port") == "$BASE" ]] ||
            die "$DIR holds a cluster on base port $(<"$DIR/base-port"); use $SCRIPT down --clean first"
        ((n >= NODES)) || die "$DIR holds a $NODES-node cluster; use $SCRIPT down --clean first"
    fi
    for ((i = 1; i <= n; i++)); do
        ensure_port_free "$(port_of "$i")" "it is node $i's client port; SHOAL_BASE_PORT moves the cluster"
        ensure_port_free "$(peer_port_of "$i")" "it is node $i's peer port; SHOAL_BASE_PORT moves the cluster"
    done
    maybe_build_shoal
    mkdir -p "$DIR"
    echo "$n" >"$DIR/nodes"
    echo "$BASE" >"$DIR/base-port"
    NODES=$n
    mapfile -t ALL < <(seq 1 "$NODES")
    log "state folder: $DIR"

    local -a extra=()
    read -r -a extra <<<"$SHOAL_NODE_ARGS"
    trap 'on_up_failure' EXIT
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$(data_dir "$i")"
        # A node whose data dir is not empty keeps its saved command line (restart of a
        # stopped cluster); new nodes get a fresh one.
        if [[ -f $(cmd_file "$i") && -n $(ls -A "$(data_dir "$i")") ]]; then
            log "node $i has data; reusing its saved command line"
        else
            local -a argv=("$SHOAL_BIN" --port "$(port_of "$i")" --cluster-port "$(peer_port_of "$i")"
                --bind "$HOST" --data-dir "$(data_dir "$i")")
            ((i == 1)) || argv+=(--join "$HOST:$(peer_port_of 1)")
            argv+=("${extra[@]}")
            printf '%q ' "${argv[@]}" >"$(cmd_file "$i")"
        fi
        start_node "$i"
        wait_ready "node $i"
        # Join one at a time: wait until this node knows at least i nodes.
        deadline=$((SECONDS + UP_TIMEOUT))
        while :; do
            peer=$(field "$(ncli "$(port_of "$i")" cluster info || true)" cluster_known_nodes)
            [[ $peer =~ ^[0-9]+$ ]] && ((peer >= i)) && break
            ensure_alive "node $i"
            ((SECONDS < deadline)) ||
                die "node $i knows ${peer:-?} nodes after ${UP_TIMEOUT}s, expected $i; see $(log_file "$i")"
            sleep 0.1
        done
    done
    log "all $n nodes started; waiting for cluster_state:ok on every node"
    wait_cluster_ok $((SECONDS + UP_TIMEOUT)) "$n" "${ALL[@]}"
    trap - EXIT
    log "cluster is up: $n nodes, client ports $BASE..$(port_of "$n"), state folder $DIR"
    local env=""
    [[ $BASE == 7001 ]] || env+="SHOAL_BASE_PORT=$BASE "
    [[ $DIR == "/tmp/shoal-cluster-$BASE" ]] || env+="SHOAL_CLUSTER_DIR=$DIR "
    echo "shoal cluster ready: $n nodes on 127.0.0.1:$BASE..$(port_of "$n"); connect with: redis-cli -p $BASE"
    echo "manage it with: $env$0 status | kill I | restart I | down [--clean]"
}

# A failed `up` stops what it started (data and logs stay for inspection).
on_up_failure() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)); then
        log "up failed; stopping the nodes started so far (logs stay in $DIR)"
        stop_nodes TERM "${ALL[@]}" || true
    fi
    exit "$rc"
}

cmd_down() {
    local clean=$SHOAL_CLEAN i
    case ${1:-} in
    "") ;;
    --clean) clean=1 ;;
    *) usage ;;
    esac
    (($# <= 1)) || usage
    if [[ ! -f $DIR/nodes ]]; then
        log "no cluster in $DIR; nothing to stop"
        return 0
    fi
    load_state
    stop_nodes TERM "${ALL[@]}"
    log "stopped all $NODES nodes"
    if [[ $clean == 1 ]]; then
        for ((i = 1; i <= NODES; i++)); do
            rm -rf "$(data_dir "$i")"
            rm -f "$(pid_file "$i")" "$(log_file "$i")" "$(cmd_file "$i")"
        done
        rm -f "$DIR/nodes" "$DIR/base-port"
        rmdir "$DIR" 2>/dev/null || log "left $DIR (it holds other files)"
        log "deleted the cluster's data and logs"
    else
        log "data and logs kept in $DIR (next '$SCRIPT up $NODES' restarts from them;" \
            "'$SCRIPT down --clean' deletes them)"
    fi
}

cmd_status() {
    (($# == 0)) || usage
    load_state
    local i pid port info raft alive state known led hosted noleader id meta rc=0
    local fmt='%-4s %-6s %-8s %-5s %-3s %-10s %-9s %-9s %-6s %s\n'
    echo "cluster in $DIR: $NODES nodes, base port $BASE"
    # shellcheck disable=SC2059 # the format is the constant above
    printf "$fmt" node port pid alive id led/hosted no-leader meta-role state known
    for ((i = 1; i <= NODES; i++)); do
        port=$(port_of "$i")
        pid=$(node_pid "$i")
        if [[ -z $pid ]]; then
            # shellcheck disable=SC2059
            printf "$fmt" "$i" "$port" - no - - - - - -
            rc=1
            continue
        fi
        alive=yes
        info=$(ncli "$port" cluster info || true)
        raft=$(ncli "$port" info raft || true)
        [[ -n $info ]] || alive=hung
        state=$(field "$info" cluster_state)
        known=$(field "$info" cluster_known_nodes)
        id=$(field "$raft" raft_node_id)
        led=$(field "$raft" raft_shards_led)
        hosted=$(field "$raft" raft_shards_hosted)
        noleader=$(field "$raft" raft_shards_without_leader)
        meta=$(field "$raft" raft_group_0 | tr ',' '\n' | awk -F= '$1 == "role" { print $2 }')
        [[ $state == ok ]] || rc=1
        # shellcheck disable=SC2059
        printf "$fmt" "$i" "$port" "$pid" "$alive" "${id:--}" "${led:--}/${hosted:--}" \
            "${noleader:--}" "${meta:--}" "${state:--}" "${known:--}"
    done
    return "$rc"
}

cmd_kill() {
    (($# == 1)) || usage
    load_state
    check_index "$1"
    local i=$1 pid t
    pid=$(node_pid "$i")
    [[ -n $pid ]] || die "node $i is not running"
    t=${EPOCHREALTIME/,/.} # just before kill(2): the node is alive until at least then
    kill -KILL "$pid"
    while pid_alive "$pid"; do sleep 0.01; done
    echo "killed node $i (pid $pid) at $t"
}

cmd_stop() {
    (($# == 1)) || usage
    load_state
    check_index "$1"
    local pid
    pid=$(node_pid "$1")
    [[ -n $pid ]] || die "node $1 is not running"
    stop_nodes TERM "$1"
    log "stopped node $1 (pid $pid)"
}

cmd_restart() {
    (($# == 1)) || usage
    load_state
    check_index "$1"
    local i=$1 pid
    require_cmds redis-cli timeout setsid awk
    [[ -f $(cmd_file "$i") ]] || die "no saved command line for node $i ($(cmd_file "$i"))"
    pid=$(node_pid "$i")
    if [[ -n $pid ]]; then
        log "node $i is running (pid $pid); stopping it first"
        stop_nodes TERM "$i"
    fi
    start_node "$i"
    wait_ready "node $i"
    wait_cluster_ok $((SECONDS + UP_TIMEOUT)) 0 "$i"
    log "node $i is back (pid ${SERVER_PID["node $i"]}) and says cluster_state:ok"
}

(($# >= 1)) || usage
command=$1
shift
case $command in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) cmd_status "$@" ;;
kill) cmd_kill "$@" ;;
stop) cmd_stop "$@" ;;
restart) cmd_restart "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
