#!/usr/bin/env python3
"""redis-py's RedisCluster, unmodified, against a shoal cluster.

Run by server/tests/redis_cluster_clients.rs (which starts the cluster and, with --failover,
kills and restarts nodes when this script asks it to); scripts/test.sh prepares a venv with
redis-py and exports SHOAL_TEST_PYTHON.

    redis_py_cluster.py HOST:PORT --mode proxy|redirect [--failover]

HOST:PORT is ONE node (the only startup node). --mode says how the cluster was started
(`--cluster-mode`), which decides what a connection that never asked for the topology gets
for a multi-key command across slots: `proxy` splits it per shard, `redirect` answers
CROSSSLOT.

With --failover the script talks to the test over stdin/stdout. It prints

    @pause kill key=KEY slot=SLOT node=HOST:PORT

(NODE is the primary redis-py has cached for KEY's slot) and waits for a line `go`: meanwhile
the test kills that node and waits until another node leads the shard. The script then reads
and writes KEY (redis-py meets the dead connection, refreshes its topology and retries), prints

    @pause restart key=KEY slot=SLOT node=HOST:PORT

(NODE: the new primary, now cached) and waits for `go`: meanwhile the test restarts the killed
node and waits until it leads the shard again, so what redis-py cached is now stale and the
node it asks answers `-MOVED SLOT OLD_LEADER`. The script checks it saw that MOVED, that
redis-py followed it (read and write succeed, the cache now names the old leader), and that
every key written at the start is still readable.

Exits 0 when every check passed; on failure prints what went wrong and exits 1.
"""

import argparse
import select
import sys
import time
import traceback

import redis
from redis.cluster import ClusterNode, ClusterParser, RedisCluster
from redis.exceptions import ClusterCrossSlotError, RedisClusterException, ResponseError

KEYS = 1000
PIPELINE_KEYS = 200
GO_TIMEOUT = 120.0  # seconds to wait for the test's `go`
CROSSSLOT_TEXT = "Keys in request don't hash to the same slot"

# Every MOVED reply any cluster connection parses (redis-py turns them into MovedError and
# follows them; this only records them).
MOVED_SEEN = []
_parse_error = ClusterParser.parse_error.__func__


def _spy_parse_error(cls, response):
    if isinstance(response, str) and response.startswith("MOVED "):
        MOVED_SEEN.append(response)
    return _parse_error(cls, response)


ClusterParser.parse_error = classmethod(_spy_parse_error)


def log(*args):
    print(*args, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_go():
    ready, _, _ = select.select([sys.stdin], [], [], GO_TIMEOUT)
    check(ready, f"no `go` from the test within {GO_TIMEOUT} s")
    line = sys.stdin.readline().strip()
    check(line == "go", f"expected `go` from the test, got {line!r}")


def connect(host, port, **kwargs):
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port)],
        socket_timeout=10,
        socket_connect_timeout=5,
        decode_responses=True,
        **kwargs,
    )


