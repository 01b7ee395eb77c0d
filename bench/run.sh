#!/usr/bin/env bash
# One command for the whole benchmark: installs what is missing (nginx, haproxy, wrk, curl,
# python3-matplotlib, valgrind from Debian; oha with cargo), builds lbproxy, and runs every
# scenario against direct, lbproxy, nginx and HAProxy (bench/lib/main.py). See bench/README.md.
#
#   bench/run.sh                 full run (release build, 3 runs per scenario) → bench/results/
#   bench/run.sh --quick         smoke test of the harness (debug build, tiny runs) → target/bench-quick/
#   bench/run.sh --help          every option (scenario and target subsets, --compare, …)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

quick=false
for arg in "$@"; do
    case "$arg" in
        --quick) quick=true ;;
        --help | -h) exec python3 bench/lib/main.py --lbproxy - --help ;;
    esac
done

# shellcheck source=lib/install.sh
source bench/lib/install.sh

# The smoke test checks the harness, not speed: the debug build (already there after the test
# suite) is enough. A measurement uses the release build.
if $quick; then
    cargo build --locked --quiet --bin lbproxy
    lbproxy=$repo/target/debug/lbproxy
else
    echo "bench: cargo build --release --locked --bin lbproxy"
    cargo build --release --locked --quiet --bin lbproxy
    lbproxy=$repo/target/release/lbproxy
fi

# 10k idle connections need that many descriptors in the harness and in each proxy.
ulimit -Hn 65536 2>/dev/null || true  # needs CAP_SYS_RESOURCE; else the hard limit stays
ulimit -n "$(ulimit -Hn)"

export BENCH_INVOCATION="bench/run.sh${*:+ $*}"
exec "$BENCH_PYTHON" bench/lib/main.py --lbproxy "$lbproxy" "$@"
