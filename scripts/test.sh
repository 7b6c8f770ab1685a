#!/usr/bin/env bash
# Runs shoal's whole test suite: unit, property and integration tests (the integration tests
# start real shoal-server processes and drive them with Debian's redis-cli and redis-benchmark,
# with redis-py's RedisCluster and with the shoal-client crate), and the fault-injection suite
# (cluster-tests/: network namespaces and iptables, so it needs root). Installs redis-tools and redis-server first if they are
# missing and we may use apt-get, and makes a Python venv with redis-py (pip, from PyPI) in
# ${CARGO_TARGET_DIR:-target}/test-venv (SHOAL_TEST_VENV overrides) unless it already has it.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PKG...: installs the packages with apt-get if we may (root), else asks for them.
apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "please install: $* (e.g. sudo apt-get install $*)" >&2
        exit 1
    fi
}

missing=()
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Headless Chromium draws the status page in server/tests/observability.rs.
command -v "${SHOAL_CHROMIUM:-chromium}" >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

# redis-py for the Redis Cluster client tests (server/tests/redis_cluster_clients.rs runs
# server/tests/python/ with $SHOAL_TEST_PYTHON): a venv under the target dir, made once.
REDIS_PY_VERSION=5.3.1
VENV=${SHOAL_TEST_VENV:-${CARGO_TARGET_DIR:-$PWD/target}/test-venv}
has_redis_py() {
    "$VENV/bin/python" -c "import redis.cluster, sys; sys.exit(redis.__version__ != '$REDIS_PY_VERSION')" \
        >/dev/null 2>&1
}
if ! has_redis_py; then
    apt_missing=()
    command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
    # Debian's python3 makes venvs only with python3-venv (ensurepip) installed.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then apt_missing+=(python3-venv); fi
    if ((${#apt_missing[@]})); then apt_install "${apt_missing[@]}"; fi
    echo "creating $VENV with redis-py $REDIS_PY_VERSION" >&2
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "redis==$REDIS_PY_VERSION"
    has_redis_py || { echo "redis-py $REDIS_PY_VERSION did not install into $VENV" >&2; exit 1; }
fi
export SHOAL_TEST_PYTHON="$VENV/bin/python"

# The fault-injection suite (cluster-tests/) needs ip and iptables, and root.
cluster-tests/setup.sh

# The client crate's and cluster-tests' suites run the release server as real processes; they
# find it through $SHOAL_SERVER_BIN (they must not depend on the server crate to get it built).
cargo build --release -p shoal-server --bin shoal-server
export SHOAL_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/shoal-server"

cargo test --workspace "$@"

# The Kubernetes manifests and the compose file, checked without a cluster.
scripts/k8s-lint.sh
