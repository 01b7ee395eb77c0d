# Checks on the package files themselves (sourced by tests/packaging.sh): contents, metadata,
# maintainer scripts, lintian and rpmlint, for the proxy's package (lbproxy) and the demo's
# (lbproxy-demo).

# deb_listing DEB FILE: the paths DEB installs, one a line, into FILE.
deb_listing() {
    dpkg-deb --contents "$1" | awk '{print $NF}' | sed 's|^\./|/|; s|/$||' >"$2"
}

# expect_stripped DIR BIN...: each DIR/usr/bin/BIN has no symbol table and no debug information
# ("stripped", not "with debug_info" or "not stripped").
expect_stripped() {
    local dir=$1 bin
    shift
    for bin in "$@"; do
        # (.debug_gdb_scripts is a loaded section that strip keeps, not debug information.)
        if objdump -h "$dir/usr/bin/$bin" | grep -E '\.(symtab|debug_(info|line|str|abbrev))'; then
            fail "/usr/bin/$bin is not stripped"
        fi
    done
}

# expect_debhelper_scripts CONTROL-DIR: the maintainer scripts parse, their #DEBHELPER# token
# was expanded, nothing is enabled or started on installation, units stop on removal and their
# state goes on purge.
expect_debhelper_scripts() {
    local control=$1 script
    for script in postinst prerm postrm; do
        [ -f "$control/$script" ] || fail "no $script"
        sh -n "$control/$script" || fail "$script: shell syntax"
        if grep -q '#DEBHELPER#' "$control/$script"; then fail "$script: #DEBHELPER# left unexpanded"; fi
    done
    grep -q 'daemon-reload' "$control/postinst" || fail "postinst has no daemon-reload"
    # dh_installsystemd's snippet without enable re-enables a unit only where it was enabled
    # before (`was-enabled`: an administrator's choice, kept by an upgrade); nothing else may.
    if ! awk 'BEGIN { guard = -10 } /^[[:space:]]*#/ { next }
        /deb-systemd-helper --quiet was-enabled/ { guard = NR }
        /deb-systemd-helper enable|systemctl[^|]* enable/ && NR - guard > 2 { print NR ": " $0; bad = 1 }
        END { exit bad }' "$control/postinst"; then
        fail "postinst enables a unit (lines above) other than where it was enabled before; the packages enable nothing"
    fi
    grep -q 'deb-systemd-helper update-state' "$control/postinst" ||
        fail "postinst does not record the enablement state (update-state): a purge would leave an administrator's links"
    if grep -nE 'deb-systemd-invoke (start|restart) ' "$control/postinst"; then
        fail "postinst starts a unit on installation (lines above)"
    fi
    grep -q 'deb-systemd-invoke stop' "$control/prerm" || fail "prerm does not stop the units"
    grep -q 'deb-systemd-helper purge' "$control/postrm" || fail "postrm does not purge the unit state"
}

