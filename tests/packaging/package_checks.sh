# Checks on the package files themselves (sourced by tests/packaging.sh): contents, metadata,
# maintainer scripts, lintian and rpmlint.

check_deb_contents() {
    local deb listing control
    deb=$(deb_file)
    listing=$LOGS/deb-files.txt
    control=$(mktemp -d)
    dpkg-deb --contents "$deb" | awk '{print $NF}' | sed 's|^\./|/|; s|/$||' >"$listing"
    echo "--- $deb"
    dpkg-deb --info "$deb"
    echo "--- files"
    dpkg-deb --contents "$deb"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy \
        /usr/share/doc/lbproxy/copyright /usr/share/doc/lbproxy/changelog.Debian.gz \
        $(expected_units); do
        expect_line "$file" "$listing" ".deb contents"
    done

    dpkg-deb --control "$deb" "$control"
    expect_line /etc/lbproxy/lbproxy.toml "$control/conffiles" "conffiles"
    # Enabled (not started) on installation, stopped on removal, state purged.
    grep -q 'deb-systemd-helper enable lbproxy.service' "$control/postinst" || fail "postinst does not enable lbproxy.service"
    grep -q 'daemon-reload' "$control/postinst" || fail "postinst has no daemon-reload"
    if grep -E 'deb-systemd-invoke (start|restart) ' "$control/postinst"; then
        fail "postinst starts a unit on installation"
    fi
    grep -q 'deb-systemd-invoke stop' "$control/prerm" || fail "prerm does not stop the units"
    grep -q 'deb-systemd-helper purge' "$control/postrm" || fail "postrm does not purge the unit state"
    grep -q 'rm -rf /etc/lbproxy' "$control/postrm" || fail "postrm purge does not remove /etc/lbproxy"
    for script in postinst prerm postrm; do
        sh -n "$control/$script" || fail "$script: shell syntax"
        if grep -q '#DEBHELPER#' "$control/$script"; then fail "$script: #DEBHELPER# left unexpanded"; fi
    done
    grep -q '^Depends:.*libc6 (>= 2\.' "$control/control" || fail "Depends has no libc6 version floor"
    rm -rf "$control"

    # Stripped binaries ("stripped", not "with debug_info" or "not stripped").
    local unpacked
    unpacked=$(mktemp -d)
    dpkg-deb --extract "$deb" "$unpacked"
    for bin in lbproxy lbproxy-demo-api; do
        # (.debug_gdb_scripts is a loaded section that strip keeps, not debug information.)
        if objdump -h "$unpacked/usr/bin/$bin" | grep -E '\.(symtab|debug_(info|line|str|abbrev))'; then
            fail "/usr/bin/$bin is not stripped"
        fi
    done
    # The packaged units start the packaged binaries.
    if grep -rn '^[^#]*\.cargo' "$unpacked/usr/lib/systemd"; then fail "unit lines above name ~/.cargo"; fi
    grep -q '^ExecStart=/usr/bin/lbproxy serve' "$unpacked/usr/lib/systemd/user/lbproxy.service" ||
        fail "user lbproxy.service does not run /usr/bin/lbproxy"
    rm -rf "$unpacked"
}

check_lintian() {
    local deb
    deb=$(deb_file)
    lintian --fail-on error,warning --display-info "$deb"
    # The overrides ship in the package (/usr/share/lintian/overrides/lbproxy), each with its
    # reason. (--show-overrides would count the overridden tags as failures.)
    echo "--- overrides"
    grep -v '^$' packaging/debian/lintian-overrides
}

check_rpm_contents() {
    local rpm listing
    rpm=$(rpm_file)
    listing=$LOGS/rpm-files.txt
    echo "--- $rpm"
    rpm -qip "$rpm"
    echo "--- files (path, flags: c = config, n = noreplace, d = doc)"
    rpm -qp --queryformat '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\n]' "$rpm" | tee "$LOGS/rpm-flags.txt"
    rpm -qlp "$rpm" >"$listing"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/site-functions/_lbproxy $(expected_units); do
        expect_line "$file" "$listing" ".rpm contents"
    done
    expect_line "/etc/lbproxy/lbproxy.toml cn -rw-r--r--" "$LOGS/rpm-flags.txt" \
        "lbproxy.toml is %config(noreplace)"
    echo "--- scriptlets"
    rpm -qp --scripts "$rpm" | tee "$LOGS/rpm-scripts.txt"
    grep -q 'systemctl --no-reload enable lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%post does not enable lbproxy.service"
    grep -q 'disable --now lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%preun does not stop lbproxy.service"
    grep -q 'try-restart lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%postun does not restart on upgrade"
    for tag in POSTIN PREUN POSTUN; do
        rpm -qp --queryformat "%{$tag}" "$rpm" >"$LOGS/rpm-$tag.sh"
        sh -n "$LOGS/rpm-$tag.sh" || fail "%$tag: shell syntax"
    done
}

check_rpmlint() {
    local rpm floor documented
    rpm=$(rpm_file)
    rpmlint --version
    rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/lbproxy.rpmlintrc "$rpm"
    echo "--- rpm -qp --requires"
    rpm -qp --requires "$rpm" | tee "$LOGS/rpm-requires.txt"
    # The newest glibc symbol version any binary needs: the oldest glibc the package runs on.
    floor=$(grep -o 'GLIBC_[0-9.]*' "$LOGS/rpm-requires.txt" | sed 's/GLIBC_//' | sort -V | tail -1)
    [ -n "$floor" ] || fail "no GLIBC_ requirement found"
    echo "glibc floor: $floor"
    documented=$(sed -n 's/.*glibc floor is \*\*\([0-9.]*\)\*\*.*/\1/p' packaging/README.md)
    [ "$floor" = "$documented" ] ||
        fail "the packages need glibc $floor but packaging/README.md documents '$documented': update it"
}
