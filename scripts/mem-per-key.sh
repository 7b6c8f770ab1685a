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
#      after, (after - before) / K in bytes per key, and the ratio shoal/redis.
#
# RSS includes allocator slack and fragmentation, which is what an operator pays for, so it
# is not the same as redis's INFO used_memory (its growth per key is shown too where the
# server reports it). The figure is only meaningful for large K (the default 1,000,000);
# below ~100,000 keys the allocator's arenas and page granularity dominate. The command file for the default K is
# about 150 MB in $TMPDIR (removed on exit).
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

for v in K VALUE_SIZE LOAD_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
((K < 1000000000000)) || die "K must be below 10^12 (12-digit keys)"
((K >= 100000)) || log "note: K=$K is small; RSS per key will be dominated by allocator noise"

require_cmds redis-cli python3 timeout awk "$REDIS_SERVER_BIN"

maybe_build_shoal
setup_workdir

LOAD_FILE="$WORKDIR/load.resp"
log "writing $K SET commands (${VALUE_SIZE}-byte values) to $LOAD_FILE"
python3 - "$K" "$VALUE_SIZE" "$LOAD_FILE" <<'PY'
import sys

k, vsize, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
head = b"*3\r\n$3\r\nSET\r\n$16\r\n"  # keys are "key:" + 12 digits = 16 bytes
mid = b"\r\n$%d\r\n" % vsize
chunk = 100_000
with open(path, "wb") as f:
    for start in range(1, k + 1, chunk):
        stop = min(k, start + chunk - 1)
        # value: the key's number, zero-padded to vsize bytes (distinct per key)
        f.write(b"".join(
            head + b"key:%012d" % i + mid + (b"%0*d" % (vsize, i))[-vsize:] + b"\r\n"
            for i in range(start, stop + 1)
        ))
PY
log "command file: $(du -h "$LOAD_FILE" | cut -f1)"

start_redis
start_shoal
wait_ready redis
wait_ready shoal

declare -A BEFORE=() AFTER=() PEAK=() USED_BEFORE=() USED=()

# used_memory from INFO memory, or "-" if the server does not report it.
used_memory() {
    local v
    v=$(cli "$1" info memory 2>/dev/null | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }') || true
    if is_uint "$v"; then echo "$v"; else echo -; fi
}

for name in redis shoal; do
    BEFORE[$name]=$(rss_bytes "$name")
    USED_BEFORE[$name]=$(used_memory "$name")
done

for name in redis shoal; do
    out="$WORKDIR/load-$name.out"
    rc=0
    log "loading $K keys into $name with redis-cli --pipe"
    run_child timeout -k 5 "$LOAD_TIMEOUT" \
        redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" --pipe <"$LOAD_FILE" >"$out" 2>&1 || rc=$?
    ensure_alive "$name"
    summary=$(tr -d '\r' <"$out" | grep -E '^errors: [0-9]+, replies: [0-9]+$' | tail -n 1 || true)
    if ((rc != 0)) || [[ $summary != "errors: 0, replies: $K" ]]; then
        head -n 20 "$out" >&2
        die "loading $name failed (exit $rc; expected 'errors: 0, replies: $K'," \
            "got '${summary:-nothing}'); full redis-cli output in $out"
    fi
    dbsize=$(cli "$name" dbsize)
    [[ $dbsize == "$K" ]] || die "$name: DBSIZE is '$dbsize' after loading, expected $K"
    AFTER[$name]=$(rss_bytes "$name")
    PEAK[$name]=$(rss_bytes "$name" VmHWM)
    USED[$name]=$(used_memory "$name")
    log "$name: DBSIZE $dbsize, RSS $((BEFORE[$name] / 1024)) kB -> $((AFTER[$name] / 1024)) kB"
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
per_key() { awk -v a="$1" -v b="$2" -v k="$K" 'BEGIN { printf "%.1f", (a - b) / k }'; }

echo
echo "K=$K keys, ${VALUE_SIZE}-byte values (16-byte keys)"
printf '%-6s %15s %15s %15s %15s %17s\n' server "RSS before MiB" "RSS after MiB" "peak RSS MiB" \
    "RSS bytes/key" "used_memory/key"
printf '%-6s %15s %15s %15s %15s %17s\n' ------ --------------- --------------- --------------- \
    --------------- -----------------
declare -A PER_KEY=()
for name in redis shoal; do
    PER_KEY[$name]=$(per_key "${AFTER[$name]}" "${BEFORE[$name]}")
    used=-
    if [[ ${USED[$name]} != - && ${USED_BEFORE[$name]} != - ]]; then
        used=$(per_key "${USED[$name]}" "${USED_BEFORE[$name]}")
    fi
    printf '%-6s %15s %15s %15s %15s %17s\n' "$name" "$(mib "${BEFORE[$name]}")" \
        "$(mib "${AFTER[$name]}")" "$(mib "${PEAK[$name]}")" "${PER_KEY[$name]}" "$used"
done
echo
awk -v r="${PER_KEY[redis]}" -v s="${PER_KEY[shoal]}" 'BEGIN {
    if (r > 0) printf "ratio shoal/redis (RSS bytes per key): %.2f\n", s / r
    else print "ratio shoal/redis (RSS bytes per key): - (redis RSS did not grow)"
}'
# How honest is used_memory? Its growth against RSS growth (the issue's bar: within 15% at
# 1 M keys of 100 bytes).
for name in redis shoal; do
    [[ ${USED[$name]} != - && ${USED_BEFORE[$name]} != - ]] || continue
    awk -v n="$name" -v u=$((USED[$name] - USED_BEFORE[$name])) \
        -v r=$((AFTER[$name] - BEFORE[$name])) 'BEGIN {
        if (r <= 0) { printf "%s: RSS did not grow\n", n; exit }
        d = (u - r) / r
        printf "%s: used_memory growth is %.1f%% of RSS growth (%s the 15%% bar)\n", n, 100 * u / r,
            (d >= -0.15 && d <= 0.15) ? "within" : "outside"
    }'
done
