# shellcheck shell=bash
#
# Shared helpers for scripts/bench-vs-redis.sh and scripts/mem-per-key.sh: start a shoal
# server and a reference redis-server on loopback ports, wait until they answer PING, and
# stop them again however the calling script exits. Source it; do not run it.
# scripts/cluster.sh, scripts/failover.sh and scripts/bench-cluster.sh use the logging, build,
# port and PING helpers too.
#
# Knobs read here (all optional):
#   REDIS_PORT        port for the reference redis-server            (default 16379)
#   SHOAL_PORT        port for shoal                                  (default 16380)
#   REDIS_SERVER_BIN  redis-server binary                             (default redis-server)
#   SHOAL_SERVER_CMD  command line that starts shoal in the foreground, run as
#                     `bash -c "exec $SHOAL_SERVER_CMD"` (so it must be one process, which
#                     keeps the PID right for /proc/PID/status). `@PORT@` is replaced by
#                     $SHOAL_PORT and `@DATADIR@` by a fresh temporary directory. When set,
#                     no cargo build is done. Example stand-in:
#                       SHOAL_SERVER_CMD="redis-server --port @PORT@ --bind 127.0.0.1 --save '' --appendonly no"
#   SHOAL_BIN         shoal binary when SHOAL_SERVER_CMD is unset
#                     (default ${CARGO_TARGET_DIR:-<repo>/target}/release/shoal-server)
#   SHOAL_SKIP_BUILD  1: do not run `cargo build --release -p shoal-server`
#   STARTUP_TIMEOUT   seconds to wait for each server's first PONG    (default 30)
#   KEEP_WORKDIR      1: keep the temporary directory (server logs, data) on exit
#
# Everything talks to 127.0.0.1 only.

HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-16379}
SHOAL_PORT=${SHOAL_PORT:-16380}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-redis-server}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
SHOAL_SERVER_CMD=${SHOAL_SERVER_CMD:-}
SHOAL_SKIP_BUILD=${SHOAL_SKIP_BUILD:-0}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHOAL_BIN=${SHOAL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/shoal-server}

declare -A SERVER_PID=()   # name -> pid
declare -A SERVER_PORT=()  # name -> port
declare -A SERVER_LOG=()   # name -> log file
WORKDIR=""
CHILD_PID=""               # long-running client command in progress (see run_child)
CLEANUP_HOOKS=()           # commands cleanup runs (in order) before stopping the servers;
                           # they see the script's exit status as $rc

# Progress and errors go to the script's original stderr, even from a trap that fires while
# a function's output is redirected (run_child ... 2>file).
exec {LOG_FD}>&2
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&"$LOG_FD"; }
die() { log "ERROR: $*"; exit 1; }

