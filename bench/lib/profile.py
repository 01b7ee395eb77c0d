"""Profiles lbproxy's L7 keep-alive hot path (bench/profile.sh): the same backend and pinning as
the benchmark, one lbproxy worker, small keep-alive GETs.

- callgrind: lbproxy under `valgrind --tool=callgrind`, driven by oha at a fixed small rate (the
  run is ~50× slower under valgrind); instruction counts are repeatable, so before/after changes
  compare exactly. Output: the callgrind.out files and callgrind-top.txt (self and inclusive
  instructions per function, instructions per request).
- perf: `perf record -e cpu-clock` on the running lbproxy while wrk saturates it; flat profile
  with the kernel's share (user-space instructions are only part of the cost).
"""

import argparse
import os
import signal
import subprocess
import time

import callgrind_top
import configs
import loadgen
from layout import PORT_BASE, Layout
from procs import Process, stop_all, wait_until_serving
from targets import start_backend

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# `--route`: what the profiled listener's one route does besides forwarding, to price each
# routing feature of docs/config.md against `plain` (a route that only forwards). Every variant
# sends the same requests to the same backend paths, so the difference is the feature's cost.
ROUTES = {
    "plain": """
[[listener.bench_http.route]]
path_prefix = "/"
upstream = "bench"
""",
    "match": """
[[listener.bench_http.route]]
path_regex = "^/(small|upload)$"
methods = ["GET", "POST"]
headers = { "x-canary" = false }
query = { debug = false }
upstream = "bench"
""",
    "rewrite": """
[[listener.bench_http.route]]
path_prefix = "/"
rewrite_regex = ["^/(small|upload)$", "/{1}"]
upstream = "bench"
""",
    "headers": """
[[listener.bench_http.route]]
path_prefix = "/"
upstream = "bench"
[listener.bench_http.route.request_headers]
remove = ["X-Debug"]
set = { "X-Env" = "bench" }
add = { "X-Client" = "{client_ip}" }
[listener.bench_http.route.response_headers]
remove = ["Server"]
add = { "X-Served-By" = "{backend}" }
""",
    # Traffic policy, each check passed: what a request pays for them (compare `plain`).
    "rate_limit": """
[[listener.bench_http.route]]
path_prefix = "/"
upstream = "bench"
rate_limits = ["bench_per_client"]
[rate_limit.bench_per_client]
rate = "10000000/s"
burst = 10000000
""",
    "policy": """
[[listener.bench_http.route]]
path_prefix = "/"
upstream = "bench"
access = { allow = ["127.0.0.0/8"], deny = ["10.0.0.0/8"] }
rate_limits = ["bench_per_client"]
[rate_limit.bench_per_client]
rate = "10000000/s"
burst = 10000000
[listener.bench_http.connection_limits]
max = 20000
per_client = 20000
""",
}

# Keys a `--route` variant adds to the listener itself (beside its route).
LISTENER_KEYS = {
    "policy": 'trusted_proxies = ["10.0.0.0/8"]\n',
}


def lbproxy_config(layout, port, driver, route):
    """The benchmark's lbproxy configuration; with `route`, its catch-all becomes that route."""
    text = configs.lbproxy(layout, {"http": port}, set(), driver)
    if route is None:
        return text
    listener_keys = LISTENER_KEYS.get(route, "")
    text = text.replace('protocol = "http"\nupstream = "bench"\n',
                        'protocol = "http"\n' + listener_keys, 1)
    return text + ROUTES[route]


def start_lbproxy(layout, binary, wrapper, driver, route=None):
    port = Layout.target_port(0, "http")
    path = layout.path("profile-lbproxy.conf")
    with open(path, "w") as f:
        f.write(lbproxy_config(layout, port, driver, route))
    process = Process("lbproxy", wrapper + [binary, "serve", "-c", path], layout.proxy_cpu_list,
                      layout.path("profile-lbproxy.log"), env={"LBPROXY_LOG": "error"})
    wait_until_serving(process, port, deadline_s=60)
    return process, port


