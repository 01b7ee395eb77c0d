#!/usr/bin/env bash
# L4 relay benchmark (bench/results/L4-RELAY.md): 1 GiB transfers through a tcp listener with
# relay = "splice" and "copy", on io_uring and on the legacy driver, HAProxy (mode tcp, splice)
# for reference and a direct connection as the floor; median of --runs (default 5), interleaved.
#
#   bench/l4/run.sh [--runs N] [--size-mib M] [--lbproxy-variant NAME=BIN ...]
#
# Builds lbproxy in release mode, installs HAProxy if it is missing (apt-get), and writes the
# measurements to bench/results/l4-relay.json.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v haproxy >/dev/null; then
    echo "bench/l4/run.sh: installing haproxy (apt-get)"
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq --no-install-recommends haproxy; else sudo apt-get install -y -qq --no-install-recommends haproxy; fi
fi
cargo build --release --locked --bin lbproxy
mkdir -p bench/results
echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), pipe-max-size $(cat /proc/sys/fs/pipe-max-size)"
exec python3 bench/l4/l4_relay.py --lbproxy target/release/lbproxy \
    --json bench/results/l4-relay.json "$@"
