# The polkit rule under the booted container (sourced by tests/packaging.sh; check_boot calls
# check_polkit_rule while lbproxy.service and api@1..3 run). The packaged rule
# (/usr/share/polkit-1/rules.d/50-lbproxy.rules) lets the user "lbproxy" start, stop and restart
# api@N.service and set its properties; nothing else. Checked three ways:
#
#   pkcheck     polkitd's decision for lbproxy.service's own process, verb by verb
#   systemd     the D-Bus calls themselves (busctl), from a transient service with lbproxy.service's
#               user and its whole sandbox (PrivateUsers=, RestrictAddressFamilies=, the seccomp
#               filter, …), so that reaching the bus and the credentials dbus-daemon and polkitd see
#               are those of the real service; the units' state says what systemd did
#   override    the documented way to grant another template instead (an /etc rule from
#               /usr/share/lbproxy/examples/polkit-other-template.rules)
#
# A refusal is systemd's "Interactive authentication required." (polkit's default for
# manage-units, auth_admin, with no agent to ask) or "Access denied" (a rule's NO).

POLKIT_TIMEOUT=30
MANAGE_UNITS=org.freedesktop.systemd1.manage-units

# An ordinary unit of the root, not the rule's business (check_boot installs it before the boot).
OTHER_UNIT='[Unit]
Description=A unit the user lbproxy may not manage
[Service]
ExecStart=/bin/sleep infinity
'

# pk_allows PID UNIT VERB: polkitd grants manage-units on UNIT for VERB to process PID (pkcheck as
# root may ask for any process; exit 0 is "authorized").
pk_allows() {
    in_container pkcheck --action-id "$MANAGE_UNITS" --process "$1" --detail unit "$2" --detail verb "$3" >/dev/null 2>&1
}

# The settings of lbproxy.service's hardening block (from DynamicUser=yes to the end of
# [Service]), as systemd-run -p options; filled by check_polkit_rule from the installed unit.
sandbox_properties=()

# as_lbproxy COMMAND...: runs COMMAND in a transient service of the container as the user lbproxy
# with the installed lbproxy.service's sandbox; its output and exit status are COMMAND's.
as_lbproxy() {
    in_container systemd-run --quiet --wait --pipe --collect \
        -p User=lbproxy "${sandbox_properties[@]}" -- "$@" </dev/null
}

# manager_call METHOD SIGNATURE ARGS...: a call on systemd's manager object as the user lbproxy,
# without interactive authorization (as the proxy's zbus client makes it).
manager_call() {
    as_lbproxy busctl --system --allow-interactive-authorization=no call \
        org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager "$@"
}

expect_allowed() { # METHOD SIGNATURE ARGS...
    local out
    out=$(manager_call "$@" 2>&1) || fail "$1 ${*:3} as lbproxy was refused: $out"
    echo "allowed: $1 ${*:3}"
}

expect_refused() { # METHOD SIGNATURE ARGS...
    local out
    if out=$(manager_call "$@" 2>&1); then fail "$1 ${*:3} as lbproxy was allowed: $out"; fi
    case "$out" in
    *"Interactive authentication required."* | *"Access denied"*) ;;
    *) fail "$1 ${*:3} as lbproxy failed, but not as a refusal: $out" ;;
    esac
    echo "refused: $1 ${*:3} (${out#Call failed: })"
}

prop() { in_container systemctl show -P "$2" "$1"; }

# wait_until WHAT COMMAND...: polls COMMAND until it succeeds, for at most POLKIT_TIMEOUT seconds.
wait_until() {
    local what=$1 deadline=$((SECONDS + POLKIT_TIMEOUT))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || fail "not after ${POLKIT_TIMEOUT}s: $what"
        sleep 0.2
    done
}
unit_is() { [ "$(in_container systemctl is-active "$1" || true)" = "$2" ]; }
# restarted UNIT INVOCATION-ID: UNIT is active with another InvocationID than the one given.
restarted() {
    local now
    now=$(prop "$1" InvocationID) && [ -n "$now" ] && [ "$now" != "$2" ] && unit_is "$1" active
}