def check_topology(rc, host, port):
    nodes = rc.get_nodes()
    names = sorted(n.name for n in nodes)
    check(len(nodes) == 3, f"expected 3 nodes in CLUSTER SLOTS, got {names}")
    check(f"{host}:{port}" in names, f"the startup node {host}:{port} is not among {names}")
    slots = rc.nodes_manager.slots_cache
    check(len(slots) == 16384, f"{len(slots)} of 16384 slots covered")
    # Each node leads some shard, so each is the first (master) node of some slot's entry.
    owners = sorted({entry[0].name for entry in slots.values()})
    check(owners == names, f"slot masters {owners}, want every node {names}")
    # redis-py keeps ONE role per node: the role of the last CLUSTER SLOTS entry naming it. A
    # shoal node leads some shards and replicates others, so only some nodes (at least the
    # last entry's master) count as primaries; redis-py still routes each slot to its master.
    primaries = sorted(n.name for n in rc.get_primaries())
    log(f"topology: {len(nodes)} nodes {names}; redis-py primaries {primaries}")
    check(primaries, "redis-py found no primary")
    check(rc.keyslot("foo") == 12182, "client-side keyslot of foo")
    check(rc.cluster_keyslot("foo") == 12182, "CLUSTER KEYSLOT foo")
    info = rc.cluster_info()
    check(info.get("cluster_state") == "ok", f"CLUSTER INFO: {info}")
    for node in nodes:
        myid = rc.cluster_myid(node)
        check(
            isinstance(myid, str) and len(myid) == 40 and all(c in "0123456789abcdef" for c in myid),
            f"CLUSTER MYID of {node.name}: {myid!r}",
        )
    cluster_nodes = rc.cluster_nodes()
    check(sorted(cluster_nodes) == names, f"CLUSTER NODES lists {sorted(cluster_nodes)}")
    # CLUSTER SHARDS: one entry per shard, its leader the master, the slots all covered once.
    shards = rc.cluster_shards()
    covered = 0
    for shard in shards:
        roles = sorted(n["role"] for n in shard["nodes"])
        check(roles == ["master", "replica", "replica"], f"CLUSTER SHARDS roles {roles}")
        check(all(n["health"] == "online" for n in shard["nodes"]), f"CLUSTER SHARDS {shard}")
        covered += sum(end - start + 1 for start, end in shard["slots"])
    check(covered == 16384, f"CLUSTER SHARDS covers {covered} slots")
    log(f"CLUSTER SHARDS: {len(shards)} shards")


def keys_and_values(prefix, n):
    return [(f"{prefix}:{i}", f"value:{i}") for i in range(n)]


def write_read_keys(rc, pairs, get_every):
    """SETs every key, GETs every `get_every`th one, then reads all of them with MGETs."""
    t = time.monotonic()
    for k, v in pairs:
        check(rc.set(k, v) is True, f"SET {k}")
    for k, v in pairs[::get_every]:
        got = rc.get(k)
        check(got == v, f"GET {k}: {got!r} != {v!r}")
    log(f"{len(pairs)} SETs and {len(pairs[::get_every])} GETs in {time.monotonic() - t:.2f} s")
    keys = [k for k, _ in pairs]
    got = rc.mget_nonatomic(keys)
    check(got == [v for _, v in pairs], "mget_nonatomic of every key")
    check(rc.exists(*keys) == len(keys), "EXISTS of every key (split per slot by redis-py)")
    slots = {rc.keyslot(k) for k in keys}
    check(len(slots) > 500, f"the keys should spread over many slots, got {len(slots)}")


def read_keys(rc, pairs, when):
    got = rc.mget_nonatomic([k for k, _ in pairs])
    bad = [(k, v, g) for (k, v), g in zip(pairs, got) if g != v]
    check(not bad, f"{when}: {len(bad)} keys wrong, first {bad[:3]}")


def keyspace_commands(rc):
    """Keyspace-wide commands on an emptied cluster: redis-py sends them to every node it
    counts as a primary and adds up (DBSIZE) or concatenates (KEYS, SCAN) the answers."""
    check(rc.flushall() is True, "FLUSHALL")
    pairs = keys_and_values("ks", 300)
    replies = rc.mset_nonatomic(dict(pairs))
    check(replies and all(r is True for r in replies), f"mset_nonatomic: {replies}")
    keys = [k for k, _ in pairs]
    check(rc.dbsize() == len(keys), f"DBSIZE {rc.dbsize()}, want {len(keys)}")
    found = rc.keys("*")
    check(sorted(found) == sorted(keys), f"KEYS * found {len(found)}, want {len(keys)}")
    before = len(MOVED_SEEN)
    try:
        scanned = list(rc.scan_iter(count=50))
    except Exception as e:  # noqa: BLE001 - say what the server answered
        raise AssertionError(
            f"SCAN (scan_iter) failed: {e!r}; MOVED replies meanwhile: {MOVED_SEEN[before:]}"
        ) from e
    check(sorted(scanned) == sorted(keys), f"SCAN found {len(scanned)} of {len(keys)}")
    log("DBSIZE, KEYS and SCAN ok")


