"""RESULTS.md from results.json: the machine, the pinning, one table per scenario (medians of the
runs, and lbproxy's ratio to the best peer), the targets, and the exact commands and configs.
A hand-written NOTES.md in the output folder (the profile and what was changed) is appended.
"""

import os

PEERS = ("nginx", "haproxy")
NA = "—"


def _fmt(value, digits=0, suffix=""):
    if value is None:
        return NA
    return f"{value:,.{digits}f}{suffix}"


def _mib(kib):
    return None if kib is None else kib / 1024


def _best(rows, key, higher_is_better):
    values = [r["median"][key] for r in rows
              if r["target"] in PEERS and key in r.get("median", {})]
    if not values:
        return None
    return max(values) if higher_is_better else min(values)


def _ratio(row, key, best):
    value = row.get("median", {}).get(key)
    if row["kind"] != "proxy" or row["target"] in PEERS or value is None or not best:
        return None
    return value / best


def _ratio_text(ratios):
    parts = [f"{name} {r:.2f}×" for name, r in ratios if r is not None]
    return ", ".join(parts) if parts else NA


def _table(scenario):
    kind = scenario["kind"]
    rows = scenario["rows"]
    if kind == "l4":
        header = ["target", "GiB/s", "proxy CPU ms/GiB", "proxy CPU (of its core)",
                  "peak RSS MiB", "errors", "vs best peer"]
        best_gibps = _best(rows, "gibps", True)
        best_cpu = _best(rows, "cpu_us_per_gib", False)
    elif kind == "idle":
        header = ["target", "connections held", "RSS before MiB", "RSS with them MiB",
                  "KiB per connection", "errors", "vs best peer"]
        best_kib = _best(rows, "kib_per_connection", False)
    else:
        large = scenario["key"] == "l7-1mib"
        compressed = scenario["key"] == "compression"
        header = ["target", "req/s"] + (["GiB/s"] if large else []) + (
            ["bytes/response"] if compressed else []) + [
            "p50 ms", "p99 ms", "p99.9 ms", "proxy CPU µs/req", "proxy CPU (of its core)",
            "peak RSS MiB", "errors", "vs best peer"]
        best_rps = _best(rows, "rps", True)
        best_cpu = _best(rows, "cpu_us_per_req", False)
        best_p99 = _best(rows, "p99_ms", False)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row["unsupported"]:
            # The short reason in the cell; the full one (lbproxy check's message) under the table.
            cells = [row["label"], row["unsupported"].split(" (")[0]] + [""] * (len(header) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        m = row.get("median", {})
        util = m.get("cpu_util")
        util_text = _fmt(util * 100 if util is not None else None, 0, " %")
        errors = _fmt(m.get("errors"), 0)
        if kind == "l4":
            ratios = [("GiB/s", _ratio(row, "gibps", best_gibps)),
                      ("CPU", _ratio(row, "cpu_us_per_gib", best_cpu))]
            cells = [row["label"], _fmt(m.get("gibps"), 2),
                     _fmt(m.get("cpu_us_per_gib", 0) / 1e3 if "cpu_us_per_gib" in m else None, 0),
                     util_text, _fmt(_mib(row.get("rss_peak_kib")), 1), errors, _ratio_text(ratios)]
        elif kind == "idle":
            ratios = [("KiB/conn", _ratio(row, "kib_per_connection", best_kib))]
            cells = [row["label"], _fmt(m.get("still_open"), 0),
                     _fmt(_mib(m.get("rss_before_kib")), 1), _fmt(_mib(m.get("rss_with_idle_kib")), 1),
                     _fmt(m.get("kib_per_connection"), 1), errors, _ratio_text(ratios)]
        else:
            ratios = [("req/s", _ratio(row, "rps", best_rps)),
                      ("CPU/req", _ratio(row, "cpu_us_per_req", best_cpu)),
                      ("p99", _ratio(row, "p99_ms", best_p99))]
            cells = [row["label"], _fmt(m.get("rps"), 0)]
            if scenario["key"] == "l7-1mib":
                cells.append(_fmt(m.get("gibps"), 2))
            if scenario["key"] == "compression":
                cells.append(_fmt(m.get("bytes_per_resp"), 0))
            cells += [_fmt(m.get("p50_ms"), 2), _fmt(m.get("p99_ms"), 2), _fmt(m.get("p999_ms"), 2),
                      _fmt(m.get("cpu_us_per_req"), 1), util_text,
                      _fmt(_mib(row.get("rss_peak_kib")), 1), errors, _ratio_text(ratios)]
        lines.append("| " + " | ".join(cells) + " |")
    reasons = sorted({r["unsupported"] for r in rows if r["unsupported"] and " (" in r["unsupported"]})
    if reasons:
        lines += [""] + [f"- {reason}" for reason in reasons]
    return "\n".join(lines)


def _runs_detail(scenario):
    """Every run's main figure, so the spread behind each median is visible."""
    key = {"l4": "gibps", "idle": "kib_per_connection"}.get(scenario["kind"], "rps")
    cpu_key = {"l4": "cpu_us_per_gib"}.get(scenario["kind"], "cpu_us_per_req")
    out = []
    for row in scenario["rows"]:
        if row["unsupported"] or not row["runs"]:
            continue
        figures = []
        for run in row["runs"]:
            if "failed" in run:
                figures.append("failed")
                continue
            text = _fmt(run.get(key), 2 if key != "rps" else 0)
            if cpu_key in run:
                text += f" ({run[cpu_key]:.1f} µs CPU)" if cpu_key == "cpu_us_per_req" else ""
            figures.append(text)
        out.append(f"- {row['label']}: {'; '.join(figures)}")
    return "\n".join(out)


def _commands(scenario):
    out = []
    for row in scenario["rows"]:
        if row.get("command"):
            out.append(f"- {row['label']}: `{row['command']}`")
        for failure in row.get("failures", []):
            out.append(f"  - **run failed**: {failure}")
    return "\n".join(out)


def _targets_section(results):
    scenario = next((s for s in results["scenarios"] if s["key"] == "l7-keepalive"), None)
    if not scenario:
        return ""
    rows = scenario["rows"]
    lb = next((r for r in rows if r["target"] == "lbproxy" and "median" in r), None)
    direct = next((r for r in rows if r["kind"] == "direct" and "median" in r), None)
    best_rps = _best(rows, "rps", True)
    best_cpu = _best(rows, "cpu_us_per_req", False)
    best_p99 = _best(rows, "p99_ms", False)
    if not lb or not best_rps or not best_cpu or not best_p99:
        return ""
    m = lb["median"]
    cpu_ratio = m["cpu_us_per_req"] / best_cpu
    rps_ratio = m["rps"] / best_rps
    at_direct = direct is not None and m["rps"] >= 0.97 * direct["median"]["rps"]
    p99_ratio = m["p99_ms"] / best_p99
    verdict = lambda ok: "**met**" if ok else "not met"  # noqa: E731
    return f"""## Targets (L7 keep-alive)

| target | goal | measured | |
|---|---|---|---|
| proxy CPU per request | ≤ 0.75 × best peer ({best_cpu:.1f} µs) | {m['cpu_us_per_req']:.1f} µs = {cpu_ratio:.2f}× | {verdict(cpu_ratio <= 0.75)} |
| req/s | ≥ 1.2 × best peer ({best_rps:,.0f}), or equal to direct when the load generator is the limit | {m['rps']:,.0f} = {rps_ratio:.2f}×{' (≥ 97 % of direct)' if at_direct else ''} | {verdict(rps_ratio >= 1.2 or at_direct)} |
| p99 | ≤ best peer ({best_p99:.2f} ms) | {m['p99_ms']:.2f} ms = {p99_ratio:.2f}× | {verdict(p99_ratio <= 1.0)} |
"""


def write(results, out, chart_files):
    machine = results["machine"]
    settings = results["settings"]
    pin = results["pinning"]
    lines = [
        "# lbproxy benchmark results",
        "",
        f"Generated by `{results['invocation']}` on {results['started']} "
        f"({results['elapsed_s'] / 60:.1f} min){' — QUICK smoke run, not a measurement' if results['quick'] else ''}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in machine.items()]
    lines += [
        "",
        "## How it was measured",
        "",
        f"- **Pinning**: the proxy under test alone on CPU {pin['proxy_cpu']} (`taskset -c "
        f"{pin['proxy_cpu']}`, one worker/thread); the backend, the load generators and the harness "
        f"on CPU(s) {', '.join(map(str, pin['other_cpus']))}. The machine is shared: other work may run "
        "on either core at the same time, so each figure is the **median of "
        f"{settings['runs']} run(s)** of {settings['duration_s']} s, rows interleaved, and every run "
        "is listed under its table.",
        f"- **Backend**: one static nginx worker on two ports (`{results['backend_command']}`), "
        "128-byte and 1 MiB files by sendfile, `/upload` answering POSTs.",
        f"- **Load**: wrk, 1 thread, {settings['connections']} connections "
        f"({settings['large_connections']} for 1 MiB responses); oha at {settings['fixed_rate']:,} "
        f"req/s for the fixed-rate scenario; curl for L4 ({settings['l4_transfers']} transfer(s) per run).",
        "- **Proxy CPU** = user + system time of the proxy's processes from `/proc/PID/stat`, "
        "sampled right before and after each load run, divided by the requests (or GiB) of that "
        "run. *CPU (of its core)* is that time over the run's wall time: near 100 % means the proxy "
        "was the bottleneck. **Peak RSS** is `VmHWM` after the scenario (fresh processes per scenario).",
        "- **vs best peer**: lbproxy's figure divided by the best of nginx and HAProxy (highest "
        "req/s, lowest CPU, lowest p99): req/s above 1 is better, CPU and p99 below 1 are better.",
        "- Configs that ran: [configs/](configs/) (work directory shown as `$WORKDIR`).",
        "",
    ]
    lines.append(_targets_section(results))
    for chart in chart_files:
        lines.append(f"![{chart}]({chart})")
    lines.append("")
    for scenario in results["scenarios"]:
        lines += [f"## {scenario['title']}", "", scenario["description"], "", _table(scenario), ""]
        detail = _runs_detail(scenario)
        if detail:
            lines += ["<details><summary>every run</summary>", "", detail, "", "</details>", ""]
        lines += ["<details><summary>commands</summary>", "", _commands(scenario), "",
                  "Proxies: " + "; ".join(sorted({f"`{r['proxy_command']}`" for r in scenario["rows"]
                                                  if r["kind"] == "proxy" and r["proxy_command"]})),
                  "", "</details>", ""]
    notes = os.path.join(out, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += [f.read()]
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
