#!/usr/bin/env bash
# Runs the HTTP conformance tests ported from HAProxy's reg-tests (tests/vtc/*.vtc) against
# lbproxy with varnishtest, on both io drivers. tests/conformance.rs runs the same files as part
# of `cargo nextest run`; this script is for running them by hand.
#
#   tests/vtc/run.sh [--lbproxy PATH] [--driver io_uring|legacy] [FILE.vtc ...]
#
# Without --lbproxy it builds target/debug/lbproxy (cargo build). Without files, every .vtc here.
# Installs Debian's varnish package (for varnishtest) with apt-get when varnishtest is missing;
# fails, never skips, when it cannot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

lbproxy=
drivers=(io_uring legacy)
files=()
while [ $# -gt 0 ]; do
    case "$1" in
    --lbproxy) lbproxy=${2:?--lbproxy takes a path}; shift 2 ;;
    --driver) drivers=("${2:?--driver takes io_uring or legacy}"); shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "tests/vtc/run.sh: unknown option $1" >&2; exit 2 ;;
    *) files+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
    esac
done
[ ${#files[@]} -gt 0 ] || files=("$here"/*.vtc)

if ! command -v varnishtest >/dev/null; then
    echo "tests/vtc/run.sh: varnishtest is missing; installing Debian's varnish package (apt-get)"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends varnish
    command -v varnishtest >/dev/null || {
        echo "tests/vtc/run.sh: varnishtest is still missing after installing varnish" >&2
        exit 1
    }
fi

if [ -z "$lbproxy" ]; then
    echo "tests/vtc/run.sh: building lbproxy (cargo build --bin lbproxy)"
    (cd "$root" && cargo build --quiet --locked --bin lbproxy)
    lbproxy=$root/target/debug/lbproxy
fi
lbproxy=$(cd "$(dirname "$lbproxy")" && pwd)/$(basename "$lbproxy")
[ -x "$lbproxy" ] || { echo "tests/vtc/run.sh: $lbproxy is not an executable" >&2; exit 1; }

status=0
for driver in "${drivers[@]}"; do
    echo "== varnishtest, driver $driver: ${#files[@]} files"
    # -k: run every file even after a failure; -l: keep a failed test's directory and log.
    varnishtest -k -l -q -j 2 -t 60 -D "lbproxy=$lbproxy" -D "lbproxy_driver=$driver" \
        "${files[@]}" || status=1
done
[ $status -eq 0 ] && echo "tests/vtc/run.sh: all passed" || echo "tests/vtc/run.sh: FAILED" >&2
exit $status