check_polkit_rule() {
    local pid uid account verb inv other_inv line start=$SECONDS
    pid=$(in_container systemctl show -P MainPID lbproxy.service)
    uid=$(in_container awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    echo "--- lbproxy.service runs as the packaged system user"
    account=$(in_container getent passwd "$uid") || fail "uid $uid of lbproxy.service has no name"
    echo "$account"
    [[ $account == lbproxy:* ]] || fail "lbproxy.service runs as $account, not as the user lbproxy"

    echo "--- pkcheck for lbproxy.service's process (pid $pid)"
    for verb in start stop restart set-property; do
        pk_allows "$pid" api@7.service "$verb" || fail "polkit refuses $verb of api@7.service to lbproxy"
        echo "granted: $verb api@7.service"
    done
    for line in "api@7.service reload" "api@7.service try-restart" "api@7.service reload-or-restart" \
        "api@7.service kill" "api@7.service reset-failed" "api@7.service enable" "api@.service start" \
        "api.target start" "other.service restart" "lbproxy.service stop" "xapi@7.service start" \
        "api@7.service.bak start"; do
        # shellcheck disable=SC2086 # two words: unit and verb
        if pk_allows "$pid" $line; then fail "polkit grants lbproxy: $line"; fi
        echo "not granted: ${line#* } ${line%% *}"
    done

    echo "--- D-Bus calls as lbproxy, in lbproxy.service's sandbox"
    sandbox_properties=()
    while IFS= read -r line; do
        sandbox_properties+=(-p "$line")
    done < <(in_container sed -n '/^DynamicUser=/,/^\[/{/^[A-Za-z]/p}' /usr/lib/systemd/system/lbproxy.service)
    [ ${#sandbox_properties[@]} -gt 40 ] || fail "lbproxy.service's hardening block not found: ${sandbox_properties[*]}"
    echo "systemd-run -p User=lbproxy ${sandbox_properties[*]}"
    [ "$(as_lbproxy id -u)" = "$uid" ] || fail "the transient service does not run as lbproxy.service's uid $uid"
    # PrivateUsers=: the service sees only itself and root in its user namespace; dbus-daemon (and
    # so polkitd) gets its real uid from the socket's credentials.
    as_lbproxy cat /proc/self/uid_map
    in_container systemctl start other.service
    other_inv=$(prop other.service InvocationID)

    inv=$(prop api@1.service InvocationID)
    expect_allowed RestartUnit ss api@1.service replace
    wait_until "api@1 restarted (a new InvocationID) and active" restarted api@1.service "$inv"
    expect_allowed StopUnit ss api@2.service replace
    wait_until "api@2 stopped" unit_is api@2.service inactive
    expect_allowed StartUnit ss api@2.service replace
    wait_until "api@2 started" unit_is api@2.service active
    expect_allowed SetUnitProperties 'sba(sv)' api@1.service true 1 MemoryMax t 104857600
    [ "$(prop api@1.service MemoryMax)" = 104857600 ] || fail "MemoryMax of api@1 is $(prop api@1.service MemoryMax)"
    in_container systemctl show -p MemoryMax api@1.service

    inv=$(prop api@1.service InvocationID)
    expect_refused RestartUnit ss other.service replace
    expect_refused StopUnit ss other.service replace
    expect_refused SetUnitProperties 'sba(sv)' other.service true 1 MemoryMax t 104857600
    expect_refused StopUnit ss lbproxy.service replace
    expect_refused StartUnit ss api.target replace
    expect_refused TryRestartUnit ss api@1.service replace
    expect_refused KillUnit ssi api@1.service main 18 # SIGCONT: harmless had it passed
    unit_is other.service active || fail "other.service is not active after the refused calls"
    [ "$(prop other.service InvocationID)" = "$other_inv" ] || fail "other.service was restarted"
    [ "$(prop other.service MemoryMax)" = infinity ] || fail "other.service got a MemoryMax"
    [ "$(prop api@1.service InvocationID)" = "$inv" ] || fail "api@1 was restarted by a refused call"
    unit_is lbproxy.service active || fail "lbproxy.service stopped"

    echo "--- another user (nobody), same call: refused (the rule names the user)"
    local out
    if out=$(in_container systemd-run --quiet --wait --pipe --collect -p User=nobody -- \
        busctl --system --allow-interactive-authorization=no call org.freedesktop.systemd1 \
        /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager RestartUnit ss api@1.service replace \
        </dev/null 2>&1); then
        fail "nobody may restart api@1.service: $out"
    fi
    [[ $out == *"Interactive authentication required."* ]] || fail "refused for another reason: $out"
    echo "refused: $out"

    echo "--- another template instead of api@ (the example rule in /etc, as documented)"
    in_container cp /usr/share/lbproxy/examples/polkit-other-template.rules \
        /etc/polkit-1/rules.d/49-lbproxy-local.rules
    # polkitd reloads its rules when the directory changes.
    wait_until "polkitd applies 49-lbproxy-local.rules" pk_allows "$pid" myapi@1.service restart
    if pk_allows "$pid" api@1.service restart; then fail "api@N still granted beside the local rule"; fi
    if pk_allows "$pid" myapi@1.service kill; then fail "the local rule grants kill"; fi
    echo "granted: myapi@1.service restart; not granted: api@1.service restart, myapi@1.service kill"
    in_container rm /etc/polkit-1/rules.d/49-lbproxy-local.rules
    wait_until "polkitd drops 49-lbproxy-local.rules" pk_allows "$pid" api@1.service restart
    echo "local rule removed: api@N granted again"
    echo "polkit checks: $((SECONDS - start))s"
}
