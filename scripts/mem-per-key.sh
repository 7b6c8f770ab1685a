#!/usr/bin/env bash
#
# mem-per-key.sh: memory cost per key of shoal next to a real redis-server.
#
# What it does:
#   1. builds shoal (`cargo build --release -p shoal-server`) unless SHOAL_SKIP_BUILD=1 or
#      SHOAL_SERVER_CMD is set;
#   2. writes, once, a file of K RESP `SET` commands with distinct keys key:000000000001 ..
#      (12-digit, zero-padded) and distinct VALUE_SIZE-byte values (python3);
#   3. starts a fresh shoal and a fresh `redis-server --save '' --appendonly no` on loopback
#      ports, waits for each to answer PING (polled, with a deadline), and records each
#      process's VmRSS from /proc/PID/status;
#   4. loads the file into each with `redis-cli --pipe` (which ends with an ECHO to detect
#      the last reply), requires 0 errors and K replies, and requires DBSIZE == K;
#   5. records VmRSS (and VmHWM, the peak) again and prints, per server: RSS before, RSS
#      after, (after - before) / K in bytes per key, and the ratio shoal/redis;
#   6. unless MARGINAL=0, loads K more keys (kez:…) into both and prints the same for that
#      second phase: the marginal cost per key once the server is in its steady state.
#
# Why the second phase: the first million from an empty shoal pays one-time costs that RSS and
# used_memory see differently. openraft allocates, per Raft group, a 4096-command ring and a
# 1024-slot responder table (about 1.4 MB) at start-up; they count in used_memory at once but
# enter RSS only as the ring's slots are first written, during the load. And the Raft log
# entries of the load are freed in bursts at each snapshot; mimalloc keeps those pages for
# reuse, so RSS holds them while used_memory does not. Both effects are spent by the end of the
# first phase, which is why the second phase shows what a key really costs.
#
# RSS includes allocator slack and fragmentation, which is what an operator pays for, so it
# is not the same as redis's INFO used_memory (its growth per key is shown too where the
# server reports it). The figure is only meaningful for large K (the default 1,000,000);
# below ~100,000 keys the allocator's arenas and page granularity dominate. The command files for the default K are
# about 150 MB each in $TMPDIR (removed on exit).
#
# Usage:
#   scripts/mem-per-key.sh
#   K=200000 scripts/mem-per-key.sh
#   SHOAL_SKIP_BUILD=1 scripts/mem-per-key.sh               # use the existing release binary
#   SHOAL_SERVER_CMD="redis-server --port @PORT@ --bind 127.0.0.1 --save '' --appendonly no" \
#     K=100000 scripts/mem-per-key.sh                       # dry run with redis as "shoal"
#
# Knobs (environment):
#   K               number of keys                       (default 1000000)
#   VALUE_SIZE      bytes per value                      (default 100)
#   LOAD_TIMEOUT    seconds allowed for one --pipe load  (default 900)
#   MARGINAL        1: also measure a second K keys      (default 1)
#   REDIS_PORT, SHOAL_PORT, REDIS_SERVER_BIN, SHOAL_SERVER_CMD, SHOAL_BIN, SHOAL_SKIP_BUILD,
#   STARTUP_TIMEOUT, KEEP_WORKDIR: see scripts/lib/servers.sh
#
# Only 127.0.0.1 is ever contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

K=${K:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-900}
MARGINAL=${MARGINAL:-1}

for v in K VALUE_SIZE LOAD_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
((K < 1000000000000)) || die "K must be below 10^12 (12-digit keys)"
((K >= 100000)) || log "note: K=$K is small; RSS per key will be dominated by allocator noise"

require_cmds redis-cli python3 timeout awk "$REDIS_SERVER_BIN"

maybe_build_shoal
setup_workdir

# One command file per phase: phase 1 loads keys key:…, phase 2 (the marginal cost) kez:….
write_load_file() { # PREFIX FILE
    log "writing $K SET commands (${VALUE_SIZE}-byte values, keys $1…) to $2"
    python3 - "$K" "$VALUE_SIZE" "$1" "$2" <<'PY'
import sys

k, vsize, prefix, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
head = b"*3\r\n$3\r\nSET\r\n$16\r\n"  # keys are a 4-byte prefix + 12 digits = 16 bytes
mid = b"\r\n$%d\r\n" % vsize
chunk = 100_000
with open(path, "wb") as f:
    for start in range(1, k + 1, chunk):
        stop = min(k, start + chunk - 1)
        # value: the key's number, zero-padded to vsize bytes (distinct per key)
        f.write(b"".join(
            head + prefix + b"%012d" % i + mid + (b"%0*d" % (vsize, i))[-vsize:] + b"\r\n"
            for i in range(start, stop + 1)
        ))
PY
    log "command file: $(du -h "$2" | cut -f1)"
}

PHASES=(1)
((MARGINAL)) && PHASES+=(2)
write_load_file key: "$WORKDIR/load-1.resp"
((MARGINAL)) && write_load_file kez: "$WORKDIR/load-2.resp"

