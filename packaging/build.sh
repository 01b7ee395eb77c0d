#!/usr/bin/env bash
# Builds the .deb and .rpm packages into target/packages/ (see packaging/README.md):
#
#   packaging/build.sh   →  target/packages/lbproxy_<version>-1_<arch>.deb       the proxy
#                           target/packages/lbproxy-demo_<version>-1_<arch>.deb  the demo API
#                           target/packages/lbproxy-<version>-1.<arch>.rpm
#                           target/packages/lbproxy-demo-<version>-1.<arch>.rpm
#
# lbproxy is the proxy alone (binary, lbproxy.service/.socket, /etc/lbproxy/lbproxy.toml, manual
# pages, completions, the service's system user and the polkit rule that lets it manage api@N).
# lbproxy-demo is the demo API and the units that run it (api@.service, api.target) with its
# manual page and completions: what the default configuration's backends are, kept out of the
# production package.
#
# 1. `cargo build --release` (lto = fat; both packages of the workspace: lbproxy and
#    demo-api/), then every file the packages hold is staged under
#    target/packages/stage/lbproxy/ and target/packages/stage/lbproxy-demo/: stripped binaries,
#    the units of systemd/ (user units with /usr/bin in place of ~/.cargo/bin), manual pages and
#    completions (`lbproxy generate`), docs, examples and packaging/monitoring/ when present.
# 2. cargo-deb packages each stage as [package.metadata.deb] (lbproxy) and its `demo` variant
#    (lbproxy-demo) in Cargo.toml list it, with the maintainer scripts of packaging/debian/ and
#    packaging/debian/demo/; rpmbuild packages both as packaging/rpm/lbproxy.spec says (binary
#    packages only: nothing is compiled by rpmbuild).
#
# Needs cargo-deb (`cargo install --locked cargo-deb`), rpmbuild (apt-get install rpm), strip
# and gzip; tests/packaging.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "packaging/build.sh: $*" >&2
    exit 1
}

cargo deb --version >/dev/null 2>&1 ||
    fail "cargo-deb is missing; install it with: cargo install --locked cargo-deb"
command -v rpmbuild >/dev/null || fail "rpmbuild is missing; install it with: apt-get install rpm"
for tool in strip gzip; do
    command -v "$tool" >/dev/null || fail "$tool is missing; install it with: apt-get install binutils gzip"
done

echo "== cargo build --release"
cargo build --release --locked --workspace --bins

# Same input, same packages: file dates (cargo-deb, the man pages) come from the last commit.
# (Set after the build: build scripts rerun when it changes.)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

out=target/packages
stage=$out/stage
proxy=$stage/lbproxy
demo=$stage/lbproxy-demo
rm -rf "$stage"
for dir in "$proxy" "$demo"; do
    mkdir -p "$dir"/{bin,man,completions/bash,completions/zsh,completions/fish,units/system,units/user,share}
done
mkdir -p "$proxy/share/examples" "$proxy/doc"

# The demo API's units; every other unit of systemd/ belongs to the proxy's package.
DEMO_UNITS=" api@.service api@.socket api.target "

echo "== staging in $stage"
install -m 755 target/release/lbproxy "$proxy/bin/lbproxy"
install -m 755 target/release/lbproxy-demo-api "$demo/bin/lbproxy-demo-api"
strip --strip-all --remove-section=.comment "$proxy/bin/lbproxy" "$demo/bin/lbproxy-demo-api"

