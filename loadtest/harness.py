"""Processes and measurements shared by the fault-under-load scenarios.

A scenario starts demo-API instances and the proxy (real processes, free ports), keeps a load
generator (wrk) running against the proxy while it breaks something, and then judges the run by
what the load generator saw: every request must have been answered with a non-error status.

Flow: `Deployment` starts N instances of `lbproxy-demo-api` and `lbproxy serve` on a config it
writes; `Load` runs wrk in the background and parses its report into a `LoadReport`; `Result`
collects the verdict and writes `results/<scenario>.json`.
"""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# Where lbproxy and lbproxy-demo-api are: the release build (loadtest/run.sh builds it);
# `run.py --bin-dir target/debug` points elsewhere (the test suite's soak uses its debug build).
BIN = ROOT / "target" / "release"


def set_results_dir(path: Path):
    """Where results go instead of loadtest/results (the test suite writes under target/)."""
    global RESULTS
    RESULTS = path.resolve()


def set_bin_dir(path: Path):
    global BIN
    BIN = path.resolve()
    for name in ("lbproxy", "lbproxy-demo-api"):
        if not (BIN / name).is_file():
            raise FileNotFoundError(f"{BIN / name} is missing: build it first "
                                    "(cargo build --release --bin lbproxy --bin lbproxy-demo-api)")


def free_port() -> int:
    """A port nothing uses now, below the kernel's ephemeral range: the load generator opens
    hundreds of thousands of client connections, and a listener must not pick a port that one of
    them (or its TIME_WAIT) holds."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_until(what: str, condition, within: float = 15.0, every: float = 0.05):
    """Polls `condition` until it is true or `within` seconds pass (then raises)."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Instance:
    """One demo-API process: on loopback, or inside network namespace `netns` (chaos scenarios:
    `ip netns exec` execs it, so the process is the demo API itself)."""

    def __init__(self, number: int, port: int, log_dir: Path, host: str = "127.0.0.1",
                 netns: str | None = None):
        self.number = number
        self.port = port
        self.host = host
        self.netns = netns
        self.log = open(log_dir / f"api-{number}.log", "ab")
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self):
        command = [str(BIN / "lbproxy-demo-api"), "--instance", str(self.number), "--listen", self.address]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        wait_until(f"api {self.number} ready", lambda: http_status(f"http://{self.address}/health/ready") == 200)

    def kill(self, sig=signal.SIGKILL):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, within: float = 30.0):
        """SIGTERM (the demo API drains), then wait for the exit."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Deployment:
    """N demo-API instances behind `lbproxy serve`, all on free loopback ports."""

    def __init__(self, name: str, instances: int = 3, extra_config: str = "", workers: int = 2,
                 placed: list[tuple[str, str | None]] | None = None):
        """`placed`: one (host, netns) per instance instead of `instances` on loopback."""
        self.dir = Path(tempfile.mkdtemp(prefix=f"lbproxy-loadtest-{name}-"))
        if placed is None:
            self.instances = [Instance(n, free_port(), self.dir) for n in range(1, instances + 1)]
        else:
            self.instances = [Instance(n, 8080, self.dir, host=host, netns=netns)
                              for n, (host, netns) in enumerate(placed, start=1)]
        self.port = free_port()
        # The group's backends, when not the instances' own addresses (chaos-delay puts a relay
        # in front of one).
        self.backends: list[str] | None = None
        self.workers = workers
        self.extra_config = extra_config
        self.config_path = self.dir / "lbproxy.toml"
        self.proxy_log_path = self.dir / "lbproxy.log"
        self.proxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def config_text(self, extra: str | None = None, backends=None) -> str:
        backends = backends or self.backends or [i.address for i in self.instances]
        listed = ", ".join(f'"{b}"' for b in backends)
        return (
            f'[runtime]\nworkers = {self.workers}\npin_workers = false\ndrain_timeout = "10s"\n\n'
            # Any free port: 9901 may belong to an lbproxy already running on this machine.
            f'[admin]\naddress = "127.0.0.1:0"\n\n'
            f'[listener.http]\naddress = "127.0.0.1:{self.port}"\nupstream = "api"\n\n'
            f"[upstream.api]\nbackends = [{listed}]\n\n"
            f"{self.extra_config if extra is None else extra}\n"
        )

    def write_config(self, text: str):
        self.config_path.write_text(text)

    def start(self):
        for instance in self.instances:
            instance.start()
        self.write_config(self.config_text())
        log = open(self.proxy_log_path, "ab")
        self.proxy = subprocess.Popen(
            [str(BIN / "lbproxy"), "serve", "-c", str(self.config_path)],
            stdout=log, stderr=log,
        )
        wait_until("the proxy to answer", lambda: http_status(self.url) == 200)
        if self.proxy.poll() is not None:
            raise RuntimeError(f"the proxy exited at start:\n{self.proxy_log()}")
        return self

    def reload(self):
        self.proxy.send_signal(signal.SIGHUP)

    def proxy_log(self) -> str:
        return self.proxy_log_path.read_text(errors="replace")

    def metrics_text(self) -> str:
        """The proxy's /metrics (the admin server's port, picked by the kernel, is read from the
        proxy's log)."""
        found = re.search(r"admin: http://([0-9.]+:[0-9]+)/", self.proxy_log())
        if not found:
            raise RuntimeError(f"the proxy logged no admin address:\n{self.proxy_log()}")
        with urllib.request.urlopen(f"http://{found.group(1)}/metrics", timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str, where: str = "", text: str | None = None) -> float:
        """The sum of every sample of `name` in /metrics whose labels contain `where` (e.g.
        `backend="10.0.0.2:8080"`)."""
        text = self.metrics_text() if text is None else text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if (line.startswith(name + "{") or line.startswith(name + " ")) and where in line)

    def stop(self):
        if self.proxy and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                self.proxy.wait(30)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        for instance in self.instances:
            instance.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@dataclass
