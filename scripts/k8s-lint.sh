#!/usr/bin/env bash
# k8s-lint.sh: checks deploy/k8s/ and deploy/compose.yaml without a cluster: yamllint (Debian
# package) for YAML syntax and style, then kubernetes-validate (PyPI; it ships the Kubernetes
# OpenAPI schemas, so nothing is fetched at check time) in strict mode, which rejects unknown
# or mistyped fields. Installs what is missing (apt-get as root; a venv under the target dir).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VALIDATE_VERSION=1.37.0
VENV=${SHOAL_K8S_VENV:-${CARGO_TARGET_DIR:-$PWD/target}/k8s-venv}

if ! command -v yamllint >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yamllint >/dev/null
    else
        echo "please install yamllint (apt-get install yamllint)" >&2
        exit 1
    fi
fi
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$K8S_VALIDATE_VERSION"; then
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$K8S_VALIDATE_VERSION"
fi

yamllint -c deploy/k8s/.yamllint.yaml deploy/k8s/ deploy/compose.yaml
"$VENV/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
echo "k8s-lint: deploy/k8s and deploy/compose.yaml pass yamllint and kubernetes-validate --strict"
