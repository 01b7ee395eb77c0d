# Helpers of the packaging stage (sourced by tests/packaging.sh): the check runner, assertions,
# and the cached minimal Debian root the install tests start from.

PACKAGES=target/packages
LOGS=$PACKAGES/logs
CACHE=target/packaging-cache
passed=0
failed=0

# run_check NAME COMMAND...: runs COMMAND in a subshell with `set -e`, its output in
# $LOGS/NAME.log; prints PASS or FAIL (with the log) and counts.
run_check() {
    local name=$1 start=$SECONDS rc
    shift
    echo "== $name"
    set +e
    (
        set -euo pipefail
        "$@"
    ) >"$LOGS/$name.log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name ($((SECONDS - start))s)"
    else
        failed=$((failed + 1))
        echo "FAIL $name ($((SECONDS - start))s, exit $rc); $LOGS/$name.log:"
        sed 's/^/    /' "$LOGS/$name.log"
    fi
}

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# expect_line TEXT FILE-OR-"-" WHAT: TEXT is a whole line of the listing.
expect_line() {
    local line=$1 listing=$2 what=$3
    grep -qxF -- "$line" "$listing" || fail "$what: no line '$line' in $listing"
}

# one_file GLOB WHAT: the one file GLOB matches (a package of this build); fails otherwise.
one_file() {
    local files
    # shellcheck disable=SC2206 # the glob is the point
    files=($1)
    [ ${#files[@]} -eq 1 ] && [ -f "${files[0]}" ] || fail "expected one $2 in $PACKAGES, found: ${files[*]}"
    echo "${files[0]}"
}
# The proxy's package and the demo's: lbproxy_1.2.3-1_amd64.deb, lbproxy-demo_1.2.3-1_amd64.deb,
# lbproxy-1.2.3-1.x86_64.rpm, lbproxy-demo-1.2.3-1.x86_64.rpm.
deb_file() { one_file "$PACKAGES/lbproxy_*.deb" "lbproxy_*.deb"; }
demo_deb_file() { one_file "$PACKAGES/lbproxy-demo_*.deb" "lbproxy-demo_*.deb"; }
rpm_file() { one_file "$PACKAGES/lbproxy-[0-9]*.rpm" "lbproxy-VERSION.rpm"; }
demo_rpm_file() { one_file "$PACKAGES/lbproxy-demo-[0-9]*.rpm" "lbproxy-demo-VERSION.rpm"; }

# The units of the demo package; every other unit of systemd/ is the proxy's (as in
# packaging/build.sh).
DEMO_UNITS=" api@.service api@.socket api.target "

# The files each package must hold, in both formats (the system and user units are checked
# against systemd/).
EXPECTED_FILES=(
    /usr/bin/lbproxy
    /etc/lbproxy/lbproxy.toml
    /usr/lib/systemd/system/lbproxy.service
    /usr/lib/systemd/system/lbproxy.socket
    /usr/lib/systemd/user/lbproxy.service
    /usr/share/man/man8/lbproxy.8.gz
    /usr/share/man/man8/lbproxy-serve.8.gz
    /usr/share/man/man8/lbproxy-check.8.gz
    /usr/share/man/man5/lbproxy.toml.5.gz
    /usr/share/bash-completion/completions/lbproxy
    /usr/share/fish/vendor_completions.d/lbproxy.fish
    /usr/share/lbproxy/examples/routes.toml
    /usr/share/lbproxy/examples/polkit-other-template.rules
    /usr/share/lbproxy/examples/backup-system/lbproxy-backup.timer
    /usr/share/lbproxy/examples/backup-user/lbproxy-backup.service
    /usr/share/doc/lbproxy/README.md
    /usr/share/doc/lbproxy/config.md
    /usr/share/doc/lbproxy/http.md
    /usr/share/doc/lbproxy/architecture.md
    /usr/share/polkit-1/rules.d/50-lbproxy.rules
    /usr/lib/sysusers.d/lbproxy.conf
)
DEMO_EXPECTED_FILES=(
    /usr/bin/lbproxy-demo-api
    /usr/lib/systemd/system/api@.service
    /usr/lib/systemd/system/api@.socket
    /usr/lib/systemd/system/api.target
    /usr/lib/systemd/user/api@.service
    /usr/lib/systemd/user/api@.socket
    /usr/share/man/man1/lbproxy-demo-api.1.gz
    /usr/share/bash-completion/completions/lbproxy-demo-api
    /usr/share/fish/vendor_completions.d/lbproxy-demo-api.fish
    /usr/share/lbproxy-demo/own-api.conf
)

# expected_units proxy|demo: every unit file of systemd/system and systemd/user that belongs to
# that package, as installed paths.
expected_units() {
    local which=$1 unit kind name
    for kind in system user; do
        for unit in "systemd/$kind"/*; do
            name=$(basename "$unit")
            case "$name" in *.md) continue ;; esac
            if [[ $DEMO_UNITS == *" $name "* ]]; then
                [ "$which" = demo ] || continue
            else
                [ "$which" = proxy ] || continue
            fi
            echo "/usr/lib/systemd/$kind/$name"
        done
    done
}

# expect_absent LISTING WHAT PATH...: none of PATH is a line of LISTING (a file of the other
# package, or one no package should hold).
expect_absent() {
    local listing=$1 what=$2 path
    shift 2
    for path in "$@"; do
        if grep -qxF -- "$path" "$listing"; then fail "$what holds $path"; fi
    done
}

# --- the minimal Debian root -------------------------------------------------------------------
# mmdebstrap, with the machine's own Debian apt sources, into a tarball under target/ whose name
# is a hash of everything that goes into it: a second run reuses it (a few minutes saved).
# polkitd: the lbproxy package recommends it for its polkit rule, which the boot check runs under
# it (apt would install it with the package, but the checks install offline). No libnss-systemd:
# the rule's user is a static one (packaging/sysusers/lbproxy.conf), resolved from /etc/passwd.
ROOT_SUITE=bookworm
ROOT_INCLUDE=systemd,systemd-sysv,dbus,polkitd
ROOT_SOURCES=/etc/apt/sources.list.d/debian.sources
if [ ! -f "$ROOT_SOURCES" ]; then
    ROOT_SOURCES=/etc/apt/sources.list
fi
root_key=$(
    {
        echo "$ROOT_SUITE $ROOT_INCLUDE variant=apt"
        mmdebstrap --version 2>/dev/null
        cat "$ROOT_SOURCES" 2>/dev/null
    } | sha256sum | cut -c1-16
)
ROOT_TARBALL=$CACHE/debian-root-$ROOT_SUITE-$root_key.tar.gz

prepare_debian_root() {
    if [ -f "$ROOT_TARBALL" ]; then
        echo "cached: $ROOT_TARBALL"
        return 0
    fi
    mkdir -p "$CACHE"
    rm -rf "$CACHE"/debian-root-*.tar.gz # older keys
    [ -f "$ROOT_SOURCES" ] || fail "no Debian apt sources on this machine ($ROOT_SOURCES)"
    # (mmdebstrap picks the format from the file name: keep .tar.gz at the end.)
    local partial=$CACHE/partial-$root_key.tar.gz
    rm -f "$partial"
    mmdebstrap --variant=apt --include="$ROOT_INCLUDE" "$ROOT_SUITE" "$partial" "$ROOT_SOURCES"
    mv "$partial" "$ROOT_TARBALL"
}

# Roots left by a run that was killed (each check removes its own).
remove_stale_roots() {
    rm -rf --one-file-system "$CACHE"/root.* 2>/dev/null || true
}

# new_root: a fresh copy of the cached root in a new directory under $CACHE (same file system
# as target/, so nothing lands in a small /tmp); prints its path.
new_root() {
    local dir
    dir=$(mktemp -d "$CACHE/root.XXXXXX")
    tar -C "$dir" -xzf "$ROOT_TARBALL"
    echo "$dir"
}

# Options for every systemd-nspawn here: no machined to register with and no scope unit to
# create (this machine runs no systemd), a loopback of its own, and the root's /etc left as it is
# (by default nspawn writes /etc/localtime and /etc/resolv.conf into it).
NSPAWN_OPTIONS=(--quiet --register=no --keep-unit --private-network --timezone=off --resolv-conf=off)

# in_root DIR COMMAND...: runs COMMAND inside the root as in a container (its own /proc, /dev,
# no network, not booted).
in_root() {
    local dir=$1
    shift
    systemd-nspawn "${NSPAWN_OPTIONS[@]}" -D "$dir" -- "$@"
}

# APT COMMAND...: apt-get, non-interactive, without progress bars.
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)

# place_deb DEB ROOT: copies DEB where apt-get in the root can read it (not /tmp: nspawn mounts a
# fresh tmpfs there; /var/cache is left out of the root snapshots).
place_deb() {
    mkdir -p "$2/var/cache/lbproxy-test"
    cp "$1" "$2/var/cache/lbproxy-test/"
}

# install_deb ROOT DEB...: `apt-get install ./lbproxy_*.deb ...` inside the root, as an operator
# would (each DEB placed there first with place_deb).
install_deb() {
    local root=$1 deb files=""
    shift
    for deb in "$@"; do files+=" ./$(basename "$deb")"; done
    in_root "$root" sh -c "cd /var/cache/lbproxy-test && ${APT[*]} install$files"
}
