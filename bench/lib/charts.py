"""PNG charts from results.json: one figure per measure (throughput, proxy CPU, p99 latency,
memory), one panel per scenario, one bar per target (medians; unsupported rows left out)."""

import os

COLORS = {"direct": "#9e9e9e", "lbproxy": "#d95f02", "nginx": "#1b9e77", "haproxy": "#7570b3"}
EXTRA_COLORS = ["#e7298a", "#66a61e", "#e6ab02", "#a6761d"]

MEASURES = [
    # file, title, metric per scenario kind, unit
    ("throughput.png", "Throughput (higher is better)",
     {"wrk": ("rps", "req/s"), "oha": ("rps", "req/s"), "l4": ("gibps", "GiB/s")}),
    ("cpu.png", "Proxy CPU per unit of work (lower is better)",
     {"wrk": ("cpu_us_per_req", "µs/req"), "oha": ("cpu_us_per_req", "µs/req"),
      "l4": ("cpu_us_per_gib", "µs/GiB")}),
    ("latency.png", "p99 latency (lower is better)",
     {"wrk": ("p99_ms", "ms"), "oha": ("p99_ms", "ms")}),
    ("memory.png", "Memory (lower is better)",
     {"idle": ("kib_per_connection", "KiB per idle connection"),
      "wrk": ("rss_peak_mib", "peak RSS MiB")}),
]


def _color(target, seen):
    if target in COLORS:
        return COLORS[target]
    seen.setdefault(target, EXTRA_COLORS[len(seen) % len(EXTRA_COLORS)])
    return seen[target]


def _value(row, metric):
    if metric == "rss_peak_mib":
        return row["rss_peak_kib"] / 1024 if row.get("rss_peak_kib") else None
    return row.get("median", {}).get(metric)


def draw(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    extra = {}
    for filename, title, metrics in MEASURES:
        panels = []
        for scenario in results["scenarios"]:
            metric = metrics.get(scenario["kind"])
            if not metric:
                continue
            bars = [(row["label"], row["target"], _value(row, metric[0]))
                    for row in scenario["rows"] if not row["unsupported"]]
            bars = [b for b in bars if b[2] is not None]
            if bars:
                panels.append((scenario["title"], metric[1], bars))
        if not panels:
            continue
        columns = min(3, len(panels))
        rows = (len(panels) + columns - 1) // columns
        fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (panel_title, unit, bars) in zip(axes.flat, panels):
            labels = [b[0] for b in bars]
            values = [b[2] for b in bars]
            ax.bar(range(len(bars)), values, color=[_color(b[1], extra) for b in bars])
            ax.set_xticks(range(len(bars)))
            ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
            ax.set_title(panel_title, fontsize=9)
            ax.set_ylabel(unit, fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            for i, v in enumerate(values):
                ax.annotate(f"{v:,.3g}", (i, v), ha="center", va="bottom", fontsize=7)
        fig.suptitle(title + (" — quick smoke run" if results["quick"] else ""))
        fig.tight_layout()
        fig.savefig(os.path.join(out, filename), dpi=90)
        plt.close(fig)
        files.append(filename)
    return files