check_deb_contents() {
    local deb demo listing demo_listing control unpacked
    deb=$(deb_file)
    demo=$(demo_deb_file)
    listing=$LOGS/deb-files.txt
    demo_listing=$LOGS/deb-demo-files.txt
    deb_listing "$deb" "$listing"
    deb_listing "$demo" "$demo_listing"
    for package in "$deb" "$demo"; do
        echo "--- $package"
        dpkg-deb --info "$package"
        echo "--- files"
        dpkg-deb --contents "$package"
    done

    echo "--- lbproxy: the proxy, no demo"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy \
        /usr/share/doc/lbproxy/copyright /usr/share/doc/lbproxy/changelog.Debian.gz \
        $(expected_units proxy); do
        expect_line "$file" "$listing" "lbproxy .deb contents"
    done
    expect_absent "$listing" "the lbproxy .deb" "${DEMO_EXPECTED_FILES[@]}" $(expected_units demo)
    if grep -n 'demo' "$listing"; then fail "the lbproxy .deb holds the demo's files above"; fi
    echo "--- lbproxy-demo: the demo API and its units"
    for file in "${DEMO_EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy-demo-api \
        /usr/share/doc/lbproxy-demo/copyright /usr/share/doc/lbproxy-demo/changelog.Debian.gz \
        $(expected_units demo); do
        expect_line "$file" "$demo_listing" "lbproxy-demo .deb contents"
    done
    expect_absent "$demo_listing" "the lbproxy-demo .deb" "${EXPECTED_FILES[@]}" $(expected_units proxy)

    control=$(mktemp -d)
    dpkg-deb --control "$deb" "$control"
    expect_line /etc/lbproxy/lbproxy.toml "$control/conffiles" "conffiles"
    expect_debhelper_scripts "$control"
    grep -q 'rm -rf /etc/lbproxy' "$control/postrm" || fail "postrm purge does not remove /etc/lbproxy"
    grep -q '^Depends:.*libc6 (>= 2\.' "$control/control" || fail "Depends has no libc6 version floor"
    # The polkit rule needs polkitd with JavaScript rules; postinst creates the user with
    # systemd-sysusers, before the debhelper snippets that restart a running proxy.
    grep -qE '^Recommends:(.*, | )polkitd \(>= 121\)(,|$)' "$control/control" || fail "lbproxy does not recommend polkitd (>= 121)"
    grep -qE '^Depends:(.*, | )systemd \| systemd-sysusers(,|$)' "$control/control" || fail "lbproxy does not depend on systemd-sysusers"
    awk '/systemd-sysusers lbproxy.conf/ { user = NR } /deb-systemd/ && !first { first = NR }
        END { exit !(user && user < first) }' "$control/postinst" ||
        fail "postinst does not create the user before the debhelper snippets"
    grep -q 'userdel lbproxy' "$control/postrm" || fail "postrm purge does not remove the user"
    rm -rf "$control"
    control=$(mktemp -d)
    dpkg-deb --control "$demo" "$control"
    expect_debhelper_scripts "$control"
    grep -q 'deb-systemd-invoke stop.*api\.target' "$control/prerm" || fail "lbproxy-demo's prerm does not stop api.target"
    grep -qE '^Depends:(.*, | )lbproxy(,|$)' "$control/control" || fail "lbproxy-demo does not depend on lbproxy"
    grep -q '^Depends:.*libc6 (>= 2\.' "$control/control" || fail "lbproxy-demo's Depends has no libc6 version floor"
    rm -rf "$control"

    unpacked=$(mktemp -d)
    dpkg-deb --extract "$deb" "$unpacked"
    dpkg-deb --extract "$demo" "$unpacked"
    expect_stripped "$unpacked" lbproxy lbproxy-demo-api
    # The packaged units start the packaged binaries.
    if grep -rn '^[^#]*\.cargo' "$unpacked/usr/lib/systemd"; then fail "unit lines above name ~/.cargo"; fi
    grep -q '^ExecStart=/usr/bin/lbproxy serve' "$unpacked/usr/lib/systemd/user/lbproxy.service" ||
        fail "user lbproxy.service does not run /usr/bin/lbproxy"
    grep -q '^ExecStart=/usr/bin/lbproxy-demo-api ' "$unpacked/usr/lib/systemd/user/api@.service" ||
        fail "user api@.service does not run /usr/bin/lbproxy-demo-api"
    rm -rf "$unpacked"
}

check_lintian() {
    local deb demo
    deb=$(deb_file)
    demo=$(demo_deb_file)
    lintian --fail-on error,warning --display-info "$deb" "$demo"
    # The overrides ship in the packages (/usr/share/lintian/overrides/PACKAGE), each with its
    # reason. (--show-overrides would count the overridden tags as failures.)
    echo "--- overrides"
    grep -hv '^$' packaging/debian/lintian-overrides packaging/debian/demo/lintian-overrides
}

