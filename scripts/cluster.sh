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
#   scripts/cluster.sh add             start one more node (the next index and port) joining the
#                                      cluster; wait until the rebalancer has given it its share
#   scripts/cluster.sh remove I        drain node I (CLUSTER FORGET): its replicas move to the
#                                      other nodes, then it exits; wait for both. Its index is
#                                      then retired (node-I.removed), and `up` skips it
#   scripts/cluster.sh rolling-restart restart the nodes one at a time (SIGTERM, start, wait for
#                                      cluster_state:ok, no move pending and every node's
#                                      /readyz) before the next
#
# Layout: node I listens for clients on 127.0.0.1:BASE+I-1, for peers on that port + 10000 and
# for HTTP (/metrics, /readyz, the status page at /) on that port + 20000,
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
#   SHOAL_MOVE_TIMEOUT  seconds `add`/`remove` wait for rebalancing        (default 300)
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
if ! is_pos_int "$BASE" || ((BASE + 20000 >= 65536)); then
    die "SHOAL_BASE_PORT must be a port number below 45536, got '$BASE'"
fi
DIR=${SHOAL_CLUSTER_DIR:-/tmp/shoal-cluster-$BASE}
UP_TIMEOUT=${SHOAL_UP_TIMEOUT:-60}
STOP_TIMEOUT=${SHOAL_STOP_TIMEOUT:-10}
MOVE_TIMEOUT=${SHOAL_MOVE_TIMEOUT:-300}
SHOAL_NODE_ARGS=${SHOAL_NODE_ARGS:-}
SHOAL_CLEAN=${SHOAL_CLEAN:-0}
NODES=0
ALL=() # 1..NODES
for v in UP_TIMEOUT STOP_TIMEOUT MOVE_TIMEOUT STARTUP_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done

usage() {
    cat >&2 <<EOF
usage: $SCRIPT up [N]          start N nodes (default 3) on 127.0.0.1:$BASE.. and wait for cluster_state:ok
       $SCRIPT down [--clean]  stop all nodes (--clean or SHOAL_CLEAN=1: also delete data and logs)
       $SCRIPT status          per node: port, pid, alive, shards led/hosted, cluster_state;
                               then shards x nodes (L leader, F follower, l learner) and moves
       $SCRIPT kill I          SIGKILL node I (1-based)
       $SCRIPT stop I          SIGTERM node I
       $SCRIPT restart I       start node I again on its data dir and wait for cluster_state:ok
       $SCRIPT add             start one more node, join it and wait until it has its share
       $SCRIPT remove I        drain node I out of the cluster and wait until it exits
       $SCRIPT rolling-restart restart every node in turn, waiting for the cluster each time
state folder: $DIR (SHOAL_CLUSTER_DIR); base port: $BASE (SHOAL_BASE_PORT)
EOF
    exit 2
}

port_of() { echo $((BASE + $1 - 1)); }
peer_port_of() { echo $((BASE + $1 - 1 + 10000)); }
http_port_of() { echo $((BASE + $1 - 1 + 20000)); }
pid_file() { echo "$DIR/node-$1.pid"; }
log_file() { echo "$DIR/node-$1.log"; }
cmd_file() { echo "$DIR/node-$1.cmd"; }
removed_file() { echo "$DIR/node-$1.removed"; }
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

# live_indices: ALL = 1..NODES without the removed ones.
live_indices() {
    local i
    ALL=()
    for ((i = 1; i <= NODES; i++)); do
        [[ -f $(removed_file "$i") ]] || ALL+=("$i")
    done
}

# Reads the cluster's size and base port written by `up`.
load_state() {
    [[ -f $DIR/nodes ]] || die "no cluster in $DIR (start one with: $SCRIPT up)"
    NODES=$(<"$DIR/nodes")
    is_pos_int "$NODES" || die "corrupt $DIR/nodes"
    live_indices
    local base
    base=$(<"$DIR/base-port")
    [[ $base == "$BASE" ]] ||
        die "$DIR belongs to a cluster on base port $base, not $BASE; set SHOAL_BASE_PORT=$base"
}

