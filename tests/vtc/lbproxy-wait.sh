#!/bin/sh
# Used by the .vtc files: waits until the lbproxy started by a `process` block logs that its
# listener is bound (`listener http: http://ADDRESS/`), polling its stderr (the file
# ${pNAME_err}) every 20 ms for up to 10 s. Fails at once, showing the log, if the proxy exits
# (a config error, or the port the test reserved was taken meanwhile), and after 10 s if it never
# listens.
#
#   lbproxy-wait.sh STDERR_FILE ADDRESS:PORT PID
set -eu
log=$1
address=$2
pid=$3
tries=0
while ! grep -q "listener http: http://$address/" "$log" 2>/dev/null; do
    tries=$((tries + 1))
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 500 ]; then
        echo "lbproxy (pid $pid) did not log 'listener http: http://$address/'; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.02
done