def callgrind(layout, binary, out, driver, rate, seconds, post_bytes=0, route=None):
    data = os.path.join(out, "callgrind.out")
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}", "--dump-instr=no",
               "--collect-jumps=no"]
    process, port = start_lbproxy(layout, binary, wrapper, driver, route)
    body = None
    url = f"http://127.0.0.1:{port}/small"
    if post_bytes:
        body = layout.path(f"post-{post_bytes}.bin")
        with open(body, "wb") as f:
            f.write(b"x" * post_bytes)
        url = f"http://127.0.0.1:{port}/upload"
    loadgen.oha(url, 10, 2, rate, body)  # warm the pool and the allocator first
    subprocess.run(["callgrind_control", "--zero", str(process.pid)], capture_output=True, check=True)
    figures = loadgen.oha(url, 10, seconds, rate, body)
    subprocess.run(["callgrind_control", "--dump=measured", str(process.pid)], capture_output=True,
                   check=True)
    process.popen.send_signal(signal.SIGTERM)
    process.popen.wait(timeout=60)
    dumps = sorted(f for f in os.listdir(out) if f.startswith("callgrind.out") and f != "callgrind.out")
    measured = os.path.join(out, dumps[-1]) if dumps else data
    self_cost, inclusive, instructions = callgrind_top.parse(measured)
    per_request = instructions / max(figures["requests"], 1)
    with open(os.path.join(out, "callgrind-top.txt"), "w") as f:
        what = f"{post_bytes}-byte POSTs" if post_bytes else "GETs"
        if route is not None:
            what += f" (route: {route})"
        f.write(f"lbproxy (one worker), {figures['requests']} keep-alive {what} at {rate} req/s: "
                f"{per_request:,.0f} instructions per request (user space)\n\n")
        f.write(callgrind_top.table(self_cost, instructions, 40, "Self cost") + "\n\n")
        f.write(callgrind_top.table(inclusive, instructions, 60, "Inclusive cost") + "\n")
    return {"requests": figures["requests"], "instructions_per_request": per_request}


def perf(layout, binary, out, driver, seconds, path):
    process, port = start_lbproxy(layout, binary, [], driver)
    url = f"http://127.0.0.1:{port}{path}"
    connections = 50 if path == "/small" else 10
    loadgen.wrk(url, connections, 1)
    data = os.path.join(out, "perf.data")
    recorder = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-o", data,
                                 "-p", str(process.pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    figures = loadgen.wrk(url, connections, seconds)
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=60)
    process.stop()
    with open(os.path.join(out, "perf-flat.txt"), "w") as f:
        for sort, limit in (("dso", "0.5"), ("dso,symbol", "0.4")):
            f.write(subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                                    "--stdio", "--percent-limit", limit],
                                   capture_output=True, text=True).stdout)
    return {"rps": figures["rps"]}


def main():
    p = argparse.ArgumentParser(prog="bench/profile.sh")
    p.add_argument("--lbproxy", required=True)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "profile"))
    p.add_argument("--driver", default="auto")
    p.add_argument("--tool", choices=["callgrind", "perf", "both"], default="both")
    p.add_argument("--rate", type=int, default=1000, help="req/s offered under callgrind")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--post", type=int, default=0, metavar="BYTES",
                   help="under callgrind, POST bodies of BYTES to /upload instead of GETs")
    p.add_argument("--path", default="/small", choices=["/small", "/1m"],
                   help="what wrk fetches under perf (the 128-byte or the 1 MiB file)")
    p.add_argument("--route", choices=sorted(ROUTES), default=None,
                   help="under callgrind, the listener's one route does this (default: the "
                        "catch-all upstream of the benchmark)")
    p.add_argument("--workdir", default=f"/tmp/lbproxy-bench-{os.getuid()}-{PORT_BASE}")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for stale in os.listdir(args.out):
        if stale.startswith("callgrind.out"):
            os.remove(os.path.join(args.out, stale))
    os.makedirs(args.workdir, exist_ok=True)
    layout = Layout.create(args.workdir, 1 << 20)
    layout.pin_harness()
    start_backend(layout)
    try:
        if args.tool in ("callgrind", "both"):
            figures = callgrind(layout, args.lbproxy, args.out, args.driver, args.rate, args.seconds,
                                args.post, args.route)
            print(f"callgrind: {figures['requests']} requests, "
                  f"{figures['instructions_per_request']:,.0f} instructions per request "
                  f"(user space, lbproxy process); tables in {args.out}/callgrind-*.txt")
        if args.tool in ("perf", "both"):
            figures = perf(layout, args.lbproxy, args.out, args.driver, args.seconds, args.path)
            print(f"perf: {figures['rps']:,.0f} req/s during the recording; flat profile in "
                  f"{args.out}/perf-flat.txt")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
