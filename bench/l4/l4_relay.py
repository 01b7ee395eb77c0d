#!/usr/bin/env python3
"""L4 relay benchmark: 1 GiB transfers through a tcp listener, per relay mode and io driver,
with HAProxy (`mode tcp`, splice on) as the reference and a direct connection as the floor.

For every run and every target (interleaved, so machine noise spreads over all of them): start
the proxy, warm it up with a 64 MiB transfer, then time one 1 GiB transfer client -> proxy ->
sink and read the proxy's CPU time (utime + stime of every thread, /proc/PID/stat) before and
after. Prints one line per measurement and, at the end, a Markdown table of medians; writes every
measurement to a JSON file.

Usage: l4_relay.py --lbproxy BIN [--lbproxy-variant NAME=BIN ...] [--runs 5] [--size-mib 1024]
                   [--json out.json]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CHUNK = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sink(listener):
    """Reads each connection to its end, then closes it (the client waits for that close)."""
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def drain(conn):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with conn:
        while conn.recv_into(view):
            pass


def transfer(port, size):
    """Sends `size` bytes, half-closes, and waits for the sink's close: seconds taken."""
    block = memoryview(os.urandom(CHUNK))
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            s.sendall(block[:n])
            sent += n
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return time.perf_counter() - start


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def lbproxy_config(port, sink_port, driver, relay):
    return f"""[runtime]
workers = 1
driver = "{driver}"
pin_workers = false

[admin]
address = "127.0.0.1:0"

[listener.tcp]
address = "127.0.0.1:{port}"
protocol = "tcp"
relay = "{relay}"
upstream = "sink"

[upstream.sink]
backends = ["127.0.0.1:{sink_port}"]
"""


def haproxy_config(port, sink_port):
    return f"""global
    nbthread 1
    maxconn 1000

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option splice-request
    option splice-response

frontend relay
    bind 127.0.0.1:{port}
    default_backend sink

backend sink
    server s1 127.0.0.1:{sink_port}
"""


def start_target(target, sink_port, workdir):
    """(process or None, port) for `target`."""
    if target["kind"] == "direct":
        return None, sink_port
    port = free_port()
    path = os.path.join(workdir, f"{target['name'].replace('/', '_')}.cfg")
    if target["kind"] == "haproxy":
        with open(path, "w") as f:
            f.write(haproxy_config(port, sink_port))
        argv = ["haproxy", "-f", path, "-db"]
    else:
        with open(path, "w") as f:
            f.write(lbproxy_config(port, sink_port, target["driver"], target["relay"]))
        argv = [target["bin"], "serve", "-c", path]
    env = dict(os.environ, LBPROXY_LOG="warn")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_port(port, proc)
    return proc, port


def measure(target, sink_port, size, workdir):
    proc, port = start_target(target, sink_port, workdir)
    try:
        transfer(port, 64 << 20)
        before = cpu_seconds(proc.pid) if proc else 0.0
        seconds = transfer(port, size)
        after = cpu_seconds(proc.pid) if proc else 0.0
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    gib = size / (1 << 30)
    return {
        "target": target["name"],
        "seconds": seconds,
        "gib_per_s": gib / seconds,
        "cpu_s_per_gib": (after - before) / gib,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lbproxy", required=True, help="release lbproxy binary")
    parser.add_argument("--lbproxy-variant", action="append", default=[],
                        help="NAME=BIN: another lbproxy build, measured with relay=splice on io_uring")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-haproxy", action="store_true")
    args = parser.parse_args()

    targets = [{"name": "direct (no proxy)", "kind": "direct"}]
    for driver in ["io_uring", "legacy"]:
        for relay in ["splice", "copy"]:
            targets.append({"name": f"lbproxy {relay} / {driver}", "kind": "lbproxy",
                            "bin": args.lbproxy, "driver": driver, "relay": relay})
    for variant in args.lbproxy_variant:
        name, path = variant.split("=", 1)
        for relay in ["splice", "copy"]:
            targets.append({"name": f"{name} {relay} / io_uring", "kind": "lbproxy",
                            "bin": path, "driver": "io_uring", "relay": relay})
    if not args.no_haproxy:
        targets.append({"name": "haproxy 2.6 splice", "kind": "haproxy"})

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    sink_port = listener.getsockname()[1]
    threading.Thread(target=sink, args=(listener,), daemon=True).start()

    size = args.size_mib << 20
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for run in range(args.runs):
            for target in targets:
                result = measure(target, sink_port, size, workdir)
                result["run"] = run
                results.append(result)
                print(f"run {run}  {result['target']:32s} {result['gib_per_s']:6.2f} GiB/s  "
                      f"{result['cpu_s_per_gib']:6.3f} CPU-s/GiB", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size_bytes": size, "runs": args.runs, "results": results}, f, indent=1)

    print()
    print(f"| target | GiB/s (median of {args.runs}) | min–max | proxy CPU-s per GiB (median) | min–max |")
    print("|---|---|---|---|---|")
    for target in targets:
        rows = [r for r in results if r["target"] == target["name"]]
        rate = [r["gib_per_s"] for r in rows]
        cpu = [r["cpu_s_per_gib"] for r in rows]
        cpu_text = "—" if target["kind"] == "direct" else f"{statistics.median(cpu):.3f}"
        cpu_range = "—" if target["kind"] == "direct" else f"{min(cpu):.3f}–{max(cpu):.3f}"
        print(f"| {target['name']} | {statistics.median(rate):.2f} | {min(rate):.2f}–{max(rate):.2f} "
              f"| {cpu_text} | {cpu_range} |")

    # Paired: splice against copy within each run (measured back to back), which cancels much
    # of the machine's drift between runs.
    print()
    print("| driver | splice ÷ copy, GiB/s (median of per-run ratios) | splice ÷ copy, CPU-s per GiB |")
    print("|---|---|---|")
    for driver in ["io_uring", "legacy"]:
        rates, cpus = [], []
        for run in range(args.runs):
            by_relay = {r["target"]: r for r in results if r["run"] == run}
            splice = by_relay[f"lbproxy splice / {driver}"]
            copy = by_relay[f"lbproxy copy / {driver}"]
            rates.append(splice["gib_per_s"] / copy["gib_per_s"])
            cpus.append(splice["cpu_s_per_gib"] / copy["cpu_s_per_gib"])
        print(f"| {driver} | {statistics.median(rates):.2f} ({min(rates):.2f}–{max(rates):.2f}) "
              f"| {statistics.median(cpus):.2f} ({min(cpus):.2f}–{max(cpus):.2f}) |")


if __name__ == "__main__":
    sys.exit(main())