def pipeline(rc, prefix):
    pipe = rc.pipeline()
    for i in range(PIPELINE_KEYS):
        pipe.set(f"{prefix}:{i}", str(i))
        pipe.get(f"{prefix}:{i}")
        pipe.incr(f"{prefix}:counter:{i % 10}")
    replies = pipe.execute()
    check(len(replies) == 3 * PIPELINE_KEYS, f"{len(replies)} pipeline replies")
    counters = {}
    for i in range(PIPELINE_KEYS):
        s, g, n = replies[3 * i : 3 * i + 3]
        check(s is True, f"pipeline SET {prefix}:{i}: {s!r}")
        check(g == str(i), f"pipeline GET {prefix}:{i}: {g!r}")
        counters[i % 10] = counters.get(i % 10, 0) + 1
        check(n == counters[i % 10], f"pipeline INCR {prefix}:counter:{i % 10}: {n!r}")
    # Errors come back in place, not as an exception, with raise_on_error=False.
    pipe = rc.pipeline()
    pipe.set(f"{prefix}:str", "not a number")
    pipe.incr(f"{prefix}:str")
    pipe.get(f"{prefix}:str")
    s, err, g = pipe.execute(raise_on_error=False)
    check(s is True and g == "not a number", f"pipeline around an error: {s!r} {g!r}")
    check(
        isinstance(err, ResponseError) and "not an integer" in str(err),
        f"pipeline INCR of a string: {err!r}",
    )
    log(f"pipeline of {3 * PIPELINE_KEYS} commands ok")


def two_keys_in_different_slots(rc):
    a, b = "cross:a", "cross:b"
    check(rc.keyslot(a) != rc.keyslot(b), "test keys share a slot")
    return a, b


def crossslot(rc, mode):
    a, b = two_keys_in_different_slots(rc)
    # redis-py refuses a cross-slot MSET itself, before sending anything.
    try:
        rc.mset({a: "1", b: "2"})
        raise AssertionError("redis-py sent a cross-slot MSET")
    except RedisClusterException as e:
        check("all keys must map to the same key slot" in str(e), f"client-side error: {e}")
    # Keys sharing a hash tag share a slot: fine.
    check(rc.mset({"{user1}:a": "1", "{user1}:b": "2"}) is True, "MSET with a hash tag")
    check(rc.mget("{user1}:a", "{user1}:b") == ["1", "2"], "MGET with a hash tag")
    # Sent to a node as is (target_nodes skips redis-py's slot check).
    node = rc.get_node_from_key(a)
    if mode == "redirect":
        for cmd in (["MSET", a, "1", b, "2"], ["MGET", a, b], ["DEL", a, b]):
            try:
                rc.execute_command(*cmd, target_nodes=node)
                raise AssertionError(f"{cmd[0]} across slots did not fail")
            except ClusterCrossSlotError as e:
                check(str(e) == CROSSSLOT_TEXT, f"{cmd[0]} CROSSSLOT text: {str(e)!r}")
    else:
        # A pooled data connection never asked for the topology (redis-py disconnects the one
        # that sent CLUSTER SLOTS), so a proxy-mode node splits the MSET per shard.
        check(rc.execute_command("MSET", a, "1", b, "2", target_nodes=node) is True, "split MSET")
        check(rc.get(a) == "1" and rc.get(b) == "2", "split MSET wrote both keys")
    # A connection that has asked for the topology is a cluster client: CROSSSLOT in any mode.
    pool = node.redis_connection.connection_pool
    try:
        conn = pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        conn = pool.get_connection("CLUSTER")
    try:
        conn.send_command("CLUSTER", "SLOTS")
        check(len(conn.read_response()) > 0, "CLUSTER SLOTS on a raw connection")
        conn.send_command("MSET", a, "3", b, "4")
        try:
            reply = conn.read_response()
            raise AssertionError(f"topology-aware MSET across slots answered {reply!r}")
        except ClusterCrossSlotError as e:
            check(str(e) == CROSSSLOT_TEXT, f"CROSSSLOT text: {str(e)!r}")
    finally:
        pool.release(conn)
    log(f"CROSSSLOT checks ok ({mode} mode)")


