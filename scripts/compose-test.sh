#!/usr/bin/env bash
#
# compose-test.sh: the container deployment end to end, with the local Docker engine.
#
#   1. builds the runtime image FROM scratch (deploy/Dockerfile.scratch): no base image, no
#      registry. SHOAL_COMPOSE_BINARY picks what goes in it:
#        static  (default) a statically linked shoal-server (glibc, `-C target-feature=+crt-static`,
#                target x86_64-unknown-linux-gnu, in ${CARGO_TARGET_DIR:-target}/static): a
#                second full release build;
#        release the ordinary release binary (target/release, built if missing) with the shared
#                libraries `ldd` lists, at their paths: no second build (what CI uses);
#   2. starts deploy/compose.yaml (3 nodes, each in its own container, on a private network;
#      client ports published on 127.0.0.1:7101-7103, HTTP on 27101-27103) and waits, polling
#      with a deadline, until every node answers cluster_state:ok and /readyz says ready;
#   3. redis-cli SET/GET through each node, then redis-benchmark (SET/GET) against node 1, and
#      fails on any error reply;
#   4. kills one container (docker kill: SIGKILL) and checks that writes through the others
#      resume within WRITE_RESUME_TIMEOUT seconds and are all acknowledged afterwards, and that
#      an acknowledged write made before the kill is still readable;
#   5. tears everything down (containers, network, volumes), also on failure.
#
# Prints each phase's duration. Exits non-zero on any failure. Needs docker (with `docker
# compose` or docker-compose), redis-tools, curl. Only 127.0.0.1 is contacted from the host.
#
# Knobs: SHOAL_COMPOSE_PROJECT (default shoal-compose-test), SHOAL_IMAGE (default
# shoal:compose-test), SHOAL_COMPOSE_BINARY (static | release), SHOAL_STATIC_BIN (use this
# static binary instead of building one),
# BENCH_N (default 20000), WRITE_RESUME_TIMEOUT (default 30), UP_TIMEOUT (default 90).

set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${SHOAL_COMPOSE_PROJECT:-shoal-compose-test}
export SHOAL_IMAGE=${SHOAL_IMAGE:-shoal:compose-test}
BENCH_N=${BENCH_N:-20000}
WRITE_RESUME_TIMEOUT=${WRITE_RESUME_TIMEOUT:-30}
UP_TIMEOUT=${UP_TIMEOUT:-90}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/static
PORTS=(7101 7102 7103)
HTTP_PORTS=(27101 27102 27103)

log() { printf '[compose-test %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for c in docker redis-cli redis-benchmark curl; do
    command -v "$c" >/dev/null 2>&1 || die "$c is needed"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info)"
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    die "neither 'docker compose' nor docker-compose is installed"
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml "$@"; }

teardown() {
    local rc=$?
    if ((rc != 0)); then
        log "logs of the failed run:"
        compose logs --no-color --tail 40 >&2 || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    exit "$rc"
}

phase_start=$SECONDS
phase() {
    log "$1 took $((SECONDS - phase_start)) s"
    phase_start=$SECONDS
}

# 1. the binary and the image
context=$(mktemp -d)
mkdir -p "$context/rootfs"
case ${SHOAL_COMPOSE_BINARY:-static} in
static)
    if [[ -n ${SHOAL_STATIC_BIN:-} ]]; then
        BIN=$SHOAL_STATIC_BIN
    else
        log "building the static binary (a release build of its own, in $TARGET_DIR)"
        CARGO_TARGET_DIR=$TARGET_DIR RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --release -p shoal-server --bin shoal-server --target x86_64-unknown-linux-gnu
        BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release/shoal-server
        phase "static build"
    fi
    [[ -x $BIN ]] || die "no binary at $BIN"
    # ldd says "statically linked" (static-pie) or "not a dynamic executable" for these.
    if ! ldd "$BIN" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
        die "$BIN is dynamically linked; use SHOAL_COMPOSE_BINARY=release for that"
    fi
    ;;