check_index() {
    local i=${1:-}
    is_pos_int "$i" || usage
    ((i <= NODES)) || die "no node $i: the cluster in $DIR has $NODES nodes"
    [[ ! -f $(removed_file "$i") ]] || die "node $i was removed from the cluster"
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
    ensure_port_free "$(http_port_of "$i")" "it is node $i's HTTP port"
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
    local n=${1:-} i pid running=()
    if [[ -z $n ]]; then
        n=3
        [[ -f $DIR/nodes ]] && n=$(<"$DIR/nodes")
    fi
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
        ensure_port_free "$(http_port_of "$i")" "it is node $i's HTTP port; SHOAL_BASE_PORT moves the cluster"
    done
    maybe_build_shoal
    mkdir -p "$DIR"
    echo "$n" >"$DIR/nodes"
    echo "$BASE" >"$DIR/base-port"
    # `add` gives later nodes the same extra flags.
    [[ -f $DIR/node-args ]] || printf '%s\n' "$SHOAL_NODE_ARGS" >"$DIR/node-args"
    NODES=$n
    live_indices
    log "state folder: $DIR"

    local -a extra=()
    read -r -a extra <<<"$SHOAL_NODE_ARGS"
    trap 'on_up_failure' EXIT
    local started=0
    for i in "${ALL[@]}"; do
        mkdir -p "$(data_dir "$i")"
        # A node whose data dir is not empty keeps its saved command line (restart of a
        # stopped cluster); new nodes get a fresh one.
        if [[ -f $(cmd_file "$i") && -n $(ls -A "$(data_dir "$i")") ]]; then
            log "node $i has data; reusing its saved command line"
        else
            new_node_cmd "$i" "${ALL[0]}" "${extra[@]}"
        fi
        start_node "$i"
        wait_ready "node $i"
        started=$((started + 1))
        wait_known "$i" "$started"
    done
    log "all ${#ALL[@]} nodes started; waiting for cluster_state:ok on every node"
    wait_cluster_ok $((SECONDS + UP_TIMEOUT)) "${#ALL[@]}" "${ALL[@]}"
    trap - EXIT
    log "cluster is up: $n nodes, client ports $BASE..$(port_of "$n"), state folder $DIR"
    local env=""
    [[ $BASE == 7001 ]] || env+="SHOAL_BASE_PORT=$BASE "
    [[ $DIR == "/tmp/shoal-cluster-$BASE" ]] || env+="SHOAL_CLUSTER_DIR=$DIR "
    echo "shoal cluster ready: $n nodes on 127.0.0.1:$BASE..$(port_of "$n"); connect with: redis-cli -c -p $BASE"
    echo "manage it with: $env$0 status | kill I | restart I | add | remove I | down [--clean]"
}

# new_node_cmd I SEED EXTRA...: saves node I's command line: a new node that creates the
# cluster (I == SEED) or joins it through node SEED's peer port.
new_node_cmd() {
    local i=$1 seed=$2
    shift 2
    local -a argv=("$SHOAL_BIN" --port "$(port_of "$i")" --cluster-port "$(peer_port_of "$i")"
        --http-port "$(http_port_of "$i")" --bind "$HOST" --data-dir "$(data_dir "$i")")
    ((i == seed)) || argv+=(--join "$HOST:$(peer_port_of "$seed")")
    argv+=("$@")
    printf '%q ' "${argv[@]}" >"$(cmd_file "$i")"
}

# wait_known I N: waits until node I knows at least N nodes (joins go one at a time).
wait_known() {
    local i=$1 want=$2 known deadline=$((SECONDS + UP_TIMEOUT))
    while :; do
        known=$(field "$(ncli "$(port_of "$i")" cluster info || true)" cluster_known_nodes)
        [[ $known =~ ^[0-9]+$ ]] && ((known >= want)) && return 0
        ensure_alive "node $i"
        ((SECONDS < deadline)) ||
            die "node $i knows ${known:-?} nodes after ${UP_TIMEOUT}s, expected $want; see $(log_file "$i")"
        sleep 0.1
    done
}

