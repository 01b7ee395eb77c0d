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

check_clean_root() {
    local deb before after
    deb=$(deb_file)
    root=$(new_root) # not local: the EXIT trap removes it
    trap 'rm -rf "$root"' EXIT
    before=$LOGS/clean-root-before.txt
    after=$LOGS/clean-root-after-purge.txt
    root_snapshot "$root" >"$before"
    cp "$root/etc/passwd" "$LOGS/clean-root-passwd-before.txt"
    place_deb "$deb" "$root"

    echo "--- apt-get install ./$(basename "$deb")"
    install_deb "$root" "$deb"

    echo "--- files"
    for file in "${EXPECTED_FILES[@]}" /usr/share/zsh/vendor-completions/_lbproxy $(expected_units); do
        [ -f "$root$file" ] || fail "$file not installed"
    done
    [ -x "$root/usr/bin/lbproxy" ] || fail "/usr/bin/lbproxy is not executable"
    echo "--- unit symlinks"
    find "$root/etc/systemd/system" -type l -printf '%P -> %l\n' | sort | tee "$LOGS/clean-root-links.txt"
    # (/lib or /usr/lib: the same directory on a merged-/usr system, as bookworm's is)
    grep -qxE 'multi-user\.target\.wants/lbproxy\.service -> (/usr)?/lib/systemd/system/lbproxy\.service' \
        "$LOGS/clean-root-links.txt" || fail "lbproxy.service is not enabled (multi-user.target.wants) on installation"
    if grep -E 'lbproxy\.socket|api' "$LOGS/clean-root-links.txt"; then
        fail "units above are enabled; only lbproxy.service should be"
    fi
    echo "--- lbproxy check -c /etc/lbproxy/lbproxy.toml"
    in_root "$root" lbproxy check -c /etc/lbproxy/lbproxy.toml
    in_root "$root" lbproxy --version
    in_root "$root" systemd-analyze verify /usr/lib/systemd/system/lbproxy.service \
        /usr/lib/systemd/system/lbproxy.socket /usr/lib/systemd/system/api@.service

    echo "--- the administrator's choices survive an upgrade (a reinstall runs the same scripts)"
    echo "# edited by the administrator" >>"$root/etc/lbproxy/lbproxy.toml"
    in_root "$root" systemctl disable lbproxy.service
    in_root "$root" sh -c "cd /var/cache/lbproxy-test && ${APT[*]} install --reinstall ./$(basename "$deb")"
    tail -1 "$root/etc/lbproxy/lbproxy.toml" | grep -qx "# edited by the administrator" ||
        fail "the upgrade replaced the edited /etc/lbproxy/lbproxy.toml"
    # -L: the link points into the root (/lib/...), which -e would look for on this machine
    [ ! -L "$root/etc/systemd/system/multi-user.target.wants/lbproxy.service" ] ||
        fail "the upgrade enabled lbproxy.service again after the administrator disabled it"
    echo "edited configuration kept, disabled unit left disabled"

    echo "--- apt-get purge lbproxy"
    in_root "$root" "${APT[@]}" purge lbproxy
    root_snapshot "$root" >"$after"
    if ! diff -u "$before" "$after"; then
        fail "the purge left the paths above behind (or removed them)"
    fi
    diff -u "$LOGS/clean-root-passwd-before.txt" "$root/etc/passwd" || fail "/etc/passwd changed"
    in_root "$root" dpkg-query -W lbproxy 2>/dev/null && fail "lbproxy still known to dpkg after purge"
    echo "purge left nothing behind"
}

check_piuparts() {
    local deb
    deb=$(deb_file)
    # Its own chroot from the cached root; --keep-sources-list: the root's sources are the
    # machine's Debian ones. No upgrade test: there is no earlier lbproxy in the archive.
    piuparts --basetgz="$ROOT_TARBALL" --keep-sources-list --distribution="$ROOT_SUITE" \
        --no-upgrade-test --tmpdir="$CACHE" "$deb"
}
