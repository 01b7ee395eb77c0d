# The installed packages under a real systemd (sourced by tests/packaging.sh): a fresh copy of
# the Debian root, both .debs installed, booted with systemd-nspawn; with the proxy and the API
# running, the polkit rule is checked (tests/packaging/polkit_check.sh), then the proxy's own
# discovery of api@N on the system bus (tests/packaging/discovery_check.sh).
#
# This machine runs no systemd as PID 1, so nspawn runs with --register=no (no machined to
# register with) and --keep-unit (no scope unit to create: the container stays in this
# process's cgroup). --private-network gives the container its own loopback, so the units' fixed
# ports (8001-8003, 8080) meet nothing else on the machine. Commands go in with nsenter into the
# container's namespaces; its systemd prints harmless errors about cgroup v1 symlinks it cannot
# create on this machine's hybrid cgroup layout.

BOOT_TIMEOUT=120

# in_container COMMAND...: runs COMMAND in every namespace of the booted container.
in_container() {
    nsenter --target "$container_init" --mount --uts --ipc --net --pid --cgroup -- "$@"
}

stop_container() {
    if [ -n "${container_init:-}" ]; then
        in_container systemctl poweroff >/dev/null 2>&1 || true
    fi
    if [ -n "${nspawn_pid:-}" ]; then
        local deadline=$((SECONDS + 30))
        while kill -0 "$nspawn_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            kill "$nspawn_pid" 2>/dev/null || true # nspawn asks the container to power off
            sleep 2
            kill -9 "$nspawn_pid" 2>/dev/null || true
        fi
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    echo "--- container console"
    cat "$LOGS/boot-console.log" 2>/dev/null || true
    [ -z "${boot_root:-}" ] || rm -rf "$boot_root"
}

