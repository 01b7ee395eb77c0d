#!/usr/bin/env bash
# Builds the .deb and the .rpm into target/packages/ (see packaging/README.md):
#
#   packaging/build.sh        →  target/packages/lbproxy_<version>-1_<arch>.deb
#                                target/packages/lbproxy-<version>-1.<arch>.rpm
#
# 1. `cargo build --release` (lto = fat), then every file the packages hold is staged under
#    target/packages/stage/: stripped binaries, the units of systemd/ (user units with /usr/bin
#    in place of ~/.cargo/bin), manual pages and completions (`lbproxy generate`), docs, examples
#    and packaging/monitoring/ when present.
# 2. cargo-deb packages that stage as [package.metadata.deb] in Cargo.toml lists it, with the
#    maintainer scripts of packaging/debian/; rpmbuild packages it as packaging/rpm/lbproxy.spec
#    says (binary package only: nothing is compiled by rpmbuild).
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
cargo build --release --locked --bins

# Same input, same packages: file dates (cargo-deb, the man pages) come from the last commit.
# (Set after the build: build scripts rerun when it changes.)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

out=target/packages
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage"/{bin,man,completions/bash,completions/zsh,completions/fish} \
    "$stage"/{units/system,units/user,share/examples,doc}

echo "== staging in $stage"
for bin in lbproxy lbproxy-demo-api; do
    install -m 755 "target/release/$bin" "$stage/bin/$bin"
    strip --strip-all --remove-section=.comment "$stage/bin/$bin"
done

# Manual pages and completions, from the CLI definitions and docs/config.md.
"$stage/bin/lbproxy" generate man "$stage/man" >/dev/null
gzip -9n "$stage"/man/*
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
"$stage/bin/lbproxy" generate completions "$generated" >/dev/null
for name in lbproxy lbproxy-demo-api; do
    # bash-completion loads completions/NAME for the command NAME.
    install -m 644 "$generated/$name.bash" "$stage/completions/bash/$name"
    install -m 644 "$generated/_$name" "$stage/completions/zsh/_$name"
    install -m 644 "$generated/$name.fish" "$stage/completions/fish/$name.fish"
done

# Units: everything under systemd/system and systemd/user but their READMEs. The user units say
# %h/.cargo/bin (where `cargo install` puts the binaries); packaged, the binaries are in /usr/bin.
stage_units() {
    local from=$1 to=$2 unit count=0
    for unit in "$from"/*; do
        [ -f "$unit" ] || continue
        case "$unit" in *.md) continue ;; esac
        sed 's|%h/\.cargo/bin/|/usr/bin/|g' "$unit" >"$to/$(basename "$unit")"
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || fail "no unit files in $from (the systemd units are part of the package)"
}
stage_units systemd/system "$stage/units/system"
stage_units systemd/user "$stage/units/user"
for unit in lbproxy.service api@.service; do
    [ -f "$stage/units/system/$unit" ] || fail "systemd/system/$unit is missing"
done
if grep -n '^[^#]*\.cargo' "$stage"/units/*/*; then
    fail "the unit lines above still name ~/.cargo; packaged binaries are in /usr/bin"
fi

# /usr/share/lbproxy: examples and monitoring files (data for other tools, so not under
# /usr/share/doc, which minimal installs drop).
install -m 644 examples/*.toml "$stage/share/examples/"
if [ -d systemd/examples ]; then
    mkdir -p "$stage/share/examples/systemd"
    install -m 644 systemd/examples/* "$stage/share/examples/systemd/"
fi
if [ -d packaging/monitoring ]; then
    mkdir -p "$stage/share/monitoring"
    cp -r packaging/monitoring/. "$stage/share/monitoring/"
    find "$stage/share/monitoring" -type f -exec chmod 644 {} +
fi

install -m 644 README.md "$stage/doc/README.md"
install -m 644 docs/config.md "$stage/doc/config.md"
install -m 644 packaging/README.md "$stage/doc/packaging.md"
if [ -f systemd/README.md ]; then
    install -m 644 systemd/README.md "$stage/doc/systemd.md"
fi

echo "== cargo deb"
rm -f "$out"/*.deb "$out"/*.rpm
cargo deb --no-build --locked --output "$out/"
echo "== rpmbuild"
version=$("$stage/bin/lbproxy" --version | awk '{print $2}')
topdir=$(realpath "$out")/rpmbuild
rm -rf "$topdir"
rpmbuild -bb --quiet \
    --define "_topdir $topdir" \
    --define "version $version" \
    --define "stage $(realpath "$stage")" \
    --define "config_file $(realpath packaging/lbproxy.toml)" \
    --define "license_file $(realpath packaging/debian/copyright)" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    packaging/rpm/lbproxy.spec
mv "$topdir"/RPMS/*/lbproxy-*.rpm "$out/"
rm -rf "$topdir"

echo "== packages"
ls -1 "$out"/*.deb "$out"/*.rpm
