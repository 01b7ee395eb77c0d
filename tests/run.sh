#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine: installs what the tests need (Debian
# packages with apt-get, cargo tools with cargo install), then checks formatting and lints, runs
# the benchmark harness once as a smoke test (bench/run.sh --quick, ~40 s; it installs nginx,
# haproxy, wrk and oha itself), every fuzz target from its seeds for 5 seconds (fuzz/run.sh: a
# target that no longer builds or crashes on its seeds fails the suite; it needs a nightly
# toolchain and installs cargo-fuzz itself), every unit and integration test (both io drivers)
# and the two-minute soak (loadtest/run.py soak-2min, on the debug build), then the
# packaging stage (tests/packaging.sh: builds the .deb and .rpm and installs, boots and removes
# them). This is the README's test command and what CI runs (.ci/run).
#
#   tests/run.sh                     everything
#   tests/run.sh --stage tests       formatting, lints, bench smoke, unit and integration tests, soak
#   tests/run.sh --stage packaging   the packaging stage only (root)
set -euo pipefail
cd "$(dirname "$0")/.."

# Every `lbproxy serve` records its configuration in its state directory (src/history/). The
# tests give each proxy they start a state directory of its own; this one catches whatever else
# the suite runs (the bench smoke, the soak), so that nothing goes to the real ~/.local/state.
XDG_STATE_HOME=$(mktemp -d -t lbproxy-state.XXXXXX)
export XDG_STATE_HOME
trap 'rm -rf "$XDG_STATE_HOME"' EXIT

stage=all
case "${1:-}" in
"") ;;
--stage)
    stage=${2:-}
    case "$stage" in tests | packaging) ;; *)
        echo "tests/run.sh: --stage takes tests or packaging" >&2
        exit 2
        ;;
    esac
    ;;
*)
    echo "usage: tests/run.sh [--stage tests|packaging]" >&2
    exit 2
    ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "tests/run.sh: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

# Debian packages: a C compiler for mimalloc's build script; systemd (the user manager, journald,
# systemctl, journalctl, systemd-analyze), util-linux (unshare, nsenter) and iproute2 (ip) for the
# tests that run the units under a real systemd (tests/systemd/sandbox.sh); curl (an https client
# in the TLS tests); Python with pip for sslyze (the TLS profile check) and prometheus_client (the
# /metrics parser); chromium (headless, the dashboard's browser test); prometheus (Prometheus and
# promtool: packaging/monitoring/ checked against the real thing, and the alerting rules' unit
# tests, `promtool test rules`: tests/monitoring.rs, which fails without them); varnish
# for varnishtest (HAProxy's HTTP reg-tests ported to lbproxy, tests/conformance.rs; varnishd
# itself is not used).
missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)
{ [ -x /usr/lib/systemd/systemd ] && [ -x /usr/lib/systemd/systemd-journald ] \
    && command -v systemd-analyze >/dev/null && command -v journalctl >/dev/null; } || missing+=(systemd)
{ command -v unshare >/dev/null && command -v nsenter >/dev/null; } || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
# The two-minute soak (loadtest/soak.py): wrk, slowhttptest, openssl (its https certificate) and
# matplotlib for its plot (Debian's python3-matplotlib, which goes to /usr/bin/python3).
command -v wrk >/dev/null || missing+=(wrk)
command -v slowhttptest >/dev/null || missing+=(slowhttptest)
command -v openssl >/dev/null || missing+=(openssl)
{ python3 -c 'import matplotlib' 2>/dev/null || /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; } \
    || missing+=(python3-matplotlib)
