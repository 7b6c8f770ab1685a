#!/usr/bin/env bash
# Installs what the fault-injection suite needs besides root: `ip` (iproute2) and `iptables`.
# Called by scripts/test.sh and scripts/soak.sh; harmless when both are present.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "the fault-injection suite needs root and: ${missing[*]}" >&2
        exit 1
    fi
fi
