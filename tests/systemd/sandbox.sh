#!/usr/bin/env bash
# A real systemd user manager and journald for the tests, seen by nothing else on the machine.
#
#   tests/systemd/sandbox.sh start DIR
#
# runs in the foreground until its standard input closes (the test ends, or dies), then kills
# everything it started and exits. DIR is the sandbox's private HOME. Once the manager is up it
# prints one line, `READY PID`: run commands inside with
#
#   nsenter --target PID --mount --cgroup --net -- env HOME=DIR XDG_RUNTIME_DIR=/run/user/0 \
#       systemctl --user …
#
# How: a cgroup of its own (cgroup v2) holds every process started here, so teardown is one write
# to cgroup.kill. Inside new mount, cgroup and network namespaces:
# - a tmpfs on /run, with /run/systemd/system (systemd refuses to run a user manager without it:
#   "system not booted with systemd"), /run/systemd/inaccessible (the nodes PID 1 makes for
#   sandboxing) and /run/user/0 as XDG_RUNTIME_DIR; a tmpfs on
#   /var/log/journal, so journald cannot write to the machine's journal;
# - /sys/fs/cgroup remounted as this sandbox's cgroup v2 tree, laid out as on a booted system
#   (system.slice/systemd-journald.service, user.slice/user-0.slice/user@0.service), so journald
#   files each log line under _SYSTEMD_USER_UNIT and `journalctl --user-unit` works;
# - a loopback interface of its own: the units use their real fixed ports (8001-8003, 8080)
#   without meeting anything else on the machine, or another sandbox.
# The unit files come from DIR/.config/systemd/user; the machine's and the user's real unit
# directories are never written.
set -euo pipefail

die() { echo "sandbox.sh: $*" >&2; exit 1; }

cgroup2_root() {
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup
    elif [ -d /sys/fs/cgroup/unified ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified)" = cgroup2fs ]; then
        echo /sys/fs/cgroup/unified
    else die "no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)"
    fi
}

# Kills every process in cgroup $1 and removes it with its children.
remove_cgroup() {
    local cg=$1
    [ -d "$cg" ] || return 0
    echo 1 > "$cg/cgroup.kill" 2>/dev/null || true
    for _ in $(seq 100); do
        grep -q '^populated 0' "$cg/cgroup.events" 2>/dev/null && break
        sleep 0.05
    done
    find "$cg" -depth -mindepth 0 -type d -exec rmdir {} + 2>/dev/null || true
}

wait_for() { # SECONDS WHAT COMMAND…
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what"
        sleep 0.05
    done
}

start() {
    local home=$1
    [ "$(id -u)" -eq 0 ] || die "must run as root (mount and cgroup namespaces)"
    for tool in unshare nsenter ip systemctl journalctl; do
        command -v $tool >/dev/null || die "$tool is missing (tests/run.sh installs it)"
    done
    for program in /usr/lib/systemd/systemd /usr/lib/systemd/systemd-journald; do
        [ -x $program ] || die "$program is missing: apt-get install systemd"
    done
    mkdir -p "$home"

    local root; root=$(cgroup2_root)
    local parent="$root$(sed -n 's/^0:://p' /proc/self/cgroup)"
    # Sandboxes whose owner died without cleaning up (killed with SIGKILL).
    for stale in "$parent"/lbproxy-sandbox-*; do
        [ -d "$stale" ] || continue
        kill -0 "${stale##*-}" 2>/dev/null || remove_cgroup "$stale"
    done
    CGROUP="$parent/lbproxy-sandbox-$$"
    mkdir "$CGROUP"
    trap 'remove_cgroup "$CGROUP"' EXIT
    trap 'exit 1' TERM INT HUP

    (
        echo $BASHPID > "$CGROUP/cgroup.procs"
        exec unshare --mount --cgroup --net --propagation private -- "$0" inside "$home"
    ) &
    local inside=$!
    disown $inside # killed through cgroup.kill at the end; no "Killed" notice from bash
    # Until the test closes our stdin (or the inside ends on its own, having failed).
    local rc
    while kill -0 $inside 2>/dev/null; do
        rc=0
        read -r -t 1 _ || rc=$?
        [ $rc -eq 0 ] || [ $rc -gt 128 ] || break # 1: end of input
    done
}

inside() {
    local home=$1 log=$1/sandbox.log
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    mount -t tmpfs -o mode=0755 tmpfs /run
    [ -d /var/log/journal ] && mount -t tmpfs tmpfs /var/log/journal
    mkdir -p /run/systemd/system /run/systemd/journal /run/log/journal /run/user/0
    chmod 0700 /run/user/0
    # What PID 1 creates at boot and sandboxing options (ProtectHome=, InaccessiblePaths=) mount
    # over what they hide.
    local hidden=/run/systemd/inaccessible
    mkdir -p $hidden && mkdir -m 0000 $hidden/dir && install -m 0000 /dev/null $hidden/reg
    mkfifo -m 0000 $hidden/fifo && mknod -m 0000 $hidden/chr c 0 0 && mknod -m 0000 $hidden/blk b 0 0
    ip link set lo up

    local cg=/sys/fs/cgroup
    mkdir -p $cg/init.scope $cg/system.slice/systemd-journald.service \
        $cg/user.slice/user-0.slice/user@0.service
    echo $$ > $cg/init.scope/cgroup.procs

    (
        echo $BASHPID > $cg/system.slice/systemd-journald.service/cgroup.procs
        exec /usr/lib/systemd/systemd-journald
    ) >>"$log" 2>&1 &
    wait_for 10 "journald's socket" test -S /run/systemd/journal/socket

    (
        echo $BASHPID > $cg/user.slice/user-0.slice/user@0.service/cgroup.procs
        exec env -i HOME="$home" USER=root LOGNAME=root XDG_RUNTIME_DIR=/run/user/0 \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            /usr/lib/systemd/systemd --user --log-target=journal
    ) >>"$log" 2>&1 &
    wait_for 30 "the user manager" test -S /run/user/0/systemd/private
    HOME="$home" XDG_RUNTIME_DIR=/run/user/0 timeout 30 systemctl --user is-system-running --wait \
        >>"$log" 2>&1 || true

    echo "READY $$"
    exec >>"$log" 2>&1
    wait
}

case "${1:-}" in
    start) start "${2:?usage: sandbox.sh start DIR}" ;;
    inside) inside "$2" ;;
    *) die "usage: sandbox.sh start DIR" ;;
esac
