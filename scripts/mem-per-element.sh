#!/usr/bin/env bash
#
# mem-per-element.sh: memory cost per collection element of shoal next to a real redis-server.
#
# For each type (hash, set of strings, set of integers, sorted set, list) it loads K keys of N
# elements each (K*N elements) into a fresh shoal and a fresh `redis-server --save ''
# --appendonly no` with `redis-cli --pipe`, one type after the other in the same two servers,
# and prints per type: RSS growth per element (VmRSS from /proc, what an operator pays, allocator
# slack included) for both, shoal's `used_memory_dataset` growth per element (its data estimate,
# what eviction holds against maxmemory), redis's `used_memory` growth per element, the ratio
# of RSS growth,
# and both servers' `OBJECT ENCODING` of one key. Elements are ~8-byte strings (`m:0000001`)
# and hash values 8 bytes; the defaults (K=100000, N=10) keep every value in Redis's compact
# encodings (listpack / intset / quicklist).
#
# Before the first type, both servers take WARMUP plain SETs (`warm:…`, 100-byte values), not
# measured: an empty shoal pays one-time costs during its first load (openraft's per-group
# command rings enter RSS as they are first written, and the Raft log's pages are first
# allocated before the first snapshot frees them for reuse; see scripts/mem-per-key.sh), which
# would otherwise be charged to the first type's elements. WARMUP=0 measures from empty.
#
# Usage:
#   scripts/mem-per-element.sh
#   K=20000 N=200 scripts/mem-per-element.sh         # large values: hashtable / skiplist
#   SHOAL_SKIP_BUILD=1 scripts/mem-per-element.sh    # use the existing release binary
#
# Knobs: K (keys per type), N (elements per key), WARMUP (plain SETs before measuring; default
# 300000: enough for every one of 16 shards to pass its first snapshot), plus those of
# scripts/lib/servers.sh.
# Only 127.0.0.1 is contacted.

set -euo pipefail

# shellcheck source=SCRIPTDIR/lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

K=${K:-100000}
N=${N:-10}
WARMUP=${WARMUP:-300000}
for v in K N; do
    is_pos_int "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
is_uint "$WARMUP" || die "WARMUP must be a non-negative integer, got '$WARMUP'"
require_cmds redis-cli python3 awk
setup_workdir
maybe_build_shoal

TYPES=(hash set intset zset list)

log "writing $K keys x $N elements per type"
python3 - "$K" "$N" "$WARMUP" "$WORKDIR" "${TYPES[@]}" <<'PY'
import sys

k, n, warmup, root = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
types = sys.argv[5:]

def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

for t in types:
    with open(f"{root}/{t}.resp", "wb") as f:
        for i in range(k):
            key = b"%s:%09d" % (t.encode(), i)
            if t == "hash":
                args = [b"HSET", key] + [x for j in range(n) for x in (b"f:%06d" % j, b"v:%06d" % j)]
            elif t == "set":
                args = [b"SADD", key] + [b"m:%06d" % j for j in range(n)]
            elif t == "intset":
                args = [b"SADD", key] + [b"%d" % (1000 + j) for j in range(n)]
            elif t == "zset":
                args = [b"ZADD", key] + [x for j in range(n) for x in (b"%d" % j, b"m:%06d" % j)]
            else:
                args = [b"RPUSH", key] + [b"m:%06d" % j for j in range(n)]
            f.write(command(*args))

with open(f"{root}/warmup.resp", "wb") as f:
    for i in range(warmup):
        f.write(command(b"SET", b"warm:%09d" % i, b"w" * 100))
PY

start_redis
start_shoal
wait_ready redis
wait_ready shoal

# `info_field SERVER FIELD`: one field of INFO memory.
info_field() {
    cli "$1" info memory | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

if ((WARMUP)); then
    log "warm-up: $WARMUP SETs into both servers (not measured)"
    for name in redis shoal; do
        out="$WORKDIR/warmup-$name.out"
        run_child redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" --pipe <"$WORKDIR/warmup.resp" >"$out" 2>&1 ||
            die "warm-up of $name failed: $(tail -n 3 "$out")"
        grep -q "errors: 0, replies: $WARMUP" "$out" || die "warm-up of $name: $(tail -n 3 "$out")"
    done
fi

printf '%-7s %12s %14s %14s %15s %15s %11s %-22s\n' type elements "shoal RSS/el" "redis RSS/el" \
    "shoal data/el" "redis used/el" "RSS ratio" "encoding shoal/redis"
for t in "${TYPES[@]}"; do
    declare -A before=() after=()
    for name in redis shoal; do
        before[$name]=$(rss_bytes "$name")
    done
    used_before=$(info_field redis used_memory)
    data_before=$(info_field shoal used_memory_dataset)
    for name in redis shoal; do
        out="$WORKDIR/load-$t-$name.out"
        run_child redis-cli -h "$HOST" -p "${SERVER_PORT[$name]}" --pipe <"$WORKDIR/$t.resp" >"$out" 2>&1 ||
            die "loading $t into $name failed: $(tail -n 3 "$out")"
        grep -q "errors: 0, replies: $K" "$out" || die "loading $t into $name: $(tail -n 3 "$out")"
        after[$name]=$(rss_bytes "$name")
    done
    used_after=$(info_field redis used_memory)
    data_after=$(info_field shoal used_memory_dataset)
    key="$t:000000000"
    enc="$(cli shoal object encoding "$key")/$(cli redis object encoding "$key")"
    awk -v t="$t" -v e=$((K * N)) -v sb="${before[shoal]}" -v sa="${after[shoal]}" \
        -v rb="${before[redis]}" -v ra="${after[redis]}" -v ub="$used_before" -v ua="$used_after" \
        -v db="$data_before" -v da="$data_after" \
        -v enc="$enc" 'BEGIN {
            s = (sa - sb) / e; r = (ra - rb) / e; u = (ua - ub) / e; d = (da - db) / e
            printf "%-7s %12d %14.1f %14.1f %15.1f %15.1f %11.2f %-22s\n", t, e, s, r, d, u, (r > 0 ? s / r : 0), enc
        }'
done
