"""The scenarios, and how one is measured against every target.

A scenario starts every target fresh (so peak RSS belongs to that scenario), warms each row up,
then runs `runs` rounds; each round measures every row once, in an order rotated per round so no
row always runs first or last on this noisy, shared machine. Per run, the proxy's CPU is the
difference of its /proc CPU time across exactly that load run. Figures are reported as medians.
"""

import statistics
import time
from dataclasses import dataclass

import loadgen
from idle_client import hold_idle_connections
from procstat import CpuMeter, memory_kib

GIB = 1 << 30


@dataclass
class Settings:
    runs: int
    duration_s: int
    warmup_s: int
    connections: int
    large_connections: int
    idle_connections: int
    fixed_rate: int
    l4_transfers: int


@dataclass
class Scenario:
    key: str
    title: str
    description: str
    feature: str  # "http", "https", "l4" or "idle"
    kind: str  # "wrk", "oha", "l4", "idle"
    path: str = "/small"
    body_bytes: int = 0
    close: bool = False
    large: bool = False
    accept_encoding: str = ""


SCENARIOS = [
    Scenario("l7-keepalive", "L7 keep-alive, small GET",
             "GET of a 128-byte file over keep-alive connections, at saturation.",
             "http", "wrk"),
    Scenario("l7-new-connection", "L7, one new connection per request",
             "The same GET with `Connection: close`: every request opens a new client connection "
             "(upstream connections stay pooled).", "http", "wrk", close=True),
    Scenario("l7-1mib", "L7, 1 MiB responses",
             "GET of a 1 MiB file over keep-alive connections (fewer connections).",
             "http", "wrk", path="/1m", large=True),
    Scenario("l7-post-16k", "L7, 16 KiB POST bodies",
             "POST of a 16 KiB body over keep-alive connections; the backend reads the whole "
             "body, then answers with the 128-byte file.",
             "http", "wrk", path="/upload", body_bytes=16384),
    Scenario("tls-keepalive", "TLS keep-alive, small GET",
             "The keep-alive GET over TLS (terminated by the proxy; plain HTTP to the backends).",
             "https", "wrk"),
    Scenario("tls-new-connection", "TLS, one new connection per request (handshakes/s)",
             "Every request a full TLS handshake (wrk does not resume sessions): req/s = "
             "handshakes/s.", "https", "wrk", close=True),
    Scenario("l4-throughput", "L4 throughput",
             "Downloads of a large file through a TCP (L4) listener, one stream at a time; "
             "lbproxy in both relay modes, HAProxy `mode tcp` with splice, nginx stream (copy).",
             "l4", "l4", path="/big"),
    Scenario("idle-connections", "Memory with idle keep-alive client connections",
             "Idle keep-alive client connections held open (each after one request); RSS of the "
             "proxy before and with them.", "http", "idle"),
    Scenario("compression", "L7, gzip of a 100 KiB JSON response",
             "GET of a 100 KiB JSON document with `Accept-Encoding: gzip`, compressed by the proxy "
             "on a listener of its own: nginx `gzip on; gzip_comp_level 1` (its default, zlib), "
             "lbproxy `[compression]` gzip only at level 2 (zlib-rs, whose level 1 is zlib-ng's "
             "deflate_quick: level 2 gives zlib's level-1 size), HAProxy `compression algo gzip` "
             "(libslz in Debian's build: one speed, no level). bytes/response shows what each "
             "sends; the direct row is the backend without compression.",
             "gzip", "wrk", path="/data.json", accept_encoding="gzip"),
    Scenario("compression-small", "L7, a small JSON response on a compressing listener",
             "GET of a 128-byte JSON document with `Accept-Encoding: gzip` on the compression "
             "scenario's listeners: below lbproxy's and nginx's minimum size (1 KiB), sent as it "
             "is. What compression costs the responses it leaves alone (compare l7-keepalive).",
             "gzip", "wrk", path="/small.json", accept_encoding="gzip"),
    Scenario("l7-policy", "L7 keep-alive, small GET, traffic policy on",
             "The keep-alive GET on a listener with an access list, trusted proxies, a rate "
             "limit per client address and connection limits, set so that none refuses the "
             "load: what the checks cost a request that passes them (compare l7-keepalive). "
             "nginx allow/deny, realip, limit_req and limit_conn; HAProxy an ACL and a stick "
             "table tracking the source's connections and request rate.",
             "policy", "wrk"),
    Scenario("fixed-rate", "Latency at a fixed offered rate",
             "Keep-alive GET at a fixed request rate well below saturation (oha, corrected for "
             "coordinated omission): the latency a client sees in normal operation.",
             "http", "oha"),
]