# Manual pages and completions, from the CLI definitions and docs/config.md.
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
"$proxy/bin/lbproxy" generate man "$generated" >/dev/null
gzip -9n "$generated"/*
mv "$generated"/lbproxy-demo-api.* "$demo/man/"
mv "$generated"/* "$proxy/man/"
"$proxy/bin/lbproxy" generate completions "$generated" >/dev/null
stage_completions() { # NAME DIR
    # bash-completion loads completions/NAME for the command NAME.
    install -m 644 "$generated/$1.bash" "$2/completions/bash/$1"
    install -m 644 "$generated/_$1" "$2/completions/zsh/_$1"
    install -m 644 "$generated/$1.fish" "$2/completions/fish/$1.fish"
}
stage_completions lbproxy "$proxy"
stage_completions lbproxy-demo-api "$demo"

# Units: everything under systemd/system and systemd/user but their READMEs. The user units say
# %h/.cargo/bin (where `cargo install` puts the binaries); packaged, the binaries are in /usr/bin.
stage_units() { # system|user
    local kind=$1 unit name to count=0
    for unit in "systemd/$kind"/*; do
        [ -f "$unit" ] || continue
        case "$unit" in *.md) continue ;; esac
        name=$(basename "$unit")
        to=$proxy
        [[ $DEMO_UNITS == *" $name "* ]] && to=$demo
        sed 's|%h/\.cargo/bin/|/usr/bin/|g' "$unit" >"$to/units/$kind/$name"
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || fail "no unit files in systemd/$kind (the systemd units are part of the packages)"
}
stage_units system
stage_units user
for unit in "$proxy/units/system/lbproxy.service" "$demo/units/system/api@.service"; do
    [ -f "$unit" ] || fail "systemd/system/$(basename "$unit") is missing"
done
if grep -n '^[^#]*\.cargo' "$proxy"/units/*/* "$demo"/units/*/*; then
    fail "the unit lines above still name ~/.cargo; packaged binaries are in /usr/bin"
fi

# /usr/share/lbproxy: examples and monitoring files (data for other tools, so not under
# /usr/share/doc, which minimal installs drop). The own-API drop-in is for the demo's
# api@.service: /usr/share/lbproxy-demo/. The backup timers (docs/disaster-recovery.md) are the
# proxy's, one pair per manager, naming the packaged binary: examples/backup-{system,user}/.
install -m 644 examples/*.toml "$proxy/share/examples/"
if [ -d systemd/examples ]; then
    install -m 644 systemd/examples/*.conf "$demo/share/"
    for kind in system user; do
        [ -d "systemd/examples/$kind" ] || continue
        mkdir -p "$proxy/share/examples/backup-$kind"
        for unit in "systemd/examples/$kind"/*; do
            sed 's|%h/\.cargo/bin/|/usr/bin/|g' "$unit" >"$proxy/share/examples/backup-$kind/$(basename "$unit")"
            chmod 644 "$proxy/share/examples/backup-$kind/$(basename "$unit")"
        done
    done
fi
if [ -d packaging/monitoring ]; then
    mkdir -p "$proxy/share/monitoring"
    cp -r packaging/monitoring/. "$proxy/share/monitoring/"
    find "$proxy/share/monitoring" -type f -exec chmod 644 {} +
fi

# The system user of lbproxy.service and the polkit rule that lets it manage api@N
# (systemd/README.md, "Letting the proxy manage api@N").
install -D -m 644 packaging/sysusers/lbproxy.conf "$proxy/sysusers/lbproxy.conf"
install -D -m 644 packaging/polkit/50-lbproxy.rules "$proxy/polkit/50-lbproxy.rules"
install -m 644 packaging/polkit/other-template.rules "$proxy/share/examples/polkit-other-template.rules"

install -m 644 README.md "$proxy/doc/README.md"
install -m 644 docs/*.md "$proxy/doc/"
install -m 644 packaging/README.md "$proxy/doc/packaging.md"
if [ -f systemd/README.md ]; then
    install -m 644 systemd/README.md "$proxy/doc/systemd.md"
fi

echo "== cargo deb"
rm -f "$out"/*.deb "$out"/*.rpm
cargo deb --no-build --locked --output "$out/"
cargo deb --no-build --locked --variant demo --output "$out/"
echo "== rpmbuild"
version=$("$proxy/bin/lbproxy" --version | awk '{print $2}')
topdir=$(realpath "$out")/rpmbuild
rm -rf "$topdir"
rpmbuild -bb --quiet \
    --define "_topdir $topdir" \
    --define "version $version" \
    --define "stage $(realpath "$proxy")" \
    --define "demo_stage $(realpath "$demo")" \
    --define "config_file $(realpath packaging/lbproxy.toml)" \
    --define "license_file $(realpath packaging/debian/copyright)" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    packaging/rpm/lbproxy.spec
mv "$topdir"/RPMS/*/lbproxy-*.rpm "$out/"
rm -rf "$topdir"

echo "== packages"
ls -1 "$out"/*.deb "$out"/*.rpm
