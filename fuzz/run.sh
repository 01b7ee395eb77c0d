#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read bytes from the network or the configuration
# (cargo-fuzz, libFuzzer): builds every target once, runs each in turn for the time given, and
# reports per target the inputs executed, libFuzzer's coverage figures and any crash. README.md
# here describes the targets and what to do with a crash.
#
#   fuzz/run.sh                       every target, 5 minutes each
#   fuzz/run.sh --minutes 1 chunked   one target, 1 minute
#   fuzz/run.sh --seconds 5 --seeds-only --smoke-build
#                                     the smoke tests/run.sh runs: every target, 5 seconds each,
#                                     from the committed seeds only (what it finds is discarded),
#                                     built unoptimised without AddressSanitizer (--dev -s none:
#                                     minutes less to build from a clean clone; it checks that
#                                     each target builds and survives its seeds, not speed)
#
# Needs a nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz with cargo
# install when it is missing. Each run starts from the seeds in fuzz/corpus/TARGET (committed)
# and what earlier runs found in fuzz/work/TARGET (not committed); crashes are written to
# fuzz/artifacts/TARGET/. Exit status 1 when a target crashed (or failed to run).
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=300
targets=()
work=work
build=()
profile=release
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes) seconds=$(( ${2:?--minutes takes a number} * 60 )); shift 2 ;;
    --seconds) seconds=${2:?--seconds takes a number}; shift 2 ;;
    --seeds-only) work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; shift ;;
    --smoke-build) build=(--dev -s none); profile=debug; shift ;;
    -h | --help) sed -n '2,19p' run.sh | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz needs a nightly toolchain, and there is none." >&2
    echo "  install it: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

all=$(cargo fuzz list)
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$all"
fi
for target in "${targets[@]}"; do
    grep -qx "$target" <<<"$all" || {
        echo "fuzz/run.sh: no target $target; the targets are:" $all >&2
        exit 2
    }
done

# One build for all targets (release, debug assertions, AddressSanitizer: cargo-fuzz's defaults).
# Its own target directory and a nightly compiler: nothing is shared with the proxy's build.
echo "== building the fuzz targets (cargo +nightly fuzz build${build[*]:+ ${build[*]}})"
start=$SECONDS
cargo +nightly fuzz build "${build[@]}"
echo "   built in $(( SECONDS - start )) s"

bin=target/x86_64-unknown-linux-gnu/$profile
failed=0
summary=()
for target in "${targets[@]}"; do
    mkdir -p work "$work/$target" "artifacts/$target"
    log="work/$target.log"
    echo "== $target: ${seconds} s (log: fuzz/$log)"
    status=0
    # New inputs go to work/ (the first directory); the seeds are read, never written.
    "$bin/$target" "$work/$target" "corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # libFuzzer's last status line: cov = code edges reached, ft = features (edges with hit
    # counts, comparisons), corp = inputs kept.
    coverage=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    crashes=$(sed -n 's/.*Test unit written to //p' "$log" | sed 's|^|fuzz/|' | tr '\n' ' ')
    line="$target: ${execs:-?} executions, ${coverage:-no coverage line}"
    if [ "$status" -ne 0 ] || [ -n "$crashes" ]; then
        failed=1
        line="$line; FAILED (exit $status) ${crashes:+crash: $crashes}"
        grep -m1 -A6 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" | sed 's/^/   | /' || true
    fi
    echo "   $line"
    summary+=("$line")
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz/run.sh: a target crashed: reproduce with" >&2
    echo "  cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…  (from fuzz/)" >&2
    echo "  and turn the input into a regression test next to the code (fuzz/README.md)" >&2
    exit 1
fi
