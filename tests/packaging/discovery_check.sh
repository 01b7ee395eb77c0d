# Discovery on the system bus by the real proxy, under the booted container (sourced by
# tests/packaging.sh; check_boot calls check_system_discovery after check_polkit_rule, while
# lbproxy.service and api@1..3 run). polkit_check.sh proves the rule with busctl; this proves that
# the proxy itself — zbus, from lbproxy.service's sandbox, as the user lbproxy — reaches the
# system bus and gets polkit's yes:
#
#   1. /etc/lbproxy/lbproxy.toml's group api switched from `backends = [...]` to
#      [upstream.api.discover] on the system bus with memory_max and tasks_max, applied with
#      `systemctl reload lbproxy` (a reload may switch a group to discover: no restart)
#   2. the limits on api@1..3 in `systemctl show` (SetUnitProperties by the proxy)
#   3. /api/instances: api@1..3 routed, bus system; requests through 127.0.0.1:8080 answered
#   4. `systemctl start api@4` → routed (and limited); `systemctl stop api@4` → out of the group
#   5. the journal: an EVENT=limits "cgroup limits set" entry per instance, no "cannot set the
#      cgroup limits" (a polkit refusal would be logged so)
#
# Then the packaged file is put back and reloaded: the removal checks that follow run with it.

DISCOVERY_TIMEOUT=30
DISCOVER_TABLE='
[upstream.api.discover]
systemd = "api@*.service"
bus = "system"
address = "127.0.0.1:{8000+N}"
memory_max = "256MiB"
tasks_max = 64
'

# admin_get PATH: GET on the proxy's admin API (127.0.0.1:9901 in the container's network).
admin_get() {
    nsenter --target "$container_init" --net curl -fsS --max-time 5 "http://127.0.0.1:9901$1"
}

# instance_rows: one line per discovered unit of /api/instances (pretty JSON, fields in the
# order of admin::instances::InstanceView): "GROUP UNIT BUS ADDRESS ROUTING".
instance_rows() {
    admin_get /api/instances | awk -F'"' '
        /^  "instances": / { on = 1 }
        on && /^      "group": / { g = $4; b = ""; u = ""; a = "" }
        on && /^      "bus": / { b = $4 }
        on && /^      "unit": / { u = $4 }
        on && /^      "address": / { a = $4 }
        on && /^      "routing": / { print g, u, b, a, $4 }'
}

# routed N: api@N.service is routed on the system bus at 127.0.0.1:800N.
routed() { instance_rows | grep -qxF "api api@$1.service system 127.0.0.1:800$1 routed"; }
# gone N: api@N.service is neither routed nor draining, and not a backend of /api/backends.
gone() {
    local rows backends
    rows=$(instance_rows) && backends=$(admin_get /api/backends) || return 1
    ! grep -qE "^api api@$1\.service .* (routed|draining)$" <<<"$rows" &&
        ! grep -qF "\"127.0.0.1:800$1\"" <<<"$backends"
}
# answered: a request through the proxy gets a 2xx.
answered() {
    nsenter --target "$container_init" --net curl -fsS --max-time 10 -o /dev/null http://127.0.0.1:8080/ 2>/dev/null
}
# limited N: api@N.service has the table's limits (systemctl show).
limited() {
    [ "$(prop "api@$1.service" MemoryMax)" = 268435456 ] && [ "$(prop "api@$1.service" TasksMax)" = 64 ]
}
# limits_logged N: the proxy logged setting api@N's limits (EVENT=limits).
limits_logged() {
    in_container journalctl --no-pager -u lbproxy.service EVENT=limits -o cat |
        grep -qF "api@$1.service: cgroup limits set"
}

