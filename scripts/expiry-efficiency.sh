#!/usr/bin/env bash
# How many expired keys linger, and what reclaiming them costs, with mixed TTLs.
#
# Loads K=${K:-1000000} keys with 100-byte values into a fresh shoal and a fresh redis-server:
# NO_TTL_PCT percent of them without a deadline, the others with an absolute deadline (PXAT)
# spread uniformly over TTL_MIN_S..TTL_MAX_S seconds after a common base time a little after the
# load ends. From the base on, nothing but this script talks to the servers: every SAMPLE_MS it
# asks each server for DBSIZE and reads the process's CPU time (utime + stime from
# /proc/PID/stat), until the last deadline has passed by TAIL_S seconds.
#
# Expired-but-present keys are counted the same way for both servers, from the schedule the
# script itself wrote: at time t exactly `due(t)` keys (deadline < t) are logically gone, so
#     expired_but_present(t) = DBSIZE(t) - (K - due(t))
# (DBSIZE counts keys still in the tables, expired or not, in Redis and in shoal alike). t is
# the middle of the DBSIZE round trip; a sample is a few hundred microseconds wide, which at
# ~15 000 deadlines a second is an uncertainty of a few keys. Nothing on the server side is
# added or sampled for this, so the measurement costs the servers one DBSIZE per sample.
#
# Printed per server: the maximum and the mean share of expired-but-present keys (of K) over
# the samples, the same share of the keys present at that moment, and the CPU share of one core
# during the expiry window, next to the CPU share while idle (IDLE_S seconds before the base,
# when every key is still live) for reference, and their difference, the CPU that expiry itself
# costs. The issue's target: at most 1% of keys
# expired-but-present at any moment with at most 10% of one core; Redis's active expiry is the
# anchor.
#
# Usage: scripts/expiry-efficiency.sh       (K, NO_TTL_PCT, TTL_MIN_S, TTL_MAX_S, SAMPLE_MS,
#                                            SLACK_MS, IDLE_S, TAIL_S, SAMPLES_CSV,
#                                            LOAD_TIMEOUT, and the
#                                            knobs of scripts/lib/servers.sh: ports,
#                                            SHOAL_SKIP_BUILD, ...)
set -euo pipefail
# shellcheck source=scripts/lib/servers.sh
source "$(dirname "$0")/lib/servers.sh"

K=${K:-1000000}
NO_TTL_PCT=${NO_TTL_PCT:-10}
TTL_MIN_S=${TTL_MIN_S:-1}
TTL_MAX_S=${TTL_MAX_S:-60}
SAMPLE_MS=${SAMPLE_MS:-250}
SLACK_MS=${SLACK_MS:-60000}   # base = generation time + this; must exceed both loads
IDLE_S=${IDLE_S:-3}
TAIL_S=${TAIL_S:-5}
SAMPLES_CSV=${SAMPLES_CSV:-}  # if set, every sample is written there
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
for v in K TTL_MIN_S TTL_MAX_S SAMPLE_MS SLACK_MS IDLE_S TAIL_S LOAD_TIMEOUT; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
is_uint "$NO_TTL_PCT" && ((NO_TTL_PCT <= 100)) || die "NO_TTL_PCT must be 0..100"
((TTL_MIN_S <= TTL_MAX_S)) || die "TTL_MIN_S must not exceed TTL_MAX_S"
require_cmds redis-cli python3 timeout

setup_workdir
maybe_build_shoal
start_redis
start_shoal
wait_ready redis
wait_ready shoal

base_ms=$(($(date +%s%3N) + SLACK_MS))
log "generating $K SET commands: ${NO_TTL_PCT}% without TTL, the rest PXAT base + ${TTL_MIN_S}..${TTL_MAX_S} s"
python3 - "$K" "$NO_TTL_PCT" "$TTL_MIN_S" "$TTL_MAX_S" "$base_ms" \
    "$WORKDIR/load.resp" "$WORKDIR/deadlines" <<'PY'
