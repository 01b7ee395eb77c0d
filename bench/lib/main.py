"""bench/: runs every scenario against direct, lbproxy, nginx and HAProxy and writes the report.

Started by bench/run.sh (which installs the tools and builds lbproxy first); see bench/README.md.
Flow: lay out the work directory (files, certificate) → pin this process off the proxy core →
start the static backend → for each scenario: start every target pinned to the proxy core,
measure (scenarios.py), stop them → results.json → RESULTS.md and charts (report.py, charts.py).
"""

import argparse
import json
import os
import sys
import time

import charts
import machine
import report
from layout import BACKEND_PORTS, BACKEND_TLS_PORT, PORT_BASE, Layout
from procs import port_is_free, stop_all
from scenarios import SCENARIOS, Settings, now, run_scenario
from targets import Direct, Haproxy, Lbproxy, Nginx, start_backend

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FULL = Settings(runs=3, duration_s=6, warmup_s=1, connections=50, large_connections=10,
                idle_connections=10_000, fixed_rate=10_000, l4_transfers=2)
QUICK = Settings(runs=1, duration_s=1, warmup_s=0, connections=10, large_connections=4,
                 idle_connections=200, fixed_rate=500, l4_transfers=1)
FULL_L4_BYTES = 1 << 30
QUICK_L4_BYTES = 64 << 20


def parse_args():
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.splitlines()[0])
    p.add_argument("--lbproxy", required=True, help="the lbproxy binary to measure")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: one short run of everything, small sizes")
    p.add_argument("--out", help="output folder (default bench/results, or target/bench-quick)")
    p.add_argument("--runs", type=int, help="rounds per scenario (medians are reported)")
    p.add_argument("--duration", type=int, help="seconds per load run")
    p.add_argument("--scenarios", help="comma-separated subset of: "
                   + ", ".join(s.key for s in SCENARIOS))
    p.add_argument("--targets", default="direct,lbproxy,nginx,haproxy",
                   help="comma-separated subset of direct, lbproxy, nginx, haproxy")
    p.add_argument("--driver", default="auto", choices=["auto", "io_uring", "legacy"],
                   help="lbproxy's io driver")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=BINARY[@DRIVER]",
                   help="also measure another lbproxy build (e.g. before=/tmp/lbproxy-base "
                        "or epoll=target/release/lbproxy@legacy); repeatable")
    p.add_argument("--rate", type=int, help="offered req/s of the fixed-rate scenario")
    p.add_argument("--idle", type=int, help="idle connections in the memory scenario")
    p.add_argument("--workdir", default=f"/tmp/lbproxy-bench-{os.getuid()}-{PORT_BASE}")
    return p.parse_args()


def main():
    args = parse_args()
    settings = QUICK if args.quick else FULL
    overrides = {"runs": args.runs, "duration_s": args.duration, "fixed_rate": args.rate,
                 "idle_connections": args.idle}
    settings = Settings(**{**settings.__dict__,
                           **{k: v for k, v in overrides.items() if v is not None}})
    out = args.out or (os.path.join(REPO, "target", "bench-quick") if args.quick
                       else os.path.join(REPO, "bench", "results"))
    os.makedirs(out, exist_ok=True)
    wanted = args.scenarios.split(",") if args.scenarios else [s.key for s in SCENARIOS]
    unknown = set(wanted) - {s.key for s in SCENARIOS}
    if unknown:
        sys.exit(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}")
    scenarios = [s for s in SCENARIOS if s.key in wanted]

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    os.makedirs(args.workdir, exist_ok=True)
    layout = Layout.create(args.workdir, QUICK_L4_BYTES if args.quick else FULL_L4_BYTES)
    layout.pin_harness()
    ports = list(BACKEND_PORTS) + [BACKEND_TLS_PORT]
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        sys.exit(f"bench: port(s) {busy} are in use; is another benchmark running?")

    targets = build_targets(args, layout)
    description = machine.describe(args.lbproxy, REPO)
    log(f"proxy core: {layout.proxy_cpu}; backend, load generators and harness: "
        f"{layout.other_cpu_list}; work directory {layout.workdir}")
    for target in targets:
        for feature, reason in target.unsupported.items():
            if target.kind == "proxy" and isinstance(target, Lbproxy):
                log(f"{target.name}: {feature} {reason}")

    started = time.monotonic()
    results = {"started": now(), "quick": args.quick, "settings": settings.__dict__,
               "machine": description, "pinning": {
                   "proxy_cpu": layout.proxy_cpu, "other_cpus": layout.other_cpus},
               "invocation": os.environ.get("BENCH_INVOCATION", " ".join(sys.argv)), "scenarios": []}
    backend = start_backend(layout)
    results["backend_command"] = backend.command
    try:
        for scenario in scenarios:
            log(f"{scenario.key}: {scenario.title}")
            for target in targets:
                target.start()
            try:
                results["scenarios"].append(run_scenario(scenario, settings, targets, log))
            finally:
                for target in targets:
                    target.stop()
    finally:
        stop_all()
    results["elapsed_s"] = time.monotonic() - started
    save_configs(layout, targets, out)

    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    chart_files = charts.draw(results, out)
    report.write(results, out, chart_files)
    log(f"wrote {os.path.join(out, 'RESULTS.md')} in {results['elapsed_s']:.0f}s")
    failures = [(s["key"], r["label"]) for s in results["scenarios"] for r in s["rows"]
                if r.get("failures")]
    if failures:
        log("runs that failed: " + ", ".join(f"{k}/{label}" for k, label in failures))
        sys.exit(1)


def build_targets(args, layout):
    names = args.targets.split(",")
    targets = []
    for name in names:
        index = len(targets)
        if name == "direct":
            targets.append(Direct("direct", index, layout))
        elif name == "lbproxy":
            targets.append(Lbproxy("lbproxy", index, layout, args.lbproxy, args.driver))
        elif name == "nginx":
            targets.append(Nginx("nginx", index, layout))
        elif name == "haproxy":
            targets.append(Haproxy("haproxy", index, layout))
        else:
            sys.exit(f"bench: unknown target {name!r}")
    for spec in args.compare:
        name, _, binary = spec.partition("=")
        binary, _, driver = binary.partition("@")
        if not name or not binary:
            sys.exit(f"bench: --compare wants NAME=BINARY[@DRIVER], got {spec!r}")
        targets.append(Lbproxy(name, len(targets), layout, binary, driver or args.driver))
    return targets


def save_configs(layout, targets, out):
    """The exact configs that ran, next to the report."""
    folder = os.path.join(out, "configs")
    os.makedirs(folder, exist_ok=True)
    for name in ["backend"] + [t.name for t in targets if t.kind != "direct"]:
        source = layout.path(f"{name}.conf")
        if os.path.exists(source):
            with open(source) as f:
                text = f.read().replace(layout.workdir, "$WORKDIR")
            with open(os.path.join(folder, f"{name}.conf"), "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
