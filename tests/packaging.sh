#!/usr/bin/env bash
# The packaging stage of the suite: tests/run.sh runs it after the unit and integration tests
# (alone: `tests/packaging.sh`, as root). It installs its tools, builds the packages with
# packaging/build.sh (lbproxy, the proxy, and lbproxy-demo, the demo API and its units, each as
# .deb and .rpm), then checks them the way an operator would meet them:
#
#   deb-contents, rpm-contents   each package's files and none of the other's, conffile/noreplace,
#                                maintainer scripts (nothing enabled or started), stripped binaries
#   lintian                      lintian --fail-on error,warning, both .debs
#   rpmlint                      rpmlint with packaging/rpm/lbproxy.rpmlintrc; rpm -qp --requires
#                                shown, its glibc floor the one packaging/README.md documents
#   clean-root                   a minimal Debian root (mmdebstrap, cached under target/): apt-get
#                                install ./lbproxy_*.deb alone, then ./lbproxy-demo_*.deb; files
#                                where they belong, the system user, no unit enabled, `lbproxy
#                                check`, the administrator's choices kept by an upgrade, purge
#                                leaves nothing (the user included)
#   piuparts                     install / remove / purge of both in piuparts' own chroot of that root
#   boot                         that root with both installed, booted with systemd (systemd-nspawn):
#                                nothing runs or listens after the boot; `systemctl start api.target`
#                                and `systemctl enable --now lbproxy`, requests through the proxy,
#                                the polkit rule (the user lbproxy may start, stop, restart and
#                                set properties of api@N over D-Bus from the service's sandbox,
#                                nothing else), the proxy itself discovering api@N on the system
#                                bus with cgroup limits (start/stop api@4 followed, no refusal),
#                                systemd-analyze security ≤ 2.0, removal stops everything
#
# Each check's output goes to target/packages/logs/CHECK.log and is printed when it fails. The
# last line is `packaging: N passed, M failed`; the exit status is 1 if any failed.
# `tests/packaging.sh CHECK...` runs only the checks named (after the build), e.g. `boot`.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
APT_TOOLS=(lintian rpmlint rpm mmdebstrap piuparts systemd-container curl binutils util-linux)

die() {
    echo "tests/packaging.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root: mmdebstrap, chroot and systemd-nspawn need it (sudo tests/packaging.sh)"

# --- tools -------------------------------------------------------------------------------------
stage_start=$SECONDS
missing=()
for package in "${APT_TOOLS[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/packaging.sh: installing ${missing[*]} (apt-get)"
    apt-get update -qq || die "apt-get update failed; the packaging checks need: apt-get install ${APT_TOOLS[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "could not install ${missing[*]}: apt-get install ${APT_TOOLS[*]}"
fi
cargo_tool() { # CRATE VERSION SUBCOMMAND
    local crate=$1 version=$2 subcommand=$3
    if ! cargo "$subcommand" --version 2>/dev/null | grep -qF "$version"; then
        echo "tests/packaging.sh: installing $crate $version (cargo install)"
        cargo install --locked --quiet "$crate" --version "$version" ||
            die "could not install $crate: cargo install --locked $crate --version $version"
    fi
}
cargo_tool cargo-deb "$CARGO_DEB_VERSION" deb
for tool in lintian rpmlint rpm rpmbuild mmdebstrap piuparts systemd-nspawn nsenter curl objdump; do
    command -v "$tool" >/dev/null || die "$tool is missing after the install step: apt-get install ${APT_TOOLS[*]}"
done
tools_seconds=$((SECONDS - stage_start))

# --- checks ------------------------------------------------------------------------------------
# shellcheck source=tests/packaging/lib.sh
source tests/packaging/lib.sh
# shellcheck source=tests/packaging/package_checks.sh
source tests/packaging/package_checks.sh
# shellcheck source=tests/packaging/root_checks.sh
source tests/packaging/root_checks.sh
# shellcheck source=tests/packaging/boot_check.sh
source tests/packaging/boot_check.sh
# shellcheck source=tests/packaging/polkit_check.sh
source tests/packaging/polkit_check.sh
# shellcheck source=tests/packaging/discovery_check.sh
source tests/packaging/discovery_check.sh

selected=" $* "
wanted() { [ "$selected" = "  " ] || [[ $selected == *" $1 "* ]]; }

mkdir -p "$LOGS"
remove_stale_roots
build_start=$SECONDS
run_check build packaging/build.sh
build_seconds=$((SECONDS - build_start))
if [ "$failed" -eq 0 ]; then
    wanted deb-contents && run_check deb-contents check_deb_contents
    wanted lintian && run_check lintian check_lintian
    wanted rpm-contents && run_check rpm-contents check_rpm_contents
    wanted rpmlint && run_check rpmlint check_rpmlint
    root_start=$SECONDS
    run_check debian-root prepare_debian_root
    root_seconds=$((SECONDS - root_start))
    if [ -f "$ROOT_TARBALL" ]; then
        wanted clean-root && run_check clean-root check_clean_root
        wanted piuparts && run_check piuparts check_piuparts
        wanted boot && run_check boot check_boot
    fi
fi

echo "== packaging stage: ${tools_seconds}s tools, ${build_seconds}s build, ${root_seconds:-0}s debian root, $((SECONDS - stage_start))s in all"
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