release)
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/shoal-server
    [[ -x $BIN ]] || cargo build --release -p shoal-server --bin shoal-server
    # The loader and every library the binary needs, at the paths the binary looks for them.
    for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
        mkdir -p "$context/rootfs$(dirname "$lib")"
        cp -L "$lib" "$context/rootfs$lib"
    done
    ;;
*) die "SHOAL_COMPOSE_BINARY must be static or release" ;;
esac
cp "$BIN" "$context/rootfs/shoal-server"
cp deploy/Dockerfile.scratch "$context/Dockerfile"
docker build -q -t "$SHOAL_IMAGE" "$context" >/dev/null
rm -rf "$context"
phase "image build ($SHOAL_IMAGE from ${SHOAL_COMPOSE_BINARY:-static} $BIN)"

# 2. the cluster
trap teardown EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d
deadline=$((SECONDS + UP_TIMEOUT))
for i in 0 1 2; do
    until [[ $(redis-cli -p "${PORTS[i]}" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:') == cluster_state:ok ]] &&
        curl -fsS "http://127.0.0.1:${HTTP_PORTS[i]}/readyz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "node $((i + 1)) not ok and ready within ${UP_TIMEOUT} s"
        sleep 0.5
    done
done
nodes=$(redis-cli -p 7101 cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
[[ $nodes == 3 ]] || die "node 1 knows $nodes nodes, not 3"
phase "cluster up (3 containers, ok and ready)"

# 3. clients
for i in 0 1 2; do
    [[ $(redis-cli -p "${PORTS[i]}" set "compose:$i" "v$i") == OK ]] || die "SET through node $((i + 1))"
done
for i in 0 1 2; do
    for j in 0 1 2; do
        [[ $(redis-cli -p "${PORTS[i]}" get "compose:$j") == "v$j" ]] || die "GET compose:$j through node $((i + 1))"
    done
done
bench=$(redis-benchmark -p 7101 -t set,get -n "$BENCH_N" -c 20 -q 2>&1 | tr '\r' '\n')
printf '%s\n' "$bench" | grep -E 'requests per second' >&2 || true
if printf '%s\n' "$bench" | grep -qi 'error'; then
    die "redis-benchmark saw errors: $(printf '%s\n' "$bench" | grep -i error | head -3)"
fi
[[ $(printf '%s\n' "$bench" | grep -c 'requests per second') -eq 2 ]] || die "redis-benchmark did not finish: $bench"
metrics=$(curl -fsS http://127.0.0.1:27101/metrics)
grep -q '^shoal_commands_total{command="set"}' <<<"$metrics" || die "/metrics has no SET counter"
phase "redis-cli and redis-benchmark"

# 4. lose a node: writes resume through the others
[[ $(redis-cli -p 7101 set before-kill acknowledged) == OK ]] || die "SET before-kill"
compose kill -s SIGKILL node3 >/dev/null
killed_at=$SECONDS
deadline=$((SECONDS + WRITE_RESUME_TIMEOUT))
until [[ $(redis-cli -p 7101 set after-kill first 2>/dev/null) == OK ]]; do
    ((SECONDS < deadline)) || die "writes did not resume within ${WRITE_RESUME_TIMEOUT} s of the kill"
    sleep 0.2
done
log "first write acknowledged $((SECONDS - killed_at)) s after node3 was killed"
for k in $(seq 1 200); do
    port=${PORTS[k % 2]}
    [[ $(redis-cli -p "$port" set "after:$k" "$k") == OK ]] || die "write after:$k through port $port failed"
done
[[ $(redis-cli -p 7102 get before-kill) == acknowledged ]] || die "an acknowledged write is gone"
[[ $(redis-cli -p 7101 get after:200) == 200 ]] || die "after:200 not readable"
phase "kill node3, 200 writes through nodes 1 and 2"

log "PASS"