check_boot() {
    local deb demo deadline state
    deb=$(deb_file)
    demo=$(demo_deb_file)
    boot_root=$(new_root)
    trap stop_container EXIT
    place_deb "$deb" "$boot_root"
    place_deb "$demo" "$boot_root"
    echo "--- apt-get install ./$(basename "$deb") ./$(basename "$demo") (before boot)"
    install_deb "$boot_root" "$deb" "$demo"
    printf '%s' "$OTHER_UNIT" >"$boot_root/etc/systemd/system/other.service" # (polkit_check.sh)

    echo "--- boot"
    systemd-nspawn "${NSPAWN_OPTIONS[@]}" --boot \
        -D "$boot_root" </dev/null >"$LOGS/boot-console.log" 2>&1 &
    nspawn_pid=$!
    deadline=$((SECONDS + BOOT_TIMEOUT))
    container_init=
    until [ -n "$container_init" ]; do
        kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited during boot"
        [ $SECONDS -lt $deadline ] || fail "no container init after ${BOOT_TIMEOUT}s"
        # The container's init is the child of systemd-nspawn that runs systemd. Not just any
        # child: nspawn first forks a helper (still named systemd-nspawn) that sets up the
        # namespaces and exits; on a loaded machine it lives long enough to be picked, and every
        # nsenter into it then fails.
        container_init=$(pgrep -x 'systemd|init' -P "$nspawn_pid" | head -1 || true)
        sleep 0.2
    done
    # Poll rather than `systemctl is-system-running --wait`: until the container's systemd has
    # its private socket, systemctl prints "Failed to connect to bus" and nothing on stdout, and
    # on a loaded machine a --wait that asks just as the boot finishes can miss the signal it
    # waits for and hang (seen once: the console showed graphical.target reached while --wait
    # sat out its whole timeout). Each call is short; the state is read again until it settles.
    state=
    while [ $SECONDS -lt $deadline ]; do
        state=$(timeout 10 nsenter --target "$container_init" --mount --pid \
            systemctl is-system-running 2>/dev/null || true)
        case "$state" in
        running | degraded | maintenance | stopping | offline) break ;;
        esac
        sleep 0.5
    done
    echo "system state: $state"
    case "$state" in
    running | degraded) ;;
    *) fail "the container's systemd did not finish booting ($state)" ;;
    esac
    in_container systemctl --failed --no-pager || true

    echo "--- installed, not enabled: after the boot nothing runs and nothing listens on :8080"
    local unit
    for unit in lbproxy.service lbproxy.socket api.target api@1.service; do
        state=$(in_container systemctl is-enabled "$unit" 2>/dev/null || true)
        echo "$unit: $state, $(in_container systemctl is-active "$unit" || true)"
        case "$state" in
        disabled | indirect) ;; # (a template's instance is "indirect" without an alias)
        *) fail "$unit is $state after installation; the packages enable nothing" ;;
        esac
        [ "$(in_container systemctl is-active "$unit" || true)" = inactive ] || fail "$unit runs after the boot"
    done
    if nsenter --target "$container_init" --net curl -sS --max-time 5 -o /dev/null http://127.0.0.1:8080/; then
        fail "something answers on 127.0.0.1:8080 after the boot of an unconfigured installation"
    fi

    echo "--- systemctl start api.target; systemctl enable --now lbproxy (the README's commands)"
    in_container timeout 90 systemctl start api.target &&
        in_container timeout 90 systemctl enable --now lbproxy ||
        {
            in_container systemctl status --no-pager --lines=30 api@1 lbproxy || true
            in_container journalctl --no-pager -n 100 || true
            fail "the units did not start"
        }
    in_container systemctl status --no-pager --lines=5 lbproxy api@1 api@2 api@3 || true
    [ "$(in_container systemctl is-enabled lbproxy.service || true)" = enabled ] || fail "lbproxy.service is not enabled"
    for unit in api@1.service api@2.service api@3.service lbproxy.service; do
        # Type=notify: active once the unit said READY=1.
        [ "$(in_container systemctl is-active "$unit" || true)" = active ] || fail "$unit is not active"
    done

    echo "--- requests through the proxy (127.0.0.1:8080 in the container)"
    local body instances=""
    for _ in 1 2 3 4 5 6; do
        # This machine's curl, in the container's network namespace (the root has no curl).
        body=$(nsenter --target "$container_init" --net curl -fsS --max-time 10 http://127.0.0.1:8080/) ||
            fail "request through the proxy failed"
        echo "$body"
        [[ $body =~ \"instance\":([123]) ]] || fail "not a demo API answer: $body"
        instances+=" ${BASH_REMATCH[1]}"
    done
    echo "answered by instances:$instances"

    echo "--- the sandboxed proxy still runs on io_uring (the unit's seccomp filter allows it)"
    in_container journalctl --no-pager -u lbproxy.service -o verbose >"$LOGS/boot-journal.txt"
    grep -E '^\s*DRIVER=' "$LOGS/boot-journal.txt" | tail -1
    grep -qE '^\s*DRIVER=io_uring$' "$LOGS/boot-journal.txt" || fail "lbproxy did not start on io_uring (journal: $LOGS/boot-journal.txt)"

    echo "--- services run as an unprivileged user"
    local pid uid
    pid=$(in_container systemctl show -P MainPID lbproxy.service)
    uid=$(in_container awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    echo "lbproxy.service: pid $pid, uid $uid"
    [ "$uid" != 0 ] || fail "lbproxy runs as root"

    check_polkit_rule
    check_system_discovery

    echo "--- systemd-analyze security lbproxy.service"
    in_container systemd-analyze security --no-pager lbproxy.service | tee "$LOGS/boot-security.txt"
    local exposure
    exposure=$(sed -n 's/.*Overall exposure level for lbproxy.service: \([0-9.]*\).*/\1/p' "$LOGS/boot-security.txt")
    [ -n "$exposure" ] || fail "no exposure level in the output"
    awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure level $exposure is above 2.0"
    echo "exposure level: $exposure (at most 2.0)"

    echo "--- apt-get remove lbproxy-demo: every API instance stops, the proxy keeps running"
    in_container "${APT[@]}" remove lbproxy-demo
    for unit in api@1.service api@2.service api@3.service; do
        state=$(in_container systemctl is-active "$unit" || true)
        echo "$unit: $state"
        [ "$state" = inactive ] || fail "$unit is $state after removing lbproxy-demo"
    done
    [ "$(in_container systemctl is-active lbproxy.service || true)" = active ] ||
        fail "removing lbproxy-demo stopped lbproxy.service"
    echo "--- apt-get remove lbproxy: the proxy stops"
    in_container "${APT[@]}" remove lbproxy
    state=$(in_container systemctl is-active lbproxy.service || true)
    echo "lbproxy.service: $state"
    [ "$state" = inactive ] || fail "lbproxy.service is $state after removal"
    echo "--- apt-get purge lbproxy lbproxy-demo"
    in_container "${APT[@]}" purge lbproxy lbproxy-demo
    [ ! -e "$boot_root/etc/lbproxy" ] || fail "/etc/lbproxy is left after purge"
    if find "$boot_root/etc/systemd" -name '*lbproxy*' -o -name 'api*' | grep .; then
        fail "unit links or masks above are left after purge"
    fi
    echo "removed and purged under a running systemd"
}
