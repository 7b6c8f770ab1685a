#!/usr/bin/env bash
# How long do K keys that all expire at the same moment take to disappear from DBSIZE?
#
# Loads K=${K:-1000000} keys with 100-byte values into a fresh shoal and a fresh redis-server,
# every key with the same absolute deadline (PXAT) a little after the load ends, then polls DBSIZE
# on both every 20 ms from that deadline until it reaches 0. Nothing reads the keys, so only
# active expiry can reclaim them. Prints, per server, the seconds from the deadline until DBSIZE
# halved and until it reached 0.
#
# Usage: scripts/expiry-drain.sh            (K, SLACK_MS, DRAIN_TIMEOUT, and the knobs of
#                                            scripts/lib/servers.sh: ports, SHOAL_SKIP_BUILD ...)
set -euo pipefail
# shellcheck source=scripts/lib/servers.sh
source "$(dirname "$0")/lib/servers.sh"

K=${K:-1000000}
SLACK_MS=${SLACK_MS:-20000}       # deadline = load start + this; must exceed the load time
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
is_pos_int "$K" || die "K must be a positive integer"
require_cmds redis-cli python3 timeout

setup_workdir
maybe_build_shoal
start_redis
start_shoal
wait_ready redis
wait_ready shoal

deadline_ms=$(( $(date +%s%3N) + SLACK_MS ))
log "generating $K SET ... PXAT $deadline_ms commands"
python3 - "$K" "$deadline_ms" >"$WORKDIR/load.resp" <<'PY'
import sys
k, deadline = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
value = b"v" * 100
for i in range(1, k + 1):
    key = b"key:%012d" % i
    out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n"
              % (len(key), key, value, len(deadline), deadline))
PY
for name in redis shoal; do
    log "loading $name"
    result=$(run_child cli "$name" --pipe <"$WORKDIR/load.resp" | tail -n 1)
    [[ $result == "errors: 0, replies: $K" ]] || die "$name load: $result"
    [[ $(cli "$name" dbsize) == "$K" ]] || die "$name DBSIZE after load is not $K"
done
now=$(date +%s%3N)
((now < deadline_ms)) || die "the load took longer than SLACK_MS=$SLACK_MS; raise it"
log "waiting $(((deadline_ms - now) / 1000)) s for the deadline"
sleep "$(awk -v ms=$((deadline_ms - now)) 'BEGIN { printf "%.3f", ms / 1000 }')"

declare -A half=() done_at=()
while :; do
    elapsed=$(( $(date +%s%3N) - deadline_ms ))
    for name in redis shoal; do
        [[ -n ${done_at[$name]:-} ]] && continue
        size=$(cli "$name" dbsize)
        if [[ -z ${half[$name]:-} ]] && ((size <= K / 2)); then half[$name]=$elapsed; fi
        if ((size == 0)); then done_at[$name]=$elapsed; fi
    done
    [[ -n ${done_at[redis]:-} && -n ${done_at[shoal]:-} ]] && break
    ((elapsed < DRAIN_TIMEOUT * 1000)) || break
    sleep 0.02
done

printf '%s keys, one deadline, nothing reads them\n' "$K"
printf '%-6s %16s %16s\n' server "half gone (s)" "all gone (s)"
for name in redis shoal; do
    fmt() { [[ -n ${1:-} ]] && awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }' || echo ">$DRAIN_TIMEOUT"; }
    printf '%-6s %16s %16s\n' "$name" "$(fmt "${half[$name]:-}")" "$(fmt "${done_at[$name]:-}")"
done
[[ -n ${done_at[shoal]:-} ]] || die "shoal still had keys after ${DRAIN_TIMEOUT}s"