import random, sys
k, no_ttl_pct, lo, hi, base = (int(a) for a in sys.argv[1:6])
load_path, deadlines_path = sys.argv[6], sys.argv[7]
rng = random.Random(42)
value = b"v" * 100
deadlines = []
with open(load_path, "wb") as out:
    for i in range(1, k + 1):
        key = b"key:%012d" % i
        if rng.random() * 100 < no_ttl_pct:
            out.write(b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n" % (key, value))
            continue
        at = base + rng.randint(lo * 1000, hi * 1000)
        deadlines.append(at)
        at = b"%d" % at
        out.write(b"*5\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n"
                  % (key, value, len(at), at))
deadlines.sort()
with open(deadlines_path, "w") as f:
    f.write("\n".join(map(str, deadlines)))
PY
for name in redis shoal; do
    log "loading $name"
    result=$(run_child timeout -k 5 "$LOAD_TIMEOUT" redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" \
        --pipe <"$WORKDIR/load.resp" | tail -n 1)
    [[ $result == "errors: 0, replies: $K" ]] || die "$name load: $result"
    [[ $(cli "$name" dbsize) == "$K" ]] || die "$name DBSIZE after load is not $K"
done
rm -f "$WORKDIR/load.resp"
now=$(date +%s%3N)
((now + IDLE_S * 1000 < base_ms)) || die "the loads took longer than SLACK_MS=$SLACK_MS minus IDLE_S; raise SLACK_MS"
log "sampling every ${SAMPLE_MS} ms from the base ($(((base_ms - now) / 1000)) s from now) until the last deadline + ${TAIL_S} s"

run_child python3 - "$K" "$base_ms" "$SAMPLE_MS" "$IDLE_S" "$TAIL_S" "$WORKDIR/deadlines" \
    "${SAMPLES_CSV:-/dev/null}" \
    "redis:${SERVER_PID[redis]}:${SERVER_PORT[redis]}" \
    "shoal:${SERVER_PID[shoal]}:${SERVER_PORT[shoal]}" <<'PY'
import bisect, os, socket, sys, time

k, base, sample_ms, idle_s, tail_s = (int(a) for a in sys.argv[1:6])
with open(sys.argv[6]) as f:
    deadlines = [int(line) for line in f if line.strip()]
csv_path = sys.argv[7]
servers = []
for spec in sys.argv[8:]:
    name, pid, port = spec.split(":")
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    servers.append({"name": name, "pid": int(pid), "sock": sock, "file": sock.makefile("rb"),
                    "stale": [], "present_share": []})
tick = os.sysconf("SC_CLK_TCK")

def now_ms():
    return time.time() * 1000

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / tick  # utime, stime

def dbsize(s):
    s["sock"].sendall(b"DBSIZE\r\n")
    line = s["file"].readline()
    if not line.startswith(b":"):
        sys.exit(f"{s['name']}: unexpected DBSIZE reply {line!r}")
    return int(line[1:])

def sleep_until(t_ms):
    d = (t_ms - now_ms()) / 1000
    if d > 0:
        time.sleep(d)

# Idle reference: the last IDLE_S seconds before the base, nothing due yet.
sleep_until(base - idle_s * 1000)
for s in servers:
    s["idle0"] = cpu_seconds(s["pid"])
sleep_until(base)
for s in servers:
    s["idle_share"] = (cpu_seconds(s["pid"]) - s["idle0"]) / idle_s
    s["cpu0"] = cpu_seconds(s["pid"])
start = now_ms()
end = deadlines[-1] + tail_s * 1000 if deadlines else base + tail_s * 1000
with open(csv_path, "w") as csv:
    csv.write("server,ms_since_base,dbsize,due,expired_but_present\n")
    t = start
    while t <= end:
        sleep_until(t)
        for s in servers:
            before = now_ms()
            size = dbsize(s)
            mid = (before + now_ms()) / 2
            due = bisect.bisect_left(deadlines, mid)  # deadlines strictly before mid
            stale = max(0, size - (k - due))
            s["stale"].append(stale)
            if size:
                s["present_share"].append(stale / size)
            csv.write(f"{s['name']},{mid - base:.0f},{size},{due},{stale}\n")
        t += sample_ms
    elapsed = (now_ms() - start) / 1000
for s in servers:
    s["cpu_share"] = (cpu_seconds(s["pid"]) - s["cpu0"]) / elapsed

print(f"{k} keys, {len(deadlines)} with deadlines over the window, {len(servers[0]['stale'])} "
      f"samples every {sample_ms} ms over {elapsed:.1f} s")
print(f"{'server':<6} {'max stale %K':>13} {'mean stale %K':>14} {'max stale %present':>19} "
      f"{'CPU % core':>11} {'idle CPU % core':>16} {'expiry CPU % core':>18}")
for s in servers:
    st = s["stale"]
    print(f"{s['name']:<6} {100 * max(st) / k:>13.3f} {100 * sum(st) / len(st) / k:>14.3f} "
          f"{100 * max(s['present_share'] or [0]):>19.3f} {100 * s['cpu_share']:>11.1f} "
          f"{100 * s['idle_share']:>16.1f} {100 * (s['cpu_share'] - s['idle_share']):>18.1f}")
print("expiry CPU = CPU in the window minus CPU while idle: what reclaiming costs beyond what the")
print("process spends with nothing to expire (for shoal, mostly openraft's tick in every Raft group).")
PY
for name in redis shoal; do ensure_alive "$name"; done
