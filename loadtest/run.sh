#!/usr/bin/env bash
# Faults under load, one command: installs the load tools (wrk, slowhttptest from Debian; for the
# soak also openssl, curl and python3-matplotlib; for chaos nftables and iproute2), builds lbproxy
# and the demo API in release mode, and runs the fault scenarios (or those named):
#
#   loadtest/run.sh [--seconds N] [kill-instance|rolling-restart|reload-storm|bad-reload|slow-clients|10k-connections|dead-backends ...]
#   loadtest/run.sh soak                  # an hour; --seconds N to shorten it; soak-2min: 2 minutes
#   loadtest/run.sh chaos                 # chaos-delay, -loss, -reorder, -link-cut, -blackhole (root)
#   loadtest/run.sh autoscale             # lbproxy up --autoscale under stepped oha load (needs oha)
#
# Exit status 1 if any scenario FAILs. Results: loadtest/results/RESULTS.md and one JSON per
# scenario.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "loadtest/run.sh: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

soak=false chaos=false
for arg in "$@"; do
    case "$arg" in soak | soak-2min | autoscale) soak=true ;; chaos | chaos-*) chaos=true ;; esac
done
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v slowhttptest >/dev/null || missing+=(slowhttptest)
if $soak; then
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    # The soak's plot: soak.py looks for a python3 that imports matplotlib (Debian's goes to
    # /usr/bin/python3).
    { python3 -c 'import matplotlib' 2>/dev/null || /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; } \
        || missing+=(python3-matplotlib)
fi
if $chaos; then
    command -v nft >/dev/null || missing+=(nftables)
    { command -v ip >/dev/null && command -v tc >/dev/null; } || missing+=(iproute2)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "loadtest/run.sh: installing ${missing[*]} (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --locked --bin lbproxy --bin lbproxy-demo-api

# 10 000 client connections plus as many upstream ones need more descriptors than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 loadtest/run.py "$@"