require_cmds() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
    done
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# Creates $WORKDIR and installs the cleanup traps. Call once, early.
setup_workdir() {
    [[ $REDIS_PORT != "$SHOAL_PORT" ]] || die "REDIS_PORT and SHOAL_PORT must differ"
    ensure_port_free "$REDIS_PORT"
    ensure_port_free "$SHOAL_PORT"
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Stops every server we started (SIGTERM, then SIGKILL after 10 s) and reaps it.
stop_servers() {
    local name pid i
    for name in "${!SERVER_PID[@]}"; do
        pid=${SERVER_PID[$name]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for name in "${!SERVER_PID[@]}"; do
        pid=${SERVER_PID[$name]}
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        unset "SERVER_PID[$name]"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null
        wait "$CHILD_PID" 2>/dev/null
    fi
    local hook
    for hook in "${CLEANUP_HOOKS[@]}"; do
        $hook
    done
    stop_servers
    if [[ -n $WORKDIR && -d $WORKDIR ]]; then
        if [[ $KEEP_WORKDIR == 1 ]] || ((rc != 0 && rc != 130 && rc != 143)); then
            log "kept $WORKDIR (server logs) for inspection"
        else
            rm -rf "$WORKDIR"
        fi
    fi
    exit "$rc"
}

# run_child CMD...: runs CMD (stdin, stdout and stderr as given to run_child) and returns its
# status. CMD runs in the background while the shell waits for it, because bash runs an
# INT/TERM trap only after a foreground command has finished; this way a signal stops the
# script (and cleanup stops CMD) at once.
run_child() {
    local rc=0
    "$@" 0<&0 &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# ensure_port_free PORT [HINT]: fails if something already listens on 127.0.0.1:PORT; HINT
# (default "pick another port (REDIS_PORT / SHOAL_PORT)") ends the error message.
ensure_port_free() {
    local port=$1 hint=${2:-"pick another port (REDIS_PORT / SHOAL_PORT)"}
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use; $hint"
    fi
}

# Builds shoal in release mode unless told not to (or a custom command is used).
maybe_build_shoal() {
    if [[ -n $SHOAL_SERVER_CMD ]]; then
        log "SHOAL_SERVER_CMD is set; not building shoal"
        return
    fi
    if [[ $SHOAL_SKIP_BUILD == 1 ]]; then
        log "SHOAL_SKIP_BUILD=1; not building shoal"
    else
        require_cmds cargo
        log "building shoal: cargo build --release -p shoal-server"
        (cd "$ROOT" && cargo build --release -p shoal-server) >&2
    fi
    [[ -x $SHOAL_BIN ]] || die "shoal binary not found at $SHOAL_BIN"
}

# Builds the failover tool (benches/src/bin/failover.rs; it also maps keys to shards and finds
# their leaders) unless SHOAL_SKIP_BUILD=1, and sets FAILOVER_BIN.
maybe_build_failover_tool() {
    FAILOVER_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/failover
    if [[ $SHOAL_SKIP_BUILD != 1 ]]; then
        log "building the failover tool: cargo build --release -p shoal-benches --bin failover"
        (cd "$ROOT" && cargo build --release -p shoal-benches --bin failover) >&2
    fi
    [[ -x $FAILOVER_BIN ]] || die "failover tool not found at $FAILOVER_BIN"
}

# start_server NAME PORT COMMAND-STRING: runs the command in the background with its
# output in $WORKDIR/NAME.log and records its PID.
start_server() {
    local name=$1 port=$2 cmd=$3
    ensure_port_free "$port"
    SERVER_LOG[$name]="$WORKDIR/$name.log"
    SERVER_PORT[$name]=$port
    log "starting $name on 127.0.0.1:$port: $cmd"
    bash -c "exec $cmd" >"${SERVER_LOG[$name]}" 2>&1 </dev/null &
    SERVER_PID[$name]=$!
}

start_redis() {
    mkdir -p "$WORKDIR/redis-data"
    start_server redis "$REDIS_PORT" \
        "$(printf '%q ' "$REDIS_SERVER_BIN" --port "$REDIS_PORT" --bind "$HOST" \
            --save '' --appendonly no --daemonize no --protected-mode yes \
            --dir "$WORKDIR/redis-data")"
}

start_shoal() {
    local cmd datadir="$WORKDIR/shoal-data"
    mkdir -p "$datadir"
    if [[ -n $SHOAL_SERVER_CMD ]]; then
        cmd=${SHOAL_SERVER_CMD//@PORT@/$SHOAL_PORT}
        cmd=${cmd//@DATADIR@/$(printf '%q' "$datadir")}
    else
        cmd=$(printf '%q ' "$SHOAL_BIN" --port "$SHOAL_PORT" --bind "$HOST" --data-dir "$datadir")
    fi
    start_server shoal "$SHOAL_PORT" "$cmd"
}

# cli NAME ARGS...: redis-cli against server NAME, bounded to 30 s so a hung server
# cannot hang the script.
cli() {
    local name=$1
    shift
    timeout 30 redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" "$@"
}

# Polls PING until PONG or until STARTUP_TIMEOUT seconds have passed; fails early if the
# process exits.
wait_ready() {
    local name=$1 pid=${SERVER_PID[$1]} port=${SERVER_PORT[$1]}
    local deadline=$((SECONDS + STARTUP_TIMEOUT)) reply
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "${SERVER_LOG[$name]}" >&2 || true
            die "$name (pid $pid) exited during startup; log above (${SERVER_LOG[$name]})"
        fi
        reply=$(timeout 2 redis-cli -h "$HOST" -p "$port" ping 2>/dev/null || true)
        if [[ $reply == PONG ]]; then
            log "$name is up (pid $pid, port $port)"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "${SERVER_LOG[$name]}" >&2 || true
            die "$name did not answer PING on 127.0.0.1:$port within ${STARTUP_TIMEOUT}s"
        fi
        sleep 0.05
    done
}

# Fails if server NAME's process has gone away (crash during a run).
ensure_alive() {
    local name=$1 pid=${SERVER_PID[$1]}
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "${SERVER_LOG[$name]}" >&2 || true
        die "$name (pid $pid) is no longer running; log above (${SERVER_LOG[$name]})"
    fi
}

# Resident set size of server NAME in bytes, from /proc/PID/status (FIELD defaults to VmRSS).
rss_bytes() {
    local pid=${SERVER_PID[$1]} field=${2:-VmRSS} kb
    kb=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")
    is_uint "$kb" || die "could not read $field of $1 (pid $pid)"
    echo $((kb * 1024))
}

flushall() {
    local name=$1 reply
    reply=$(cli "$name" flushall) || die "FLUSHALL on $name failed: $reply"
    [[ $reply == OK ]] || die "FLUSHALL on $name replied: $reply"
}

# parse_bench_lists: TESTS and PIPELINES (comma-separated) into TEST_LIST and PIPELINE_LIST,
# checked.
parse_bench_lists() {
    read -r -a TEST_LIST <<<"${TESTS//,/ }"
    read -r -a PIPELINE_LIST <<<"${PIPELINES//,/ }"
    ((${#TEST_LIST[@]} > 0)) || die "TESTS is empty"
    ((${#PIPELINE_LIST[@]} > 0)) || die "PIPELINES is empty"
    local p
    for p in "${PIPELINE_LIST[@]}"; do
        is_pos_int "$p" || die "PIPELINES entries must be positive integers, got '$p'"
    done
}

# sweep TARGET...: calls the caller's `run_one TARGET TEST PIPELINE REP` for every repetition
# (REPEAT), pipeline depth and test, rotating which target goes first so none is always
# measured first.
sweep() {
    local targets=("$@") i=0 rep pipe test k
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for pipe in "${PIPELINE_LIST[@]}"; do
            for test in "${TEST_LIST[@]}"; do
                for ((k = 0; k < ${#targets[@]}; k++)); do
                    run_one "${targets[$(((i + k) % ${#targets[@]}))]}" "$test" "$pipe" "$rep"
                done
                i=$((i + 1))
            done
        done
    done
}

# print_failed_runs: lists FAILED_RUNS; returns 1 if there are any.
print_failed_runs() {
    ((${#FAILED_RUNS[@]} > 0)) || return 0
    echo "failed runs:"
    printf '  %s\n' "${FAILED_RUNS[@]}"
    return 1
}

# Benchmark tables. The caller records each run's ops/s in the associative array RPS (key
# "TEST|PIPELINE|TARGET", space-separated values) and failed runs in FAILED (same key).

# cell TEST PIPELINE TARGET: median ops/s over the runs, or FAIL if any run failed.
cell() {
    local key="$1|$2|$3"
    if [[ -n ${FAILED[$key]:-} || -z ${RPS[$key]:-} ]]; then
        echo FAIL
        return
    fi
    # shellcheck disable=SC2086 # word splitting of the list is intended
    printf '%s\n' ${RPS[$key]} | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.2f", m }'
}

# ratio REFERENCE VALUE: VALUE / REFERENCE with two decimals, or "-".
ratio() {
    local r=$1 s=$2
    if [[ $r == FAIL || $s == FAIL ]]; then echo "-"; else
        awk -v r="$r" -v s="$s" 'BEGIN { if (r > 0) printf "%.2f", s / r; else print "-" }'
    fi
}

# record_run KEY WHAT OUT ERR RC: files one redis-benchmark --csv run (stdout in OUT, stderr
# in ERR, exit status RC) under KEY: its ops/s into RPS, or, if it failed or an error reply
# came back, the key into FAILED and a line into FAILED_RUNS. Sets RUN_ERRORS to the number
# of error replies seen. Uses BENCH_TIMEOUT to explain a timed-out run.
# shellcheck disable=SC2004 # RPS and FAILED are the caller's associative arrays
record_run() {
    local key=$1 what=$2 out=$3 err=$4 rc=$5 rps
    RUN_ERRORS=$(cat "$out" "$err" | grep -c 'Error from server' || true)
    # The data row follows the header: "SET","123456.79","0.2",...
    rps=$(awk -F, 'NR > 1 && /^"/ { gsub(/"/, "", $2); print $2; exit }' "$out")
    if ((rc != 0)) || ((RUN_ERRORS > 0)) || ! [[ $rps =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
        FAILED[$key]=1
        local why="exit $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${BENCH_TIMEOUT}s"
        FAILED_RUNS+=("$what ($why, $RUN_ERRORS error replies): $(
            grep -hv '^"' "$out" "$err" | tr '\n' ' ' | cut -c1-300)")
        log "$what FAILED ($why); output in $out / $err"
    else
        RPS[$key]+="$rps "
        log "$what: $rps ops/s"
    fi
    # Anything else redis-benchmark said (e.g. "Could not fetch server CONFIG").
    if grep -qv -e 'Error from server' -e '^$' "$err"; then
        log "$what stderr: $(grep -v 'Error from server' "$err" | sort -u | tr '\n' ' ')"
    fi
}
