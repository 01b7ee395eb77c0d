"""Runs the fault-under-load scenarios and prints one verdict each; exit status 1 if any FAILs.

    python3 loadtest/run.py [--seconds N] [SCENARIO ...]
"""

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import RESULTS, Result  # noqa: E402
from scenarios import SCENARIOS, SECONDS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"one of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=SECONDS, help="load duration per scenario")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            result = SCENARIOS[name](args.seconds)
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
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        known.setdefault(data["scenario"], R(**data))
    results = [known[name] for name in SCENARIOS if name in known]
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
              "`results/<scenario>.json`."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