# wait_balanced I...: waits until the listed nodes report no move in flight or pending and
# cluster_state:ok (the rebalancer is done), for at most MOVE_TIMEOUT seconds.
wait_balanced() {
    local deadline=$((SECONDS + MOVE_TIMEOUT)) i info busy
    while :; do
        busy=()
        for i in "$@"; do
            info=$(ncli "$(port_of "$i")" cluster info || true)
            if [[ $(field "$info" cluster_state) != ok ||
                $(field "$info" shoal_moves_in_flight) != 0 ||
                $(field "$info" shoal_moves_pending) != 0 ]]; then
                busy+=("node $i: state=$(field "$info" cluster_state) in_flight=$(field "$info" shoal_moves_in_flight) pending=$(field "$info" shoal_moves_pending)")
            fi
        done
        ((${#busy[@]} == 0)) && return 0
        ((SECONDS < deadline)) || {
            printf '  %s\n' "${busy[@]}" >&2
            die "rebalancing not done after ${MOVE_TIMEOUT}s; logs in $DIR"
        }
        sleep 0.5
    done
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
        for ((i = 1; i <= NODES; i++)); do rm -f "$(removed_file "$i")"; done
        rm -f "$DIR/nodes" "$DIR/base-port" "$DIR/node-args"
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
    declare -A raft_of=() id_of=()
    echo "cluster in $DIR: ${#ALL[@]} nodes, base port $BASE"
    # shellcheck disable=SC2059 # the format is the constant above
    printf "$fmt" node port pid alive id led/hosted no-leader meta-role state known
    for ((i = 1; i <= NODES; i++)); do
        port=$(port_of "$i")
        if [[ -f $(removed_file "$i") ]]; then
            # shellcheck disable=SC2059
            printf "$fmt" "$i" "$port" - removed - - - - - -
            continue
        fi
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
        raft_of[$i]=$raft
        # shellcheck disable=SC2034 # read by print_shard_table through a nameref
        id_of[$i]=${id:-?}
        # shellcheck disable=SC2059
        printf "$fmt" "$i" "$port" "$pid" "$alive" "${id:--}" "${led:--}/${hosted:--}" \
            "${noleader:--}" "${meta:--}" "${state:--}" "${known:--}"
    done
    ((${#raft_of[@]} > 0)) || return "$rc"
    print_shard_table raft_of id_of
    return "$rc"
}

# print_shard_table RAFT_OF ID_OF: shards x live nodes from each node's INFO raft (L leader,
# F follower, l learner, c candidate, . no replica), then node states and moves in flight as
# group 0 records them, and the rebalancing counters.
print_shard_table() {
    local -n raft_ref=$1 ids_ref=$2
    local i shard shards line role cell first
    first=$(printf '%s\n' "${!raft_ref[@]}" | sort -n | head -1)
    shards=$(field "${raft_ref[$first]}" raft_shards)
    is_pos_int "${shards:-}" || return 0
    echo
    line=$(printf '%-6s' shard)
    for i in $(printf '%s\n' "${!raft_ref[@]}" | sort -n); do
        line+=$(printf ' %-5s' "n$i")
    done
    echo "$line   (node i = shoal id: $(for i in $(printf '%s\n' "${!ids_ref[@]}" | sort -n); do printf 'n%s=%s ' "$i" "${ids_ref[$i]}"; done))"
    for ((shard = 0; shard < shards; shard++)); do
        line=$(printf '%-6s' "$shard")
        for i in $(printf '%s\n' "${!raft_ref[@]}" | sort -n); do
            role=$(field "${raft_ref[$i]}" "raft_shard_$shard" | tr ',' '\n' | awk -F= '$1 == "role" { print $2 }')
            case $role in
            leader) cell=L ;;
            follower) cell=F ;;
            learner) cell=l ;;
            candidate) cell=c ;;
            "") cell=. ;;
            *) cell="?" ;;
            esac
            line+=$(printf ' %-5s' "$cell")
        done
        echo "$line"
    done
    echo
    grep -E '^raft_node_[0-9]+:' <<<"${raft_ref[$first]}" | sed 's/^raft_node_/node id /' || true
    if grep -qE '^raft_move_[0-9]+:' <<<"${raft_ref[$first]}"; then
        echo "moves in flight (group 0):"
        grep -E '^raft_move_[0-9]+:' <<<"${raft_ref[$first]}" | sed 's/^raft_move_/  shard /'
    fi
    local info
    info=$(ncli "$(port_of "$first")" cluster info || true)
    echo "moves: pending $(field "$info" shoal_moves_pending), in flight $(field "$info" shoal_moves_in_flight), done $(field "$info" shoal_moves_done)"
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

cmd_add() {
    (($# == 0)) || usage
    load_state
    require_cmds redis-cli timeout setsid awk
    ((${#ALL[@]} > 0)) || die "the cluster has no nodes left"
    local i=$((NODES + 1)) seed="" j
    ((BASE + i - 1 + 10000 < 65536)) || die "ports run past 65535"
    for j in "${ALL[@]}"; do
        [[ -n $(node_pid "$j") ]] && seed=$j && break
    done
    [[ -n $seed ]] || die "no node of the cluster is running; start it with: $SCRIPT up"
    ensure_port_free "$(port_of "$i")" "it would be node $i's client port"
    ensure_port_free "$(peer_port_of "$i")" "it would be node $i's peer port"
    ensure_port_free "$(http_port_of "$i")" "it would be node $i's HTTP port"
    maybe_build_shoal
    local -a extra=()
    local args=${SHOAL_NODE_ARGS:-}
    [[ -n $args || ! -f $DIR/node-args ]] || args=$(<"$DIR/node-args")
    read -r -a extra <<<"$args"
    rm -rf "$(data_dir "$i")"
    mkdir -p "$(data_dir "$i")"
    new_node_cmd "$i" "$seed" "${extra[@]}"
    echo "$i" >"$DIR/nodes"
    NODES=$i
    live_indices
    start_node "$i"
    wait_ready "node $i"
    wait_known "$i" "${#ALL[@]}"
    log "node $i joined; waiting for the rebalancer to give it its share"
    wait_balanced "${ALL[@]}"
    log "node $i is in: $(field "$(ncli "$(port_of "$i")" info raft)" raft_shards_hosted) shard replicas, $(field "$(ncli "$(port_of "$i")" info raft)" raft_shards_led) led"
    echo "added node $i on 127.0.0.1:$(port_of "$i")"
}

cmd_remove() {
    (($# == 1)) || usage
    load_state
    check_index "$1"
    require_cmds redis-cli timeout awk
    local i=$1 pid id via="" j reply deadline=$((SECONDS + MOVE_TIMEOUT))
    pid=$(node_pid "$i")
    for j in "${ALL[@]}"; do
        ((j != i)) && [[ -n $(node_pid "$j") ]] && via=$j && break
    done
    [[ -n $via ]] || die "no other node is running to drain node $i through"
    if [[ -n $pid ]]; then
        id=$(field "$(ncli "$(port_of "$i")" info raft)" raft_node_id)
    fi
    [[ -n ${id:-} ]] || die "cannot read node $i's id (is it running? $SCRIPT restart $i first)"
    reply=$(ncli "$(port_of "$via")" cluster forget "$id")
    [[ $reply == OK ]] || die "CLUSTER FORGET $id via node $via: ${reply:-no answer}"
    log "draining node $i (shoal id $id); its replicas move to the other nodes"
    while pid_alive "$pid"; do
        ((SECONDS < deadline)) || die "node $i still running after ${MOVE_TIMEOUT}s; see $(log_file "$i")"
        sleep 0.5
    done
    touch "$(removed_file "$i")"
    rm -f "$(pid_file "$i")"
    live_indices
    wait_balanced "${ALL[@]}"
    echo "removed node $i: drained, exited and left the cluster"
}

# wait_readyz I...: every node's /readyz answers 200 (each shard it replicates has a leader and
# its replica has applied what it knows is committed), so stopping the next node costs clients
# no more than a leadership hand-over.
wait_readyz() {
    local deadline=$((SECONDS + UP_TIMEOUT)) i waiting
    while :; do
        waiting=()
        for i in "$@"; do
            curl -fsS -m 2 -o /dev/null "http://$HOST:$(http_port_of "$i")/readyz" 2>/dev/null ||
                waiting+=("$i")
        done
        ((${#waiting[@]} == 0)) && return 0
        ((SECONDS < deadline)) || die "nodes ${waiting[*]} not ready (/readyz) after ${UP_TIMEOUT}s"
        sleep 0.2
    done
}

cmd_rolling_restart() {
    (($# == 0)) || usage
    load_state
    require_cmds curl
    local i
    for i in "${ALL[@]}"; do
        cmd_restart "$i"
        wait_balanced "${ALL[@]}"
        wait_readyz "${ALL[@]}"
        log "node $i restarted; every node is ready"
    done
    log "rolling restart done: ${#ALL[@]} nodes"
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
add) cmd_add "$@" ;;
remove) cmd_remove "$@" ;;
rolling-restart) cmd_rolling_restart "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
