#!/usr/bin/env bash
# Profiles lbproxy's L7 keep-alive hot path on the release build (which keeps line tables):
# callgrind (instruction counts, repeatable) at a fixed small rate, and `perf record -e cpu-clock`
# at saturation. Results: bench/results/profile/. See bench/README.md.
#
#   bench/profile.sh                         both tools
#   bench/profile.sh --tool callgrind        one of them
#   bench/profile.sh --lbproxy-bin PATH      another build (default target/release/lbproxy)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/install.sh
source bench/lib/install.sh
command -v perf >/dev/null || {
    echo "bench: installing linux-perf (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
}

binary=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --lbproxy-bin) binary=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "$binary" ]; then
    cargo build --release --locked --quiet --bin lbproxy
    binary=target/release/lbproxy
fi
exec "$BENCH_PYTHON" bench/lib/profile.py --lbproxy "$(realpath "$binary")" "${args[@]}"