def rows_for(scenario, targets):
    """(row label, target, feature) for every row of the scenario's table."""
    rows = []
    for target in targets:
        if scenario.feature == "l4":
            for variant, feature in target.l4_variants:
                label = target.name if target.kind == "direct" else f"{target.name} ({variant})"
                rows.append((label, target, feature))
        else:
            rows.append((target.name, target, scenario.feature))
    return rows


def url(target, feature, path):
    if feature == "l4_direct":
        feature = "http"
    port, tls = target.endpoint(feature)
    return f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"


def _measure(target, action):
    """Runs `action()` and adds the target's CPU for exactly that call."""
    meter = CpuMeter(target.pids())
    meter.start()
    figures = action()
    cpu = meter.stop()
    if target.kind != "direct":
        figures["cpu_s"] = cpu
        figures["cpu_util"] = cpu / figures["seconds"] if figures["seconds"] else None
    return figures


def _one_run(scenario, settings, target, feature, warmup=False):
    duration = settings.warmup_s if warmup else settings.duration_s
    connections = settings.large_connections if scenario.large else settings.connections
    address = url(target, feature, scenario.path)
    if scenario.kind == "wrk":
        figures = _measure(target, lambda: loadgen.wrk(
            address, connections, duration, scenario.body_bytes, scenario.close,
            scenario.accept_encoding))
        if "cpu_s" in figures:
            figures["cpu_us_per_req"] = figures["cpu_s"] * 1e6 / max(figures["requests"], 1)
        if scenario.large:
            figures["gibps"] = figures["requests"] * (1 << 20) / figures["seconds"] / GIB
        return figures
    if scenario.kind == "oha":
        figures = _measure(target, lambda: loadgen.oha(
            address, settings.connections, duration, settings.fixed_rate))
        if "cpu_s" in figures:
            figures["cpu_us_per_req"] = figures["cpu_s"] * 1e6 / max(figures["requests"], 1)
        return figures
    if scenario.kind == "l4":
        transfers = 1 if warmup else settings.l4_transfers
        expected = target.layout.l4_bytes

        def download():
            total_bytes, total_s = 0, 0.0
            for _ in range(transfers):
                size, seconds = loadgen.curl_transfer(address, expected)
                total_bytes += size
                total_s += seconds
            return {"bytes": total_bytes, "seconds": total_s, "errors": 0}

        figures = _measure(target, download)
        figures["gibps"] = figures["bytes"] / figures["seconds"] / GIB
        if "cpu_s" in figures:
            figures["cpu_us_per_gib"] = figures["cpu_s"] * 1e6 / (figures["bytes"] / GIB)
        return figures
    raise ValueError(scenario.kind)


def _command_for(scenario, settings, target, feature):
    address = url(target, feature, scenario.path)
    connections = settings.large_connections if scenario.large else settings.connections
    if scenario.kind in ("wrk", "idle"):
        if scenario.kind == "idle":
            return (f"bench/lib/idle_client.py: {settings.idle_connections} connections to "
                    f"{address}, each after one GET, held open")
        argv, env = loadgen.wrk_command(address, connections, settings.duration_s,
                                        scenario.body_bytes, scenario.close,
                                        scenario.accept_encoding)
        return loadgen.describe(argv, env)
    if scenario.kind == "oha":
        return loadgen.describe(loadgen.oha_command(address, settings.connections,
                                                    settings.duration_s, settings.fixed_rate))
    return f"{settings.l4_transfers} × " + loadgen.describe(loadgen.curl_command(address))


