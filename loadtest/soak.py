"""The soak: steady mixed traffic for an hour (or `--seconds`) while faults happen on a schedule,
judged on two things: no request failed outside the injected faults, and the proxy's memory,
descriptors and pooled connections stayed flat.

Traffic (all at a fixed pace, so the load is the same in the last minute as in the first):
- wrk, keep-alive `GET /` on the http listener;
- wrk, `GET /` with `Connection: close` (a new client connection per request);
- wrk, keep-alive `GET /` on an https listener (a self-signed certificate made with openssl at
  the start);
- POST /echo with a 4 KiB body, keep-alive, the echo checked byte for byte (clients.PostClient);
- WebSocket sessions on the demo API's echo (`GET /ws`), a message every 100 ms, each echo
  checked (clients.WebSocketClient).

Faults, every cycle (30 s for runs under 10 minutes, else 60 s): a reload (SIGHUP, new weights),
a `kill -9` of one instance (the next one each cycle) and its restart, a rolling restart of every
instance (SIGTERM: drain, exit; start again; wait until ready), slow clients (slowloris, slow
bodies, slow readers) for a fifth of the cycle, and a second reload.

What counts as an injected failure (anything else fails the soak):
- a WebSocket session that ends while its instance (`X-Instance` of its `101`) is being killed
  or stopped: from the signal until the process has exited, plus 2 s for the proxy to pass the
  close on. Its replacement session must open: a failed handshake is never injected;
- a POST answered `502` while an instance is being killed or stopped (from the signal until 2 s
  after the exit): the proxy never sends a request with a body twice (docs/config.md,
  `[upstream.NAME.retry]`), so a POST that was on the wire to the dying instance fails by design;
- the slow clients' own connections, which the proxy is meant to cut.
Every GET (keep-alive, `Connection: close`, https) must succeed, faults or not: the proxy retries
them, and connects that are refused go to the next instance.

Flat (samples every 2 s, or 5 s in runs of 10 minutes or more, of the proxy's RSS from
/proc/PID/status, its descriptors from /proc/PID/fd, and lbproxy_backend_idle_connections from
/metrics): the first 10 % of the run (at least 10 s) is warm-up and not judged; the rest is cut
into quarters, and
- RSS: the last quarter's median is at most 10 % + 4 MiB above the second quarter's;
- descriptors: the last quarter's median, and its floor (10th percentile), at most 10 % + 8
  above the second quarter's. A leak raises the floor and the median. Peaks are not judged:
  they are the slow-client bursts (hundreds of attacking connections), and their height depends
  on where a sample falls in a burst; the first one-hour run had quarter peaks of 411, 186, 243
  and 421 descriptors with a floor of 73 and a median of 76-77 in every quarter, each peak at
  230-250 open client connections;
- idle pooled connections are not judged by quarters: their count follows the load and the
  faults (a kill -9 empties an instance's share, a reload starts new pools), and a two-minute CI
  run failed on a floor of 8 in one quarter against 17 in the last with nothing leaking. A
  pooled connection that leaks is one the pool never closes, so the soak runs with a pool
  `idle_timeout` of 10 s and judges that every sample stays within the pool's bound
  (`max_idle_per_backend` x instances x workers), and that after the traffic stops every pooled
  connection is closed and the descriptors fall back to the count before the traffic, + 8,
  within the idle timeout + 20 s.
The samples are plotted to `results/<scenario>.png` beside `results/<scenario>.json`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from clients import PostClient, Tally, WebSocketClient
import harness
from harness import Deployment, Load, LoadReport, Result, free_port, http_status, wait_until

GRACE_S = 2.0  # after an instance's exit, for the proxy to pass a close or failure on
WARM_UP_SHARE = 0.10
POOL_IDLE_TIMEOUT_S = 10
POOL_MAX_IDLE_PER_BACKEND = 16  # per worker: each worker has its own pool
SLOW_CLIENT_CONFIG = 'client_header = "2s"\nclient_body = "3s"\nclient_idle = "3s"\n'


def _missing_tools() -> list[str]:
    needs = {"wrk": "wrk", "slowhttptest": "slowhttptest", "openssl": "openssl"}
    return [f"{tool} (apt-get install {package})" for tool, package in needs.items()
            if shutil.which(tool) is None]


def plotting_python() -> str | None:
    """A python3 that can import matplotlib (Debian's python3-matplotlib goes to /usr/bin's)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and subprocess.run([candidate, "-c", "import matplotlib"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "soak-cert.pem", directory / "soak-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def _paced_script(directory: Path, name: str, pause_ms: int) -> Path:
    """A wrk script that waits `pause_ms` between a connection's requests (wrk's `delay`)."""
    path = directory / f"{name}.lua"
    path.write_text(f"function delay()\n  return {pause_ms}\nend\n")
    return path


class Sampler(threading.Thread):
    """RSS, descriptors and idle pooled connections of the proxy every `every` seconds."""

    def __init__(self, deployment: Deployment, clock, every: float):
        super().__init__(daemon=True, name="sampler")
        self.d, self.clock, self.every = deployment, clock, every
        self.stop = threading.Event()
        self.samples: list[dict] = []
        self.errors: list[str] = []

    def sample(self) -> dict:
        pid = self.d.proxy.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        text = self.d.metrics_text()
        return {"t": round(self.clock(), 2), "rss_mib": round(rss_kib / 1024, 2), "fds": fds,
                "idle_pooled": int(self.d.metric("lbproxy_backend_idle_connections", text=text)),
                "open_client_connections": int(self.d.metric("lbproxy_listener_open_connections", text=text))}

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as error:  # noqa: BLE001 - a missed sample is reported, not fatal
                self.errors.append(f"{self.clock():.1f}s: {error}")
            self.stop.wait(self.every)


class Schedule:
    """The fault schedule, and the windows in which an instance was being killed or stopped."""

    def __init__(self, deployment: Deployment, clock, seconds: int):
        self.d, self.clock, self.seconds = deployment, clock, seconds
        self.cycle = 30.0 if seconds < 600 else 60.0
        self.events: list[dict] = []  # every fault, for the record and the plot
        self.stops: list[dict] = []  # instance, start, end: when an instance was going away
        self.reloads = 0
        self.slow: list[tuple[str, subprocess.Popen]] = []

    def _event(self, kind: str, start: float, **extra):
        self.events.append({"kind": kind, "start": round(start, 2), "end": round(self.clock(), 2), **extra})

    def reload(self, cycle: int):
        start = self.clock()
        weights = [1 + (cycle + i) % 3 for i in range(len(self.d.instances))]
        backends = ", ".join(f'{{ address = "{i.address}", weight = {w} }}'
                             for i, w in zip(self.d.instances, weights))
        text = re.sub(r"backends = \[.*\]", f'balance = "weighted"\nbackends = [{backends}]',
                      self.d.config_text(), count=1)
        self.d.write_config(text)
        self.d.reload()
        self.reloads += 1
        self._event("reload", start, weights=weights)

    def _stopped(self, instance, start: float):
        self.stops.append({"instance": str(instance.number), "start": start, "end": self.clock()})

    def kill(self, cycle: int):
        instance = self.d.instances[cycle % len(self.d.instances)]
        start = self.clock()
        instance.kill(signal.SIGKILL)
        instance.process.wait(10)
        self._stopped(instance, start)
        instance.start()
        self._event("kill -9 + restart", start, instance=instance.number)

    def rolling_restart(self, cycle: int):
        start = self.clock()
        for instance in self.d.instances:
            stop_start = self.clock()
            instance.stop()
            self._stopped(instance, stop_start)
            instance.start()
        self._event("rolling restart", start)

    def slow_clients(self, cycle: int):
        start = self.clock()
        length = max(3, int(self.cycle / 5))
        url = self.d.url
        attacks = {
            "slowloris": ["-H", "-c", "100", "-r", "50", "-i", "1", "-u", url],
            "slow-body": ["-B", "-c", "100", "-r", "50", "-i", "1", "-s", "100000", "-u", url + "echo"],
            "slow-read": ["-X", "-c", "50", "-r", "50", "-w", "512", "-y", "1024", "-n", "5", "-z", "32",
                          "-k", "1", "-u", url + "bytes?n=8388608"],
        }
        for name, args in attacks.items():
            self.slow.append((name, subprocess.Popen(["slowhttptest", *args, "-l", str(length)],
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        self.events.append({"kind": "slow clients", "start": round(start, 2), "end": round(start + length, 2)})

    def run(self, stop: threading.Event):
        """Runs the cycles until `seconds` (less one cycle's last step) have passed."""
        steps = [(0.10, self.reload), (0.20, self.kill), (0.45, self.rolling_restart),
                 (0.70, self.slow_clients), (0.95, self.reload)]
        cycle = 0
        while not stop.is_set():
            for share, step in steps:
                at = cycle * self.cycle + share * self.cycle
                if at > self.seconds - 3:
                    return
                if stop.wait(max(0.0, at - self.clock())):
                    return
                step(cycle)
            cycle += 1

    def finish_slow_clients(self):
        for _, process in self.slow:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()

    def in_stop_window(self, start: float, end: float, instance: str | None = None) -> bool:
        return any((instance is None or s["instance"] == instance)
                   and start <= s["end"] + GRACE_S and end >= s["start"]
                   for s in self.stops)


def _quarters(samples: list[dict], seconds: float) -> list[list[dict]]:
    warm_up = max(10.0, WARM_UP_SHARE * seconds)
    judged = [s for s in samples if s["t"] >= warm_up]
    n = len(judged)
    return [judged[i * n // 4:(i + 1) * n // 4] for i in range(4)]


def flatness(samples: list[dict], seconds: float) -> list[tuple[bool, str]]:
    """The flatness rule (module docstring) as checks."""
    q = _quarters(samples, seconds)
    if min(len(part) for part in q) < 2:
        return [(False, f"enough samples to judge flatness ({len(samples)} in all)")]
    checks = []
    med = lambda part, key: statistics.median(s[key] for s in part)  # noqa: E731
    floor = lambda part, key: sorted(s[key] for s in part)[len(part) // 10]  # noqa: E731
    rss_q2, rss_q4 = med(q[1], "rss_mib"), med(q[3], "rss_mib")
    checks.append((rss_q4 <= rss_q2 * 1.10 + 4,
                   f"RSS flat: last quarter's median {rss_q4:.1f} MiB <= 1.10 x second quarter's "
                   f"{rss_q2:.1f} MiB + 4 MiB"))
    for key, label in (("fds", "descriptors"),):
        m2, m4 = med(q[1], key), med(q[3], key)
        f2, f4 = floor(q[1], key), floor(q[3], key)
        checks.append((m4 <= m2 * 1.10 + 8,
                       f"{label} flat: last quarter's median {m4:g} <= 1.10 x second quarter's {m2:g} + 8"))
        checks.append((f4 <= f2 * 1.10 + 8,
                       f"{label} flat: last quarter's floor (10th percentile) {f4} <= 1.10 x second "
                       f"quarter's {f2} + 8"))
    return checks


def plot(samples: list[dict], events: list[dict], title: str, out: Path) -> str | None:
    """Plots the samples (matplotlib, in a python3 that has it); returns an error or None."""
    python = plotting_python()
    if python is None:
        return "matplotlib is missing: apt-get install python3-matplotlib (loadtest/run.sh does it)"
    data = out.with_suffix(".plot.json")
    data.write_text(json.dumps({"samples": samples, "events": events, "title": title}))
    done = subprocess.run([python, str(Path(__file__).with_name("plot_soak.py")), str(data), str(out)],
                          capture_output=True, text=True)
    data.unlink()
    return None if done.returncode == 0 else f"plotting failed: {done.stderr[-2000:]}"


def soak(seconds: int, name: str = "soak") -> Result:
    result = Result(name, f"{seconds} s of mixed traffic (keep-alive, close, https, POST, WebSocket) "
                          "through reloads, kill -9, rolling restarts and slow clients")
    missing = _missing_tools()
    if missing:
        result.notes.append("missing tools: " + ", ".join(missing) + "; loadtest/run.sh installs them")
        return result
    https_port = free_port()
    d = Deployment(name, extra_config="")
    cert, key = _self_signed_certificate(d.dir)
    d.extra_config = (f'[upstream.api.pool]\nidle_timeout = "{POOL_IDLE_TIMEOUT_S}s"\n'
                      f'max_idle_per_backend = {POOL_MAX_IDLE_PER_BACKEND}\n\n'
                      f'[timeouts]\n{SLOW_CLIENT_CONFIG}\n'
                      f'[listener.https]\naddress = "127.0.0.1:{https_port}"\nprotocol = "https"\n'
                      f'upstream = "api"\n\n[[listener.https.tls.certificate]]\ncert = "{cert}"\nkey = "{key}"\n')
    every = 2.0 if seconds < 600 else 5.0
    with d:
        wait_until("the https listener to answer",
                   lambda: subprocess.run(["curl", "-skf", "-o", "/dev/null", f"https://127.0.0.1:{https_port}/"],
                                          capture_output=True).returncode == 0)
        began = time.monotonic()
        clock = lambda: time.monotonic() - began  # noqa: E731
        sampler = Sampler(d, clock, every)
        before = sampler.sample()
        sampler.start()
        stop = threading.Event()
        tally_post, tally_ws = Tally(), Tally()
        posts = [PostClient("127.0.0.1", d.port, clock, stop, tally_post, 0.05, number=n) for n in range(2)]
        sockets = [WebSocketClient("127.0.0.1", d.port, clock, stop, tally_ws, 0.1, number=n) for n in range(4)]
        https_url = f"https://127.0.0.1:{https_port}/"
        loads = {
            "keep-alive": Load(d.url, seconds, connections=16, threads=1,
                               script=_paced_script(d.dir, "keepalive", 20)),
            "close": Load(d.url, seconds, connections=4, threads=1, headers=["Connection: close"],
                          script=_paced_script(d.dir, "close", 50)),
            "https": Load(https_url, seconds, connections=4, threads=1,
                          script=_paced_script(d.dir, "https", 50)),
        }
        schedule = Schedule(d, clock, seconds)
        for load in loads.values():
            load.__enter__()
        for client in posts + sockets:
            client.start()
        try:
            schedule.run(stop)
            reports = {kind: load.report() for kind, load in loads.items()}
        finally:
            stop.set()
            for load in loads.values():
                load.__exit__()
        for client in posts + sockets:
            client.join(30)
        schedule.finish_slow_clients()
        sampler.stop.set()
        sampler.join(30)
        # Quiet again: the pool closes its idle connections, and every descriptor is released.
        settled = {}

        def released():
            settled.update(sampler.sample())
            return settled["idle_pooled"] == 0 and settled["fds"] <= before["fds"] + 8
        try:
            wait_until("the descriptors to fall back", released, within=POOL_IDLE_TIMEOUT_S + 20, every=0.5)
            fell_back = True
        except TimeoutError:
            fell_back = False
        proxy_alive = d.proxy.poll() is None
        applied = d.proxy_log().count("configuration reloaded")

    # Judge the recorded failures.
    injected = {"post": 0, "ws-session": 0}
    real = []
    for outcome in tally_post.failures + tally_ws.failures:
        if outcome.kind == "post" and outcome.error.startswith("status 502") \
                and schedule.in_stop_window(outcome.start, outcome.end):
            injected["post"] += 1
        elif outcome.kind == "ws-session" and outcome.instance is not None \
                and schedule.in_stop_window(outcome.start, outcome.end, outcome.instance):
            injected["ws-session"] += 1
        else:
            real.append(outcome)
    merged = LoadReport()
    for report in reports.values():
        merged.requests += report.requests
        for kind, count in report.errors.items():
            merged.errors[kind] = merged.errors.get(kind, 0) + count
        for pct, ms in report.latency_ms.items():
            merged.latency_ms[pct] = max(merged.latency_ms.get(pct, 0.0), ms)
    merged.requests += tally_post.ok + tally_ws.ok + sum(injected.values())
    merged.duration_s = max(r.duration_s for r in reports.values())
    merged.rps = merged.requests / merged.duration_s if merged.duration_s else 0.0
    merged.errors["post"] = sum(1 for o in real if o.kind == "post")
    merged.errors["websocket"] = sum(1 for o in real if o.kind != "post")

    samples = sampler.samples
    pool_bound = POOL_MAX_IDLE_PER_BACKEND * len(d.instances) * d.workers
    most_pooled = max((s["idle_pooled"] for s in samples), default=0)
    png = harness.RESULTS / f"{name}.png"
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    plot_error = plot(samples, schedule.events, f"lbproxy soak: {seconds} s ({name})", png)
    kills = sum(1 for e in schedule.events if e["kind"] == "kill -9 + restart")
    rolls = sum(1 for e in schedule.events if e["kind"] == "rolling restart")
    slows = sum(1 for e in schedule.events if e["kind"] == "slow clients")
    result.command = " ; ".join(" ".join(load.args) for load in loads.values())
    result.details = {
        "traffic": {kind: {k: v for k, v in vars(r).items() if k != "raw"} for kind, r in reports.items()}
                   | {"post_ok": tally_post.ok, "websocket_messages_ok": tally_ws.ok,
                      "websocket_sessions": sum(c.sessions for c in sockets),
                      "websocket_clean_closes": sum(c.clean_closes for c in sockets)},
        "injected_failures": injected,
        "failures_outside_faults": [vars(o) for o in real][:50],
        "faults": {"reloads": schedule.reloads, "kills": kills, "rolling_restarts": rolls,
                   "slow_client_bursts": slows, "events": schedule.events},
        "before_traffic": before, "after_traffic": settled, "samples": samples,
        "sampler_errors": sampler.errors[:20], "plot": png.name if plot_error is None else plot_error,
    }
    result.notes.append(f"faults: {schedule.reloads} reloads, {kills} kill -9, {rolls} rolling restarts, "
                        f"{slows} slow-client bursts; injected failures: {injected}")
    for o in real[:5]:
        result.notes.append(f"failure outside the faults: {o.kind} at {o.start:.1f}-{o.end:.1f}s "
                            f"(instance {o.instance}): {o.error}")
    rss = [s["rss_mib"] for s in samples]
    fds = [s["fds"] for s in samples]
    if samples:
        result.notes.append(f"RSS {min(rss):.1f}..{max(rss):.1f} MiB, descriptors {min(fds)}..{max(fds)}, "
                            f"idle pooled {min(s['idle_pooled'] for s in samples)}.."
                            f"{max(s['idle_pooled'] for s in samples)} over {len(samples)} samples")
    per_kind = [(r.failed == 0 and r.requests > 0, f"wrk {kind}: {r.requests} requests, errors {r.errors}")
                for kind, r in reports.items()]
    return result.judge(
        merged,
        *per_kind,
        (tally_post.ok > 0 and tally_ws.ok > 0, f"{tally_post.ok} POSTs and {tally_ws.ok} WebSocket echoes succeeded"),
        (not real, f"{len(real)} POST/WebSocket failures outside the injected faults"),
        (kills > 0 and rolls > 0 and schedule.reloads > 0 and slows > 0, "every kind of fault happened"),
        (applied == schedule.reloads, f"the proxy applied {applied} of {schedule.reloads} reloads"),
        (proxy_alive, "the proxy is still running"),
        *flatness(samples, seconds),
        (most_pooled <= pool_bound,
         f"idle pooled connections within the pool's bound: at most {most_pooled} <= {pool_bound}"),
        (fell_back, f"the pool emptied and the descriptors fell back after the traffic: "
                    f"{settled.get('fds')} open, {settled.get('idle_pooled')} of them pooled, "
                    f"{before['fds']} before the traffic"),
        (not sampler.errors, f"every sample was taken ({len(sampler.errors)} missed)"),
        (plot_error is None, f"plotted to {png}" if plot_error is None else plot_error),
    )


def soak_hour(seconds: int | None) -> Result:
    return soak(seconds or 3600, "soak")


def soak_two_minutes(seconds: int | None) -> Result:
    return soak(seconds or 120, "soak-2min")