# discovery_wait WHAT COMMAND...: polls COMMAND until it succeeds, for at most
# DISCOVERY_TIMEOUT seconds; on timeout shows what the proxy sees and its journal, then fails.
discovery_wait() {
    local what=$1 deadline=$((SECONDS + DISCOVERY_TIMEOUT))
    shift
    until "$@"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "--- /api/instances"
            admin_get /api/instances || true
            echo "--- journalctl -u lbproxy (last 40)"
            in_container journalctl --no-pager -u lbproxy.service -n 40 || true
            fail "not after ${DISCOVERY_TIMEOUT}s: $what"
        fi
        sleep 0.2
    done
}

check_system_discovery() {
    local conf=$boot_root/etc/lbproxy/lbproxy.toml packaged=$LOGS/boot-lbproxy.toml.packaged
    local n body start=$SECONDS step
    echo "--- discovery on the system bus by the proxy itself: [upstream.api.discover] bus = \"system\""
    [ "$(grep -c '^backends = ' "$conf")" = 1 ] || fail "no single 'backends = ' line in $conf"
    cp "$conf" "$packaged"
    # (cat >, not sed -i: the file keeps its inode, owner and mode.)
    { grep -v '^backends = ' "$packaged" && printf '%s' "$DISCOVER_TABLE"; } >"$conf.new"
    cat "$conf.new" >"$conf"
    rm "$conf.new"
    sed -n '/^\[upstream.api.discover\]/,$p' "$conf"
    step=$SECONDS
    in_container timeout 60 systemctl reload lbproxy.service || {
        in_container journalctl --no-pager -u lbproxy.service -n 40 || true
        fail "systemctl reload lbproxy did not switch group api to discover"
    }
    echo "systemctl reload lbproxy: done in $((SECONDS - step))s (no restart)"

    for n in 1 2 3; do
        discovery_wait "api@$n routed by discovery (/api/instances)" routed "$n"
        discovery_wait "MemoryMax=256M TasksMax=64 on api@$n, set by the proxy" limited "$n"
        in_container systemctl show -p MemoryMax -p TasksMax "api@$n.service" | paste -sd' '
    done
    instance_rows
    # Polled: the reload leaves the group without backends until the discovery's next round
    # reaches the workers (seen once: a 503 just after /api/instances showed all three routed).
    discovery_wait "a request through 127.0.0.1:8080 answered" answered
    echo "first request answered $((SECONDS - step))s after the reload began"
    for _ in 1 2 3; do
        body=$(nsenter --target "$container_init" --net curl -fsS --max-time 10 http://127.0.0.1:8080/) ||
            fail "request through the proxy failed after the switch to discovery"
        [[ $body =~ \"instance\":[123] ]] || fail "not a demo API answer: $body"
    done
    echo "requests through 127.0.0.1:8080: answered"

    echo "--- systemctl start api@4: routed without a reload; systemctl stop api@4: removed"
    in_container timeout 60 systemctl start api@4.service
    discovery_wait "api@4 routed" routed 4
    discovery_wait "limits on api@4" limited 4
    instance_rows | grep -F api@4
    in_container timeout 60 systemctl stop api@4.service
    discovery_wait "api@4 out of group api" gone 4
    echo "api@4 stopped: out of /api/instances' routed units and of /api/backends"

    echo "--- the proxy's journal: limits set on each instance, none refused"
    for n in 1 2 3 4; do
        discovery_wait "an EVENT=limits entry for api@$n" limits_logged "$n"
    done
    in_container journalctl --no-pager -u lbproxy.service EVENT=limits -o cat
    if in_container journalctl --no-pager -u lbproxy.service -o cat | grep -F "cannot set the cgroup limits"; then
        fail "the proxy could not set the cgroup limits (above)"
    fi

    echo "--- the packaged configuration back (systemctl reload lbproxy)"
    cat "$packaged" >"$conf"
    in_container timeout 60 systemctl reload lbproxy.service || fail "reload back to the packaged configuration failed"
    admin_get /api/instances | grep -qF '"discover": []' || fail "group api still discovers after the reload back"
    echo "system-bus discovery checks: $((SECONDS - start))s"
}
