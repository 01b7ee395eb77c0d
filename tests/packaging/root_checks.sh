# Install tests in a minimal Debian root (sourced by tests/packaging.sh): apt-get install of the
# .deb in a clean root, and piuparts.

# Every path in the root an installation could touch, minus package-manager bookkeeping.
root_snapshot() {
    local dir=$1
    (cd "$dir" && find . -xdev \
        \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
        -o -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/cache -o -path ./var/log \) -prune \
        -o -print | sort)
}

# unit_links ROOT: the enablement symlinks under the root's /etc/systemd/system, "PATH -> TARGET".
unit_links() {
    find "$1/etc/systemd/system" -type l -printf '%P -> %l\n' | sort
}

# expect_no_lbproxy_links ROOT WHEN: no unit of either package is enabled.
expect_no_lbproxy_links() {
    unit_links "$1" | tee "$LOGS/clean-root-links.txt"
    if grep -E 'lbproxy|api[@.]' "$LOGS/clean-root-links.txt"; then
        fail "$2: the units above are enabled; the packages enable nothing"
    fi
}

check_clean_root() {
    local deb demo before after link
    deb=$(deb_file)
    demo=$(demo_deb_file)
    root=$(new_root) # not local: the EXIT trap removes it
    trap 'rm -rf "$root"' EXIT
    before=$LOGS/clean-root-before.txt
    after=$LOGS/clean-root-after-purge.txt
    root_snapshot "$root" >"$before"
    cp "$root/etc/passwd" "$LOGS/clean-root-passwd-before.txt"
    place_deb "$deb" "$root"
    place_deb "$demo" "$root"

    echo "--- apt-get install ./$(basename "$deb") (the proxy alone)"
    install_deb "$root" "$deb"
    echo "--- files"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy $(expected_units proxy); do
        [ -f "$root$file" ] || fail "$file not installed"
    done
    for file in "${DEMO_EXPECTED_FILES[@]}"; do
        [ ! -e "$root$file" ] || fail "$file installed with lbproxy alone (it belongs to lbproxy-demo)"
    done
    [ -x "$root/usr/bin/lbproxy" ] || fail "/usr/bin/lbproxy is not executable"
    echo "--- the system user of lbproxy.service (systemd-sysusers, no shell, no home)"
    local account
    account=$(in_root "$root" getent passwd lbproxy) || fail "postinst did not create the user lbproxy"
    account=${account%$'\r'} # (nspawn's console ends lines with CR LF)
    echo "$account"
    [[ $account =~ ^lbproxy:x:([0-9]+):[0-9]+:[^:]*:/:/usr/sbin/nologin$ ]] && [ "${BASH_REMATCH[1]}" -lt 1000 ] ||
        fail "lbproxy is not a system user without home and shell: $account"
    echo "--- unit symlinks: none (installed, not enabled)"
    expect_no_lbproxy_links "$root" "after installing lbproxy"
    echo "--- lbproxy check -c /etc/lbproxy/lbproxy.toml"
    in_root "$root" lbproxy check -c /etc/lbproxy/lbproxy.toml
    in_root "$root" lbproxy --version
    in_root "$root" systemd-analyze verify /usr/lib/systemd/system/lbproxy.service \
        /usr/lib/systemd/system/lbproxy.socket

    echo "--- apt-get install ./$(basename "$demo") (the demo beside it)"
    install_deb "$root" "$demo"
    for file in "${DEMO_EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy-demo-api $(expected_units demo); do
        [ -f "$root$file" ] || fail "$file not installed"
    done
    expect_no_lbproxy_links "$root" "after installing lbproxy-demo"
    in_root "$root" lbproxy-demo-api --version
    in_root "$root" systemd-analyze verify /usr/lib/systemd/system/api@.service \
        /usr/lib/systemd/system/api.target

    echo "--- the administrator's choices survive an upgrade (a reinstall runs the same scripts)"
    link=$root/etc/systemd/system/multi-user.target.wants/lbproxy.service
    echo "# edited by the administrator" >>"$root/etc/lbproxy/lbproxy.toml"
    in_root "$root" systemctl enable lbproxy.service
    in_root "$root" sh -c "cd /var/cache/lbproxy-test && ${APT[*]} install --reinstall ./$(basename "$deb") ./$(basename "$demo")"
    tail -1 "$root/etc/lbproxy/lbproxy.toml" | grep -qx "# edited by the administrator" ||
        fail "the upgrade replaced the edited /etc/lbproxy/lbproxy.toml"
    # -L: the link points into the root (/lib/...), which -e would look for on this machine
    [ -L "$link" ] || fail "the upgrade disabled lbproxy.service, which the administrator had enabled"
    in_root "$root" systemctl disable lbproxy.service
    in_root "$root" sh -c "cd /var/cache/lbproxy-test && ${APT[*]} install --reinstall ./$(basename "$deb")"
    [ ! -L "$link" ] || fail "the upgrade enabled lbproxy.service again after the administrator disabled it"
    echo "edited configuration kept; enabled stays enabled, disabled stays disabled"

    echo "--- apt-get purge lbproxy-demo: the proxy stays"
    in_root "$root" "${APT[@]}" purge lbproxy-demo
    for file in "${DEMO_EXPECTED_FILES[@]}"; do
        [ ! -e "$root$file" ] || fail "$file is left after purging lbproxy-demo"
    done
    [ -x "$root/usr/bin/lbproxy" ] || fail "purging lbproxy-demo removed /usr/bin/lbproxy"
    echo "--- apt-get purge lbproxy"
    in_root "$root" "${APT[@]}" purge lbproxy
    root_snapshot "$root" >"$after"
    if ! diff -u "$before" "$after"; then
        fail "the purge left the paths above behind (or removed them)"
    fi
    diff -u "$LOGS/clean-root-passwd-before.txt" "$root/etc/passwd" || fail "/etc/passwd changed"
    for package in lbproxy lbproxy-demo; do
        in_root "$root" dpkg-query -W "$package" 2>/dev/null && fail "$package still known to dpkg after purge"
    done
    echo "purge left nothing behind"
}

check_piuparts() {
    local deb demo
    deb=$(deb_file)
    demo=$(demo_deb_file)
    # Its own chroot from the cached root; --keep-sources-list: the root's sources are the
    # machine's Debian ones. Both packages at once (lbproxy-demo depends on lbproxy, which is in
    # no archive). No upgrade test: there is no earlier lbproxy in the archive.
    piuparts --basetgz="$ROOT_TARBALL" --keep-sources-list --distribution="$ROOT_SUITE" \
        --no-upgrade-test --tmpdir="$CACHE" "$deb" "$demo"
}