def resp3(host, port):
    rc = connect(host, port, protocol=3)
    try:
        pairs = keys_and_values("resp3", 100)
        for k, v in pairs:
            check(rc.set(k, v) is True, f"RESP3 SET {k}")
        read_keys(rc, pairs, "RESP3")
        pipe = rc.pipeline()
        for k, _ in pairs:
            pipe.get(k)
        check(pipe.execute() == [v for _, v in pairs], "RESP3 pipeline")
    finally:
        rc.close()
    log("RESP3 client ok")


def cached_primary(rc, key):
    return rc.get_node_from_key(key).name


def failover(rc, pairs):
    key = "failover:key"
    slot = rc.keyslot(key)
    check(rc.set(key, "v1") is True, "SET before the kill")
    old = cached_primary(rc, key)
    log(f"@pause kill key={key} slot={slot} node={old}")
    wait_go()

    # The cached primary is dead: redis-py gets a connection error, refreshes the topology
    # from another node and retries.
    check(rc.get(key) == "v1", "GET after the leader was killed")
    check(rc.set(key, "v2") is True, "SET after the leader was killed")
    new = cached_primary(rc, key)
    check(new != old, f"redis-py still routes {key} to the killed node {old}")
    read_keys(rc, pairs, "after the kill")
    log(f"@pause restart key={key} slot={slot} node={new}")
    wait_go()

    # The old leader is back and leads the shard again; redis-py still routes to `new`, which
    # answers MOVED.
    before = len(MOVED_SEEN)
    check(rc.get(key) == "v2", "GET after the leader came back")
    moved = MOVED_SEEN[before:]
    check(moved, f"no MOVED seen; redis-py routes {key} to {cached_primary(rc, key)}")
    check(moved[0] == f"MOVED {slot} {old}", f"MOVED reply: {moved[0]!r}, want slot {slot} {old}")
    check(cached_primary(rc, key) == old, f"after MOVED redis-py routes to {cached_primary(rc, key)}")
    check(rc.set(key, "v3") is True and rc.get(key) == "v3", "SET/GET after MOVED")
    read_keys(rc, pairs, "after the restart")
    pipeline(rc, "pipe-after-failover")
    log(f"failover ok: {old} -> {new} -> MOVED back to {old}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("node", help="HOST:PORT of one cluster node")
    ap.add_argument("--mode", choices=["proxy", "redirect"], required=True)
    ap.add_argument("--failover", action="store_true")
    args = ap.parse_args()
    check(not args.failover or args.mode == "redirect", "--failover needs --mode redirect")
    host, _, port = args.node.rpartition(":")
    port = int(port)
    log(f"redis-py {redis.__version__}, python {sys.version.split()[0]}, {args.node}, {args.mode} mode")

    t = time.monotonic()
    rc = connect(host, port)
    try:
        check_topology(rc, host, port)
        check(rc.flushall() is True, "FLUSHALL")
        pairs = keys_and_values("pykey", KEYS)
        # Every key is read with its own GET once; in redirect mode (which the test runs
        # second, with a failover) a tenth of them, to keep the test short.
        write_read_keys(rc, pairs, 1 if args.mode == "proxy" else 10)
        pipeline(rc, "pipe")
        crossslot(rc, args.mode)
        resp3(host, port)
        if args.failover:
            failover(rc, pairs)
        read_keys(rc, pairs, "at the end")
        keyspace_commands(rc)
    finally:
        rc.close()
    log(f"MOVED replies seen: {len(MOVED_SEEN)} {MOVED_SEEN[:5]}")
    log(f"ALL OK in {time.monotonic() - t:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - report anything, exit 1
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        sys.exit(1)
