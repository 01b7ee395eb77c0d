"""Runs the fault-under-load scenarios and prints one verdict each; exit status 1 if any FAILs.

    python3 loadtest/run.py [--seconds N] [--bin-dir DIR] [SCENARIO|soak|soak-2min|chaos|autoscale ...]

Without names it runs the fault scenarios (scenarios.py). The soak (`soak`: an hour;
`soak-2min`: the test suite's two minutes), the chaos scenarios (`chaos-*`, or `chaos` for all
of them; root) and `autoscale` (autoscale.py: `lbproxy up --autoscale` under stepped oha load)
run only when named. `--seconds` overrides each one's own duration (autoscale: the step length).
"""

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoscale import autoscale  # noqa: E402
from chaos import CHAOS  # noqa: E402
import harness  # noqa: E402
from harness import Result, set_bin_dir, set_results_dir  # noqa: E402
from scenarios import SCENARIOS, SECONDS  # noqa: E402
from soak import soak_hour, soak_two_minutes  # noqa: E402

# Every scenario takes its duration in seconds, or None for its own default.
ALL = {name: (lambda seconds, run=run: run(seconds or SECONDS)) for name, run in SCENARIOS.items()}
ALL |= {"soak": soak_hour, "soak-2min": soak_two_minutes, "autoscale": autoscale} | CHAOS
GROUPS = {"chaos": list(CHAOS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"one of {', '.join(ALL)}, or chaos (default: {', '.join(SCENARIOS)})")
    parser.add_argument("--seconds", type=int, default=None,
                        help=f"load duration per scenario (default {SECONDS}; soak 3600, soak-2min 120; "
                             "autoscale: seconds per step, default 15)")
    parser.add_argument("--bin-dir", type=Path, default=None,
                        help="where lbproxy and lbproxy-demo-api are (default target/release)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where the results go (default loadtest/results)")
    args = parser.parse_args()
    if args.results_dir is not None:
        set_results_dir(args.results_dir)
    if args.bin_dir is not None:
        set_bin_dir(args.bin_dir)
    names = [n for name in (args.scenarios or list(SCENARIOS)) for n in GROUPS.get(name, [name])]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(ALL)}, chaos")
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            result = ALL[name](args.seconds)
        except Exception:
            result = Result(name, "crashed")
            result.notes.append(traceback.format_exc())
        result.write()
        results.append(result)
        print(result.summary(), flush=True)
    write_summary(results)
    failed = [r.scenario for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} of {len(results)} scenarios passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def write_summary(latest):
    """RESULTS.md from every scenario's latest result file (this run's and earlier ones)."""
    import json
    from harness import Result as R
    known = {r.scenario: r for r in latest}
    for path in sorted(harness.RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        known.setdefault(data["scenario"], R(**data))
    results = [known[name] for name in ALL if name in known]
    lines = ["# Faults under load: results", "",
             "| scenario | verdict | requests | req/s | failed | p50 | p99 | what |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        load = r.load
        lat = load.get("latency_ms", {})
        failed = sum(load.get("errors", {}).values()) if load else "-"
        lines.append(f"| {r.scenario} | {'PASS' if r.passed else 'FAIL'} | {load.get('requests', '-')} | "
                     f"{load.get('rps', 0):.0f} | {failed} | {lat.get('p50', '-')} ms | "
                     f"{lat.get('p99', '-')} ms | {r.description} |")
    lines += ["", "Each row's details (errors by kind, checks, the exact wrk command) are in",
              "`results/<scenario>.json`. A chaos row's failed requests are the proxy's documented",
              "answers to the fault (504 after `upstream_response`), which the scenario's checks bound;",
              "a soak's are those outside the injected faults (see README.md). Plots: `results/soak*.png`,",
              "`results/autoscale.png`."]
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