start_redis
start_shoal
wait_ready redis
wait_ready shoal

# RSS and used_memory per "<server> <point>", point 0 = before phase 1, 1 = after it, 2 = after
# phase 2.
declare -A RSS=() USED=() PEAK=()

# used_memory from INFO memory, or "-" if the server does not report it.
used_memory() {
    local v
    v=$(cli "$1" info memory 2>/dev/null | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }') || true
    if is_uint "$v"; then echo "$v"; else echo -; fi
}

record() { # SERVER POINT
    RSS[$1 $2]=$(rss_bytes "$1")
    PEAK[$1 $2]=$(rss_bytes "$1" VmHWM)
    USED[$1 $2]=$(used_memory "$1")
}

for name in redis shoal; do record "$name" 0; done

for phase in "${PHASES[@]}"; do
    for name in redis shoal; do
        out="$WORKDIR/load-$name-$phase.out"
        rc=0
        log "phase $phase: loading $K keys into $name with redis-cli --pipe"
        run_child timeout -k 5 "$LOAD_TIMEOUT" \
            redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" --pipe <"$WORKDIR/load-$phase.resp" \
            >"$out" 2>&1 || rc=$?
        ensure_alive "$name"
        summary=$(tr -d '\r' <"$out" | grep -E '^errors: [0-9]+, replies: [0-9]+$' | tail -n 1 || true)
        if ((rc != 0)) || [[ $summary != "errors: 0, replies: $K" ]]; then
            head -n 20 "$out" >&2
            die "loading $name failed (exit $rc; expected 'errors: 0, replies: $K'," \
                "got '${summary:-nothing}'); full redis-cli output in $out"
        fi
        dbsize=$(cli "$name" dbsize)
        [[ $dbsize == "$((phase * K))" ]] ||
            die "$name: DBSIZE is '$dbsize' after phase $phase, expected $((phase * K))"
        record "$name" "$phase"
        log "$name: DBSIZE $dbsize, RSS $((RSS[$name $((phase - 1))] / 1024)) kB -> $((RSS[$name $phase] / 1024)) kB"
    done
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
per_key() { awk -v a="$1" -v b="$2" -v k="$K" 'BEGIN { printf "%.1f", (a - b) / k }'; }

for phase in "${PHASES[@]}"; do
    from=$((phase - 1))
    echo
    if ((phase == 1)); then
        echo "phase 1: K=$K keys into an empty server, ${VALUE_SIZE}-byte values (16-byte keys)"
    else
        echo "phase 2 (marginal cost): $K more keys on top of phase 1's"
    fi
    printf '%-6s %15s %15s %15s %15s %17s\n' server "RSS before MiB" "RSS after MiB" "peak RSS MiB" \
        "RSS bytes/key" "used_memory/key"
    printf '%-6s %15s %15s %15s %15s %17s\n' ------ --------------- --------------- --------------- \
        --------------- -----------------
    declare -A PER_KEY=()
    for name in redis shoal; do
        PER_KEY[$name]=$(per_key "${RSS[$name $phase]}" "${RSS[$name $from]}")
        used=-
        if [[ ${USED[$name $phase]} != - && ${USED[$name $from]} != - ]]; then
            used=$(per_key "${USED[$name $phase]}" "${USED[$name $from]}")
        fi
        printf '%-6s %15s %15s %15s %15s %17s\n' "$name" "$(mib "${RSS[$name $from]}")" \
            "$(mib "${RSS[$name $phase]}")" "$(mib "${PEAK[$name $phase]}")" "${PER_KEY[$name]}" "$used"
    done
    awk -v r="${PER_KEY[redis]}" -v s="${PER_KEY[shoal]}" 'BEGIN {
        if (r > 0) printf "ratio shoal/redis (RSS bytes per key): %.2f\n", s / r
        else print "ratio shoal/redis (RSS bytes per key): - (redis RSS did not grow)"
    }'
    # How honest is used_memory? Its growth against RSS growth (the issue's bar: within 15% at
    # 1 M keys of 100 bytes), and its level against RSS's.
    for name in redis shoal; do
        [[ ${USED[$name $phase]} != - && ${USED[$name $from]} != - ]] || continue
        awk -v n="$name" -v u=$((USED[$name $phase] - USED[$name $from])) \
            -v r=$((RSS[$name $phase] - RSS[$name $from])) \
            -v lu="${USED[$name $phase]}" -v lr="${RSS[$name $phase]}" 'BEGIN {
            if (r <= 0) { printf "%s: RSS did not grow\n", n; exit }
            d = (u - r) / r
            printf "%s: used_memory growth is %.1f%% of RSS growth (%s the 15%% bar); used_memory is %.1f%% of RSS\n",
                n, 100 * u / r, (d >= -0.15 && d <= 0.15) ? "within" : "outside", 100 * lu / lr
        }'
    done
done
