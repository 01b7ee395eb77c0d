# Sourced by bench/run.sh: installs what the benchmark needs and is missing.
#   Debian: nginx (+ its stream module for the L4 peer), haproxy, wrk, curl, openssl,
#           python3-matplotlib (charts), valgrind (bench/profile.sh)
#   cargo:  oha (fixed-rate load for the p99-at-a-fixed-rate scenario)
# Sets BENCH_PYTHON to a python3 that can import matplotlib.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "bench: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

apt_missing=()
command -v nginx >/dev/null || apt_missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || apt_missing+=(libnginx-mod-stream)
command -v haproxy >/dev/null || apt_missing+=(haproxy)
command -v wrk >/dev/null || apt_missing+=(wrk)
command -v curl >/dev/null || apt_missing+=(curl)
command -v openssl >/dev/null || apt_missing+=(openssl)
command -v taskset >/dev/null || apt_missing+=(util-linux)
command -v valgrind >/dev/null || apt_missing+=(valgrind)
BENCH_PYTHON=""
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import matplotlib' 2>/dev/null; then
        BENCH_PYTHON=$(command -v "$candidate")
        break
    fi
done
[ -n "$BENCH_PYTHON" ] || apt_missing+=(python3 python3-matplotlib)

if [ ${#apt_missing[@]} -gt 0 ]; then
    echo "bench: installing ${apt_missing[*]} (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx on :80 when it is installed; the benchmark runs its
# own instances from generated configs and needs nothing of that one.
if [ -z "$BENCH_PYTHON" ]; then
    BENCH_PYTHON=/usr/bin/python3
    "$BENCH_PYTHON" -c 'import matplotlib' || {
        echo "bench: python3-matplotlib did not install; charts need it" >&2
        exit 1
    }
fi

if ! command -v oha >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/oha" ]; then
    echo "bench: installing oha (cargo install oha --locked; a few minutes the first time)"
    cargo install oha --locked --quiet
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export BENCH_PYTHON