def _idle_row(settings, target, feature):
    port, _ = target.endpoint(feature)
    pids = target.pids()
    before = memory_kib(pids, "VmRSS")

    def measure():
        return {"rss_with_idle_kib": memory_kib(pids, "VmRSS")}

    figures = hold_idle_connections(port, settings.idle_connections, measure)
    figures["rss_before_kib"] = before
    if figures["opened"]:
        figures["kib_per_connection"] = (
            (figures["rss_with_idle_kib"] - before) / figures["opened"])
    figures["errors"] = figures["failures"] + (figures["opened"] - figures["still_open"])
    return figures


def run_scenario(scenario, settings, targets, log):
    """Measures every row; returns the scenario's result dict (see report.py)."""
    entries = []
    for label, target, feature in rows_for(scenario, targets):
        reason = target.why_unsupported(feature)
        row = {"label": label, "target": target.name, "kind": target.kind, "feature": feature,
               "unsupported": reason, "runs": [], "proxy_command": target.command,
               "command": None if reason else _command_for(scenario, settings, target, feature)}
        entries.append((row, target))
    rows = [row for row, _ in entries]
    live = [(row, target) for row, target in entries if not row["unsupported"]]
    if scenario.kind == "idle":
        # Idle connections measure memory, not speed: one round.
        for row, target in live:
            log(f"  {row['label']}: holding {settings.idle_connections} idle connections")
            row["runs"].append(_safe(lambda: _idle_row(settings, target, row["feature"]), row))
    else:
        if settings.warmup_s:
            for row, target in live:
                _safe(lambda: _one_run(scenario, settings, target, row["feature"], warmup=True), row)
        for round_index in range(settings.runs):
            shift = round_index % max(len(live), 1)
            for row, target in live[shift:] + live[:shift]:
                figures = _safe(lambda: _one_run(scenario, settings, target, row["feature"]), row)
                row["runs"].append(figures)
                log(f"  run {round_index + 1}/{settings.runs} {row['label']}: {_brief(figures)}")
    for row, target in live:
        row["rss_peak_kib"] = memory_kib(target.pids(), "VmHWM") or None
        row["median"] = medians(row["runs"])
    return {"key": scenario.key, "title": scenario.title, "description": scenario.description,
            "kind": scenario.kind, "rows": rows}


def _safe(action, row):
    """A failed run is recorded (and shown in the report), not fatal to the whole benchmark."""
    try:
        return action()
    except Exception as e:  # noqa: BLE001 — any failure of one run is reported, not raised
        row.setdefault("failures", []).append(str(e)[:300])
        return {"failed": str(e)[:300]}


def medians(runs):
    keys = {k for run in runs for k, v in run.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)}
    out = {}
    for key in sorted(keys):
        values = [run[key] for run in runs if isinstance(run.get(key), (int, float))]
        if values:
            out[key] = statistics.median(values)
    return out


def _brief(figures):
    if "failed" in figures:
        return "FAILED " + figures["failed"][:120]
    parts = []
    if "rps" in figures:
        parts.append(f"{figures['rps']:.0f} req/s")
    if "gibps" in figures:
        parts.append(f"{figures['gibps']:.2f} GiB/s")
    if "p99_ms" in figures:
        parts.append(f"p99 {figures['p99_ms']:.2f} ms")
    if "cpu_us_per_req" in figures:
        parts.append(f"{figures['cpu_us_per_req']:.1f} µs CPU/req")
    if "cpu_us_per_gib" in figures:
        parts.append(f"{figures['cpu_us_per_gib'] / 1e3:.0f} ms CPU/GiB")
    if figures.get("errors"):
        parts.append(f"{figures['errors']} errors")
    return ", ".join(parts)


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
