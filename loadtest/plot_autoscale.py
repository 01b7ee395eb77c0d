"""Plots an autoscale run: offered load (req/s), p99 (ms) and the instance count (current and
desired) over time, the phases shaded. Run by autoscale.py under a python3 that has matplotlib:

    python3 loadtest/plot_autoscale.py DATA.json OUT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def phase_colour(name: str) -> str:
    if name.startswith("oscillation"):
        return "tab:purple"
    if name == "settle":
        return "tab:green"
    return "tab:grey"


def main(data_path: str, out: str):
    data = json.load(open(data_path))
    records, samples, phases = data["records"], data["samples"], data["phases"]
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    load, p99, instances = axes

    # Offered (oha's -q) as steps, achieved per second as dots.
    t = [r["t"] for r in records]
    load.step(t, [r["offered_rps"] for r in records], where="post", color="black", lw=1.2, label="offered (oha -q)")
    load.plot([r["t"] + r["duration_s"] / 2 for r in records], [r["achieved_rps"] for r in records],
              ".", ms=3, color="tab:blue", label="answered per second")
    failed = [(r["t"], r["offered_rps"]) for r in records if r["failed"]]
    if failed:
        load.plot(*zip(*failed), "x", color="tab:red", ms=6, label="second with a failed request")
    load.set_ylabel("offered load (req/s)", fontsize=8)

    mid = [r["t"] + r["duration_s"] / 2 for r in records if r["p99_ms"] is not None]
    p99.plot(mid, [r["p99_ms"] for r in records if r["p99_ms"] is not None], lw=1.2, color="black", label="p99")
    p99.plot(mid, [r["p50_ms"] for r in records if r["p99_ms"] is not None], lw=0.8, color="tab:grey", label="p50")
    p99.set_ylabel("latency per second (ms)", fontsize=8)

    ts = [s["t"] for s in samples]
    instances.step(ts, [s["current"] for s in samples], where="post", color="black", lw=1.4, label="current")
    instances.step(ts, [s["desired"] for s in samples], where="post", color="tab:orange", lw=1.2, ls="--",
                   label="desired")
    stopping = [s["t"] for s in samples if s.get("stopping")]
    if stopping:
        instances.plot(stopping, [0.15] * len(stopping), "|", color="tab:red", ms=8, label="an instance stopping")
    panics = [s["t"] for s in samples if s.get("mode") == "panic"]
    if panics:
        instances.plot(panics, [data["max"] + 0.3] * len(panics), "|", color="tab:purple", ms=8, label="panic mode")
    instances.set_ylabel("instances", fontsize=8)
    instances.set_ylim(0, data["max"] + 0.6)
    instances.axhline(data["min"], color="tab:grey", lw=0.6, ls=":")
    instances.axhline(data["max"], color="tab:grey", lw=0.6, ls=":")

    for ax in axes:
        ax.grid(alpha=0.3)
        if ax is not instances:
            ax.set_ylim(bottom=0)
        for phase in phases:
            if phase["phase"] != "settle" and not phase["phase"].startswith("oscillation"):
                ax.axvline(phase["start"], color="tab:grey", alpha=0.4, lw=0.6)
            else:
                ax.axvspan(phase["start"], phase["end"], color=phase_colour(phase["phase"]),
                           alpha=0.06 if phase["phase"] == "settle" else 0.04 + 0.06 * (phase["rate"] > 50), lw=0)
        ax.legend(fontsize=7, loc="upper left", ncol=4)
    oscillation = [p for p in phases if p["phase"].startswith("oscillation")]
    settle = [p for p in phases if p["phase"] == "settle"]
    top = load.get_ylim()[1]
    for label, group in (("settle", settle), ("oscillation", oscillation)):
        if group:
            load.text((group[0]["start"] + group[-1]["end"]) / 2, top * 0.92, label, ha="center", fontsize=7)
    instances.set_xlabel("seconds since the load started")
    fig.suptitle(data["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