check_rpm_contents() {
    local rpm demo listing demo_listing
    rpm=$(rpm_file)
    demo=$(demo_rpm_file)
    listing=$LOGS/rpm-files.txt
    demo_listing=$LOGS/rpm-demo-files.txt
    for package in "$rpm" "$demo"; do
        echo "--- $package"
        rpm -qip "$package"
        echo "--- files (path, flags: c = config, n = noreplace, d = doc, l = license)"
        rpm -qp --queryformat '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\n]' "$package"
    done | tee "$LOGS/rpm-info.txt"
    rpm -qlp "$rpm" >"$listing"
    rpm -qlp "$demo" >"$demo_listing"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/site-functions/_lbproxy $(expected_units proxy); do
        expect_line "$file" "$listing" "lbproxy .rpm contents"
    done
    expect_absent "$listing" "the lbproxy .rpm" "${DEMO_EXPECTED_FILES[@]}" $(expected_units demo)
    if grep -n 'demo' "$listing"; then fail "the lbproxy .rpm holds the demo's files above"; fi
    for file in "${DEMO_EXPECTED_FILES[@]}" /usr/share/zsh/site-functions/_lbproxy-demo-api $(expected_units demo); do
        expect_line "$file" "$demo_listing" "lbproxy-demo .rpm contents"
    done
    expect_absent "$demo_listing" "the lbproxy-demo .rpm" "${EXPECTED_FILES[@]}" $(expected_units proxy)
    expect_line "/etc/lbproxy/lbproxy.toml cn -rw-r--r--" "$LOGS/rpm-info.txt" \
        "lbproxy.toml is %config(noreplace)"
    rpm -qp --requires "$demo" | grep -qx 'lbproxy' || fail "lbproxy-demo does not require lbproxy"
    rpm -qp --recommends "$rpm" | grep -qx 'polkit' || fail "lbproxy does not recommend polkit"
    rpm -qp --requires "$rpm" | grep -qx '/usr/bin/systemd-sysusers' || fail "lbproxy does not require systemd-sysusers for %post"

    echo "--- scriptlets"
    rpm -qp --scripts "$rpm" | tee "$LOGS/rpm-scripts.txt"
    rpm -qp --scripts "$demo" | tee "$LOGS/rpm-demo-scripts.txt"
    # The preset policy decides (disabled on RHEL, Fedora, openSUSE); nothing is enabled outright.
    grep -q 'systemctl --no-reload preset lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%post does not preset lbproxy.service"
    grep -q 'systemctl --no-reload preset api.target' "$LOGS/rpm-demo-scripts.txt" || fail "demo %post does not preset api.target"
    if grep -v '^[[:space:]]*#' "$LOGS/rpm-scripts.txt" "$LOGS/rpm-demo-scripts.txt" | grep 'systemctl[^|]* enable'; then
        fail "a scriptlet enables a unit (lines above)"
    fi
    grep -q 'disable --now lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%preun does not stop lbproxy.service"
    grep -q 'disable --now api.target' "$LOGS/rpm-demo-scripts.txt" || fail "demo %preun does not stop api.target"
    grep -q 'try-restart lbproxy.service' "$LOGS/rpm-scripts.txt" || fail "%postun does not restart on upgrade"
    grep -q 'systemd-sysusers lbproxy.conf' "$LOGS/rpm-scripts.txt" || fail "%post does not create the user"
    for package in "$rpm" "$demo"; do
        for tag in POSTIN PREUN POSTUN; do
            rpm -qp --queryformat "%{$tag}" "$package" >"$LOGS/rpm-$tag.sh"
            sh -n "$LOGS/rpm-$tag.sh" || fail "$(basename "$package") %$tag: shell syntax"
        done
    done
}

check_rpmlint() {
    local rpm demo floor documented
    rpm=$(rpm_file)
    demo=$(demo_rpm_file)
    rpmlint --version
    rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/lbproxy.rpmlintrc "$rpm" "$demo"
    echo "--- rpm -qp --requires"
    rpm -qp --requires "$rpm" "$demo" | tee "$LOGS/rpm-requires.txt"
    # The newest glibc symbol version any binary needs: the oldest glibc the packages run on.
    floor=$(grep -o 'GLIBC_[0-9.]*' "$LOGS/rpm-requires.txt" | sed 's/GLIBC_//' | sort -V | tail -1)
    [ -n "$floor" ] || fail "no GLIBC_ requirement found"
    echo "glibc floor: $floor"
    documented=$(sed -n 's/.*glibc floor is \*\*\([0-9.]*\)\*\*.*/\1/p' packaging/README.md)
    [ "$floor" = "$documented" ] ||
        fail "the packages need glibc $floor but packaging/README.md documents '$documented': update it"
}