class LoadReport:
    """What wrk saw."""
    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    errors: dict = field(default_factory=dict)  # connect/read/write/timeout/non_2xx_3xx
    latency_ms: dict = field(default_factory=dict)  # p50/p75/p90/p99
    raw: str = ""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> LoadReport:
    report = LoadReport(raw=output)
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    report.requests = int(m.group(1))
    report.duration_s = _ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", output)
    report.rps = float(m.group(1)) if m else 0.0
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if m:
        for key, value in zip(["connect", "read", "write", "timeout"], m.groups()):
            errors[key] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if m:
        errors["non_2xx_3xx"] = int(m.group(1))
    report.errors = errors
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M):
        report.latency_ms[f"p{pct}"] = round(_ms(value), 3)
    return report


class Load:
    """wrk against `url` in the background for `seconds`."""

    def __init__(self, url: str, seconds: int, connections: int = 50, threads: int = 2,
                 headers: list[str] = (), timeout_s: int = 5, script: Path | None = None):
        self.args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                     f"--timeout={timeout_s}s", "--latency"]
        for header in headers:
            self.args += ["-H", header]
        if script is not None:
            self.args += ["-s", str(script)]
        self.args.append(url)
        self.seconds = seconds
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    def __enter__(self):
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def report(self) -> LoadReport:
        output, _ = self.process.communicate(timeout=self.seconds + 60)
        return parse_wrk(output)

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.kill()


@dataclass
class Result:
    scenario: str
    description: str
    passed: bool = False
    load: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    command: str = ""
    details: dict = field(default_factory=dict)  # scenario-specific numbers (soak, chaos)

    def judge(self, report: LoadReport, *extra_checks: tuple[bool, str]):
        """PASS only with zero failed requests and every extra check true."""
        self.load = {k: v for k, v in asdict(report).items() if k != "raw"}
        self.passed = report.requests > 0 and report.failed == 0
        if report.requests == 0:
            self.notes.append("the load generator completed no request")
        if report.failed:
            self.notes.append(f"{report.failed} failed requests: {report.errors}")
        for ok, what in extra_checks:
            if not ok:
                self.passed = False
                self.notes.append(f"check failed: {what}")
            else:
                self.notes.append(f"check passed: {what}")
        return self

    def write(self):
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.scenario}.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    def summary(self) -> str:
        load = self.load
        errors = ", ".join(f"{k} {v}" for k, v in load.get("errors", {}).items())
        lat = " ".join(f"{k}={v}ms" for k, v in load.get("latency_ms", {}).items())
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} {self.scenario}: {load.get('requests', 0)} requests "
                f"({load.get('rps', 0):.0f}/s); errors: {errors}; latency {lat}"
                + "".join(f"\n    - {n}" for n in self.notes))
