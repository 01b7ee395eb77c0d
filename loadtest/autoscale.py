"""The autoscaling scenario: stepped offered load through `lbproxy up --autoscale`, judged on
whether the instance count follows the load within the policy's windows without failing a
request, and drawn as offered load, p99 and instances over time.

Flow:
1. Ports: the proxy's listener, the admin server and MAX consecutive ports for the instances
   (`lbproxy up` numbers its instances on consecutive ports from the group's first backend, as
   with `--instances N`), all free, below the ephemeral range (harness.free_port).
2. `lbproxy up --autoscale -c CONFIG` with `[upstream.api.autoscale]` min = 1, max = 4,
   metric = "in_flight", target = 2, scale_down_window = "20s" (panic at its default, 200 %);
   wait until the listener answers and `GET /api/autoscale` shows the group at `min`.
3. A poller reads `/api/autoscale` every 0.5 s: current, desired, starting, stopping, mode,
   signal, holding_reason (`Poller`).
4. Offered load: oha at fixed rates (`-q RATE`) on `GET /delay?ms=50`, so that in-flight
   requests build at modest rates (Little: rate x 50 ms; 160 req/s ~ 8 in flight ~ 4 instances at
   target 2). oha's JSON has no time series, so each phase runs as consecutive one-second oha
   runs (`-w`: a run waits for its requests at the deadline instead of counting them as
   aborted): one record per second with the offered and achieved rate, p50/p99/max and the
   failures (oha's error count and every non-2xx status).
   - steps: 20 -> 80 -> 160 -> 80 -> 20 req/s, 15 s each (`--seconds` changes the length);
   - settle: 20 req/s until the group is back at `min` (at most the down-window + 25 s);
   - oscillation: 160 and 20 req/s alternating every 5 s for 30 s, faster than the 20 s
     down-window: the high halves may scale out, nothing may scale in.
5. Judge (`judge`): zero failed requests in the whole run (and counted apart: during scale-in,
   while an instance was stopping); the count rises in the high step; it falls in the low steps,
   not before the down-window has passed since the high step ended; it is back at `min` after
   the settle; during the oscillation `desired` and `current` never decrease; `lbproxy up` is
   still running.
6. `results/autoscale.json` (every per-second record, every poll, the group's own history) and
   `results/autoscale.png` (plot_autoscale.py: three stacked plots over time).

Dry run, without the autoscaler: `python3 loadtest/autoscale.py --fake [--flap]` feeds synthetic
oha reports and /api/autoscale documents (an HPA-like model of the policy, on a virtual clock)
through the same parsing, judging and plotting, into `--results-dir` (default a temporary
directory, so the real results are never overwritten). `--flap` models an autoscaler without a
down-window: its verdict must be FAIL.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import Result, free_port, http_status, wait_until  # noqa: E402

MIN, MAX, TARGET = 1, 4, 2
SCALE_DOWN_WINDOW_S = 20
DELAY_MS = 50
STEP_S = 15
STEPS = [20, 80, 160, 80, 20]  # req/s
LOW, HIGH = 20, 160
OSCILLATE_EVERY_S, OSCILLATE_S = 5, 30
SETTLE_MAX_S = SCALE_DOWN_WINDOW_S + 25
SLICE_S = 1  # one oha run, one record
POLL_EVERY_S = 0.5
RISE_TO = 3  # the high step must bring at least this many instances
# Slack on "not before the down-window": the poll interval, and the first recommendation of the
# low step arriving a sample after the step began.
WINDOW_SLACK_S = 2 * POLL_EVERY_S + 1.0

OHA_CANDIDATES = ("oha", str(Path.home() / ".cargo" / "bin" / "oha"), "/root/.cargo/bin/oha")


def oha_binary() -> str | None:
    for candidate in OHA_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def config_text(port: int, admin: int, first_instance: int) -> str:
    return (
        f'[runtime]\nworkers = 2\npin_workers = false\ndrain_timeout = "10s"\n\n'
        f'[admin]\naddress = "127.0.0.1:{admin}"\n\n'
        f'[listener.http]\naddress = "127.0.0.1:{port}"\nupstream = "api"\n\n'
        f'[upstream.api]\nbackends = ["127.0.0.1:{first_instance}"]\n\n'
        f'[upstream.api.autoscale]\nmin = {MIN}\nmax = {MAX}\nmetric = "in_flight"\ntarget = {TARGET}\n'
        f'tolerance = "10%"\nscale_down_window = "{SCALE_DOWN_WINDOW_S}s"\ndrain_timeout = "10s"\n\n'
        f'[up]\nupstream = "api"\nready_path = "/health/ready"\n'
    )


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (the instances' addresses)."""
    for _ in range(200):
        first = free_port()
        if first + count > 65535:
            continue
        ok = True
        for port in range(first + 1, first + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


# ---- parsing: oha's JSON and /api/autoscale ----

def parse_oha(text: str, started: float, phase: str, offered: float) -> dict:
    """One slice's record from `oha --output-format json`: seconds are turned into ms; failures
    are oha's errors (connect, timeout, aborted, ...) plus every non-2xx status."""
    data = json.loads(text)
    summary = data.get("summary", {})
    statuses = {str(k): int(v) for k, v in data.get("statusCodeDistribution", {}).items()}
    errors = {str(k): int(v) for k, v in data.get("errorDistribution", {}).items()}
    requests = sum(statuses.values()) + sum(errors.values())
    non_2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
    percentiles = data.get("latencyPercentiles", {})
    ms = lambda seconds: None if seconds is None else round(seconds * 1000.0, 3)  # noqa: E731
    duration = summary.get("total") or 0.0
    return {
        "t": round(started, 2), "phase": phase, "offered_rps": offered,
        "achieved_rps": round(sum(statuses.values()) / duration, 2) if duration else 0.0,
        "requests": requests, "ok": requests - non_2xx - sum(errors.values()),
        "failed": non_2xx + sum(errors.values()), "statuses": statuses, "errors": errors,
        "p50_ms": ms(percentiles.get("p50")), "p99_ms": ms(percentiles.get("p99")),
        "max_ms": ms(summary.get("slowest")), "duration_s": round(duration, 3),
    }


def parse_autoscale(text: str, t: float, group: str = "api") -> dict:
    """One poll's sample of `group` from `GET /api/autoscale`."""
    data = json.loads(text)
    found = [g for g in data.get("groups", []) if g.get("group") == group]
    if not found:
        raise ValueError(f"/api/autoscale has no group {group!r}: {text[:300]}")
    g = found[0]
    return {"t": round(t, 2), **{key: g.get(key) for key in
            ("current", "desired", "starting", "stopping", "mode", "signal", "holding_reason", "waiting")}}


# ---- the real run ----

class Up:
    """`lbproxy up --autoscale` on a config with free ports."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lbproxy-loadtest-autoscale-"))
        self.port, self.admin = free_port(), free_port()
        self.first_instance = free_port_run(MAX)
        self.config_path = self.dir / "lbproxy.toml"
        self.config_path.write_text(config_text(self.port, self.admin, self.first_instance))
        self.log_path = self.dir / "lbproxy-up.log"
        self.command = [str(harness.BIN / "lbproxy"), "up", "--autoscale", "-c", str(self.config_path)]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/delay?ms={DELAY_MS}"

    @property
    def autoscale_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}/api/autoscale"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fetch(self) -> str:
        with urllib.request.urlopen(self.autoscale_url, timeout=2) as response:
            return response.read().decode()

    def start(self):
        log = open(self.log_path, "ab")
        # Its own process group: the instances are its children, and a stray one is found by pgid.
        self.process = subprocess.Popen(self.command, stdout=log, stderr=log, start_new_session=True)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"lbproxy up exited at start:\n{self.log()[-4000:]}")
            if http_status(f"http://127.0.0.1:{self.port}/") != 200:
                return False
            try:
                sample = parse_autoscale(self.fetch(), 0.0)
            except (OSError, ValueError):
                return False
            return sample["current"] == MIN
        wait_until("lbproxy up to serve with the group at min", ready, within=60, every=0.2)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Poller(threading.Thread):
    """`/api/autoscale` every POLL_EVERY_S seconds."""

    def __init__(self, fetch, clock):
        super().__init__(daemon=True, name="autoscale-poller")
        self.fetch, self.clock = fetch, clock
        self.stop = threading.Event()
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self.last_text = ""

    def run(self):
        while not self.stop.is_set():
            t = self.clock()
            try:
                self.last_text = self.fetch()
                self.samples.append(parse_autoscale(self.last_text, t))
            except Exception as error:  # noqa: BLE001 - a missed sample is reported, not fatal
                self.errors.append(f"{t:.1f}s: {error}")
            self.stop.wait(POLL_EVERY_S)

    def latest(self) -> dict | None:
        return self.samples[-1] if self.samples else None


class OhaLoad:
    """One-second oha runs at a fixed rate; a record each."""

    def __init__(self, oha: str, url: str, clock):
        self.oha, self.url, self.clock = oha, url, clock
        self.records: list[dict] = []

    def args(self, rate: float, seconds: float) -> list[str]:
        return [self.oha, "-q", str(rate), "-z", f"{seconds}s", "-w", "-c", "100", "-t", "10s",
                "--no-tui", "--output-format", "json", self.url]

    def slice(self, phase: str, rate: float, seconds: float) -> dict:
        started = self.clock()
        done = subprocess.run(self.args(rate, seconds), capture_output=True, text=True, timeout=seconds + 30)
        if done.returncode != 0:
            raise RuntimeError(f"oha failed ({done.returncode}): {done.stderr[-2000:]}")
        return parse_oha(done.stdout, started, phase, rate)


def schedule(step_s: float) -> list[tuple[str, float, float]]:
    """(phase, rate, seconds) of the steps and the oscillation; the settle goes between them."""
    steps = [(f"step {i + 1}: {rate}/s", rate, step_s) for i, rate in enumerate(STEPS)]
    halves = int(OSCILLATE_S / OSCILLATE_EVERY_S)
    oscillation = [(f"oscillation {i + 1}: {HIGH if i % 2 == 0 else LOW}/s",
                    HIGH if i % 2 == 0 else LOW, OSCILLATE_EVERY_S) for i in range(halves)]
    return steps + [("settle", LOW, SETTLE_MAX_S)] + oscillation


def drive(load, poller, clock, step_s: float) -> list[dict]:
    """Runs the schedule in slices; returns the phases with their start and end times."""
    phases = []
    for name, rate, seconds in schedule(step_s):
        start = clock()
        elapsed = 0.0
        while elapsed < seconds - 1e-6:
            if name == "settle":
                latest = poller.latest()
                if latest and latest["current"] == MIN and latest["desired"] == MIN \
                        and not latest.get("stopping"):
                    break
            length = min(SLICE_S, seconds - elapsed)
            load.records.append(load.slice(name, rate, length))
            elapsed += length
        phases.append({"phase": name, "rate": rate, "start": round(start, 2), "end": round(clock(), 2)})
    return phases


# ---- judging ----

def _between(samples, start, end):
    return [s for s in samples if start <= s["t"] <= end]


def judge(records: list[dict], samples: list[dict], phases: list[dict],
          window_s: float = SCALE_DOWN_WINDOW_S) -> list[tuple[bool, str]]:
    checks = []
    failed = sum(r["failed"] for r in records)
    requests = sum(r["requests"] for r in records)
    errors, statuses = {}, {}
    for r in records:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    checks.append((requests > 0 and failed == 0,
                   f"zero failed requests: {failed} of {requests} (statuses {statuses}, errors {errors})"))
    # During scale-in: the slices that overlap a poll with an instance stopping.
    stopping = [s["t"] for s in samples if s.get("stopping")]
    in_scale_in = [r for r in records
                   if any(r["t"] - POLL_EVERY_S <= t <= r["t"] + r["duration_s"] + POLL_EVERY_S for t in stopping)]
    checks.append((bool(in_scale_in) and sum(r["failed"] for r in in_scale_in) == 0,
                   f"zero failed requests during scale-in: {sum(r['failed'] for r in in_scale_in)} of "
                   f"{sum(r['requests'] for r in in_scale_in)} in the {len(in_scale_in)} seconds with an "
                   "instance stopping (none at all means no scale-in was seen)"))

    by_name = {p["phase"]: p for p in phases}
    steps = [p for p in phases if p["phase"].startswith("step ")]
    high = max(steps, key=lambda p: p["rate"])
    first = steps[0]
    base = max((s["current"] for s in _between(samples, first["start"], first["end"])), default=None)
    peak = max((s["current"] for s in _between(samples, high["start"], high["end"])), default=0)
    checks.append((peak >= RISE_TO and (base is None or peak > base),
                   f"the count rises in the high step ({high['rate']}/s): at most {base} instances at "
                   f"{first['rate']}/s, {peak} at {high['rate']}/s (>= {RISE_TO})"))
    # The fall: the first sample after the high step whose desired is below the step's peak.
    peak_desired = max((s["desired"] for s in _between(samples, high["start"], high["end"])), default=0)
    low_end = by_name["settle"]["end"] if "settle" in by_name else steps[-1]["end"]
    after = _between(samples, high["end"], low_end)
    fall = next((s for s in after if s["desired"] < peak_desired), None)
    if fall is None:
        checks.append((False, f"the count falls in the low steps (desired stayed at {peak_desired} "
                              f"until {low_end:.1f}s)"))
    else:
        waited = fall["t"] - high["end"]
        checks.append((waited >= window_s - WINDOW_SLACK_S,
                       f"the first scale-down waits for the down-window: desired {peak_desired} -> "
                       f"{fall['desired']} at {fall['t']:.1f}s, {waited:.1f}s after the high step ended "
                       f"(window {window_s:g}s, slack {WINDOW_SLACK_S:g}s)"))
        current_fell = any(s["current"] < peak for s in after)
        checks.append((current_fell, f"the instance count falls in the low steps (below {peak})"))
    settled = _between(samples, low_end - POLL_EVERY_S * 2, low_end + POLL_EVERY_S)
    checks.append((bool(settled) and settled[-1]["current"] == MIN,
                   f"back at min ({MIN}) before the oscillation: "
                   f"{settled[-1]['current'] if settled else '?'} at {low_end:.1f}s"))

    oscillation = [p for p in phases if p["phase"].startswith("oscillation")]
    if oscillation:
        o_start, o_end = oscillation[0]["start"], oscillation[-1]["end"]
        seen = _between(samples, o_start, o_end)
        downs = [(a, b) for a, b in zip(seen, seen[1:])
                 if b["desired"] < a["desired"] or b["current"] < a["current"]]
        checks.append((bool(seen) and not downs,
                       f"no scale-down while the load oscillates every {OSCILLATE_EVERY_S}s "
                       f"({o_start:.1f}-{o_end:.1f}s, {len(seen)} polls)"
                       + "".join(f"; {a['current']}/{a['desired']} -> {b['current']}/{b['desired']} "
                                 f"at {b['t']:.1f}s" for a, b in downs[:3])))
        top = max((s["current"] for s in seen), default=0)
        checks.append((top > MIN, f"the oscillation's high halves scaled out ({top} instances at most), "
                                  "so the no-scale-down check is not trivial"))
    return checks


# ---- plotting (in a python3 that has matplotlib, as the soak does) ----

def plot(records, samples, phases, title: str, out: Path) -> str | None:
    from soak import plotting_python
    python = plotting_python()
    if python is None:
        return "matplotlib is missing: apt-get install python3-matplotlib (loadtest/run.sh does it)"
    data = out.with_suffix(".plot.json")
    data.write_text(json.dumps({"records": records, "samples": samples, "phases": phases,
                                "title": title, "min": MIN, "max": MAX}))
    done = subprocess.run([python, str(Path(__file__).with_name("plot_autoscale.py")), str(data), str(out)],
                          capture_output=True, text=True)
    data.unlink()
    return None if done.returncode == 0 else f"plotting failed: {done.stderr[-2000:]}"


def finish(result: Result, name: str, records, samples, phases, extra_checks, details) -> Result:
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    png = harness.RESULTS / f"{name}.png"
    plot_error = plot(records, samples, phases, f"lbproxy autoscale: in_flight target {TARGET}, "
                      f"min {MIN}, max {MAX}, scale_down_window {SCALE_DOWN_WINDOW_S}s ({name})", png)
    report = harness.LoadReport()
    report.requests = sum(r["requests"] for r in records)
    report.duration_s = round(sum(r["duration_s"] for r in records), 2)
    report.rps = report.requests / report.duration_s if report.duration_s else 0.0
    report.errors = {"oha_errors": sum(sum(r["errors"].values()) for r in records),
                     "non_2xx": sum(v for r in records for k, v in r["statuses"].items() if not k.startswith("2"))}
    p99s = [r["p99_ms"] for r in records if r["p99_ms"] is not None]
    p50s = [r["p50_ms"] for r in records if r["p50_ms"] is not None]
    if p99s:
        report.latency_ms = {"p50": round(sorted(p50s)[len(p50s) // 2], 3), "p99": max(p99s)}
    result.details = details | {"phases": phases, "seconds": records, "polls": samples,
                                "plot": png.name if plot_error is None else plot_error}
    result.notes.append("p99 in the load line is the worst one-second p99; p50 the median second's")
    return result.judge(report, *judge(records, samples, phases), *extra_checks,
                        (plot_error is None, f"plotted to {png}" if plot_error is None else plot_error))


def autoscale(seconds: int | None, name: str = "autoscale") -> Result:
    step_s = seconds or STEP_S
    result = Result(name, f"oha steps {'/'.join(map(str, STEPS))} req/s of {step_s} s, then {HIGH}/{LOW} "
                          f"every {OSCILLATE_EVERY_S} s, through lbproxy up --autoscale (GET /delay?ms={DELAY_MS})")
    oha = oha_binary()
    if oha is None:
        result.notes.append("oha is missing: cargo install oha (bench/ installs it)")
        return result
    up = Up()
    result.command = " ".join(up.command) + f" ; {oha} -q RATE -z 1s -w -c 100 -t 10s --no-tui " \
                                            f"--output-format json {up.url}"
    try:
        up.start()
        began = time.monotonic()
        clock = lambda: time.monotonic() - began  # noqa: E731
        poller = Poller(up.fetch, clock)
        poller.start()
        load = OhaLoad(oha, up.url, clock)
        try:
            phases = drive(load, poller, clock, step_s)
        finally:
            time.sleep(POLL_EVERY_S * 2)
            poller.stop.set()
            poller.join(10)
        alive = up.process.poll() is None
        final = json.loads(poller.last_text) if poller.last_text else {}
    finally:
        up.stop()
    details = {"config": up.config_path.read_text(), "final_api_autoscale": final,
               "poll_errors": poller.errors[:20], "log_tail": up.log()[-4000:]}
    return finish(result, name, load.records, poller.samples, phases,
                  [(alive, "lbproxy up is still running"),
                   (not poller.errors, f"every poll answered ({len(poller.errors)} missed)")], details)


# ---- the dry run ----

class FakeGroup:
    """An HPA-like model of the policy on a virtual clock: in flight = rate x latency; a
    recommendation every poll; up at once (max_step 4), down to the highest recommendation of the
    down-window; an instance takes 1 s to start and 1 s to drain."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.current, self.desired, self.starting, self.stopping = MIN, MIN, 0, 0
        self.recs: list[tuple[float, int]] = []
        self.pending: list[tuple[float, int]] = []  # (when, +1 started / -1 stopped)
        self.history: list[list] = []

    def latency_ms(self, rate: float) -> float:
        load = rate * DELAY_MS / 1000.0 / max(self.current, 1)
        return DELAY_MS + 2 + max(0.0, load - TARGET) * 15

    def tick(self, t: float, rate: float) -> dict:
        for when, change in [p for p in self.pending if p[0] <= t]:
            self.pending.remove((when, change))
            self.current += change
            if change > 0:
                self.starting -= 1
            else:
                self.stopping -= 1
        # The signal without the model's overload penalty, or one instance at 80/s asks for four.
        signal_ = rate * (DELAY_MS + 2) / 1000.0 / max(self.current, 1)
        ratio = signal_ / TARGET
        rec = self.current if abs(ratio - 1) <= 0.1 else math.ceil(self.current * ratio)
        rec = max(MIN, min(MAX, rec))
        self.recs = [(w, r) for w, r in self.recs if w > t - self.window_s] + [(t, rec)]
        desired = rec if rec > self.desired else max(r for _, r in self.recs)
        desired = max(MIN, min(MAX, desired))
        effective = self.current + self.starting - self.stopping
        if desired > effective:
            for _ in range(desired - effective):
                self.starting += 1
                self.pending.append((t + 1.0, +1))
        elif desired < effective:
            for _ in range(effective - desired):
                self.stopping += 1
                self.pending.append((t + 1.0, -1))
        self.desired = desired
        self.history.append([int(t * 1000), self.current, desired])
        return {"group": "api", "min": MIN, "max": MAX, "metric": "in_flight", "target": TARGET,
                "signal": round(signal_, 3), "current": self.current, "starting": self.starting,
                "stopping": self.stopping, "desired": desired, "mode": "stable",
                "holding_reason": None, "waiting": 0, "last_decision": None,
                "history": self.history[-50:]}


class FakeLoad:
    """oha-shaped JSON for each slice from the model, and /api/autoscale polls every 0.5 s of
    virtual time, fed through parse_oha and parse_autoscale."""

    def __init__(self, group: FakeGroup):
        self.group, self.t = group, 0.0
        self.records: list[dict] = []
        self.samples: list[dict] = []
        self.next_poll = 0.0

    def clock(self) -> float:
        return self.t

    def latest(self):
        return self.samples[-1] if self.samples else None

    def slice(self, phase: str, rate: float, seconds: float) -> dict:
        started = self.t
        while self.next_poll < started + seconds:
            doc = {"groups": [self.group.tick(self.next_poll, rate)]}
            self.samples.append(parse_autoscale(json.dumps(doc), self.next_poll))
            self.next_poll += POLL_EVERY_S
        latency = self.group.latency_ms(rate) / 1000.0
        n = int(round(rate * seconds))
        text = json.dumps({
            "summary": {"successRate": 1.0, "total": seconds + latency, "slowest": latency * 1.3},
            "latencyPercentiles": {"p50": latency, "p99": latency * 1.2},
            "statusCodeDistribution": {"200": n}, "errorDistribution": {}})
        self.t += seconds + 0.02  # oha's start-up between slices
        return parse_oha(text, started, phase, rate)


def fake(flap: bool) -> Result:
    name = "autoscale-fake-flap" if flap else "autoscale-fake"
    window = 2.0 if flap else SCALE_DOWN_WINDOW_S
    result = Result(name, f"dry run on synthetic samples (down-window {window:g}s in the model)")
    load = FakeLoad(FakeGroup(window))
    phases = drive(load, load, load.clock, STEP_S)
    return finish(result, name, load.records, load.samples, phases, [], {"fake": True})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", action="store_true", help="dry run on synthetic samples")
    parser.add_argument("--flap", action="store_true", help="with --fake: a model without a down-window")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where the results go (default: a temporary directory with --fake, "
                             "else loadtest/results)")
    parser.add_argument("--bin-dir", type=Path, default=None)
    parser.add_argument("--seconds", type=int, default=None, help=f"step length (default {STEP_S})")
    args = parser.parse_args()
    if args.results_dir is not None:
        harness.set_results_dir(args.results_dir)
    elif args.fake:
        harness.set_results_dir(Path(tempfile.mkdtemp(prefix="lbproxy-autoscale-fake-")))
    if args.bin_dir is not None:
        harness.set_bin_dir(args.bin_dir)
    result = fake(args.flap) if args.fake else autoscale(args.seconds)
    result.write()
    print(result.summary())
    print(f"results: {harness.RESULTS}/{result.scenario}.json, .png")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