command -v python3 >/dev/null || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# Without their recommends: chromium's (udev, upower, mesa's drivers, a notification daemon,
# printer setup, and theirs) serve a desktop, and prometheus's (prometheus-node-exporter) a
# monitored host; the headless tests need neither. On a minimal Debian 12 the two come with 169
# packages this way instead of 345. The one thing a headless screenshot needs beyond chromium's
# Depends is a font, and those bring one (fonts-dejavu-core, through fontconfig-config).
lean=()
command -v chromium >/dev/null || lean+=(chromium)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || lean+=(prometheus)
command -v varnishtest >/dev/null || lean+=(varnish)
if [ ${#missing[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]} ${lean[*]} (apt-get)"
    as_root apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
if [ ${#lean[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "tests/run.sh: cargo is missing. Install Rust first: curl https://sh.rustup.rs -sSf | sh" >&2
    exit 1
fi
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "tests/run.sh: installing cargo-nextest (cargo install)"
    cargo install cargo-nextest --locked
fi
# oha: the autoscaling tests' load ramps at fixed rates (tests/systemd_autoscale.rs); the bench
# harness installs it the same way.
if ! command -v oha >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/oha" ]; then
    echo "tests/run.sh: installing oha (cargo install)"
    cargo install oha --locked
fi

# sslyze (PyPI) checks the https listener against Mozilla's "intermediate" TLS profile
# (tests/sslyze.rs). Debian's own Python refuses pip installs outside a venv unless told.
SSLYZE_VERSION=6.3.1
if ! python3 -m sslyze --help >/dev/null 2>&1; then
    echo "tests/run.sh: installing sslyze $SSLYZE_VERSION (python3 -m pip install)"
    python3 -m pip install --quiet "sslyze==$SSLYZE_VERSION" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "sslyze==$SSLYZE_VERSION"
fi

# prometheus_client (PyPI): its text-format parser reads /metrics in tests/admin.rs, as
# Prometheus would.
PROMETHEUS_CLIENT_VERSION=0.21.1
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "tests/run.sh: installing prometheus_client $PROMETHEUS_CLIENT_VERSION (python3 -m pip install)"
    python3 -m pip install --quiet "prometheus_client==$PROMETHEUS_CLIENT_VERSION" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "prometheus_client==$PROMETHEUS_CLIENT_VERSION"
fi

if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != "0" ]; then
    echo "tests/run.sh: io_uring is disabled on this machine (kernel.io_uring_disabled != 0);" >&2
    echo "  the suite runs the proxy on both drivers and needs it: sysctl -w kernel.io_uring_disabled=0" >&2
    exit 1
fi

if [ "$stage" != packaging ]; then
    echo "== cargo fmt --check"
    cargo fmt --all -- --check
    echo "== cargo clippy -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    echo "== module layering: tools/layers.py (no module imports a higher layer, no cycles)"
    python3 tools/layers.py
    echo "== module docs: cargo doc -D warnings (every intra-doc link resolves)"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked --quiet
    echo "== fuzz smoke: fuzz/run.sh --seconds 5 --seeds-only --smoke-build (every fuzz target, from its seeds)"
    fuzz/run.sh --seconds 5 --seeds-only --smoke-build
    echo "== bench smoke: bench/run.sh --quick (the benchmark harness end to end; asserts no speed)"
    BENCH_PORT_BASE=27000 bench/run.sh --quick
    echo "== tests"
    # The integration tests run target/debug/lbproxy-demo-api next to their lbproxy: it is the
    # demo-api package's binary, which cargo builds for that package's own tests only (the demo's
    # unit tests run below as a workspace member's; lbproxy's tests only find the binary).
    cargo build --locked --bin lbproxy-demo-api
    cargo nextest run --workspace --all-targets --locked --profile ci
    # Two minutes of mixed traffic through reloads, kill -9, rolling restarts and slow clients,
    # on the debug binaries the tests just built (a release build would add minutes); PASS needs
    # no failure outside the injected faults and flat RSS, descriptors and pooled connections.
    echo "== soak: loadtest/run.py soak-2min (results and plot in target/loadtest/)"
    (ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
        python3 loadtest/run.py --bin-dir target/debug --results-dir target/loadtest soak-2min)
fi
if [ "$stage" != tests ]; then
    echo "== packaging stage (tests/packaging.sh)"
    as_root env "PATH=$PATH" ./tests/packaging.sh
fi
