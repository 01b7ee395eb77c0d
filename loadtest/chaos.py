"""Chaos on the network path: backends in network namespaces, the link to them degraded with the
kernel's own tools, and the proxy's documented answers (docs/config.md: `[timeouts]`,
`[upstream.NAME.outlier]`, `[upstream.NAME.retry]`) checked request by request.

Each scenario needs root. It creates one network namespace per backend, joined to the root
namespace by a veth pair (10.237.N.1 here, 10.237.N.2 there), runs the demo API (or a black hole)
inside, and removes the namespaces (their veths, qdiscs and rules go with them) and its nftables
table when it ends. The proxy and the load stay in the root namespace on loopback; no traffic
leaves the machine.

What this kernel offers, and what each scenario uses (`tc qdisc add ... netem` answers "Specified
qdisc kind is unknown": CONFIG_NET_SCH_NETEM is not set, nor prio, sfq or fq_codel, nor the tc
classifiers and actions; tbf, htb and nftables are there):
- chaos-loss: nftables `numgen random mod 100 < 5 drop`, both ways on every backend's veth;
- chaos-reorder: a quarter of the packets, picked by nftables (`meta priority set numgen random`),
  go through a slow HTB class while the rest take a fast one, both ways: real reordering in the
  kernel (the TCP reorder counters are read to prove it), though not netem's model of it;
- chaos-delay: **not the kernel**: a user-space relay (delay_relay.py) in the backend's namespace
  holds each chunk of the stream for the delay, both ways. The nearest honest stand-in for
  `netem delay` here: latency per chunk, not per packet, and the TCP handshake is not delayed;
- chaos-link-cut: the link cut two ways: silently (nftables drops every packet, as a pulled cable
  behind a switch) and loudly (`ip link set down`: the route goes, connects fail at once);
- chaos-blackhole: a backend that accepts connections and never answers.

The load is a closed loop of keep-alive clients (threads with http.client) that records every
request's start, latency, status and `X-Instance`, so each check can say which request failed,
when, and on which instance.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import Deployment, LoadReport, Result, wait_until

HERE = Path(__file__).resolve().parent
SUBNET = "10.237"
CONNECT_S = 0.5
RESPONSE_S = 1.0
CONSECUTIVE = 3
CLIENTS = 8
WORKERS = 2

TIMEOUTS = f'[timeouts]\nupstream_connect = "{int(CONNECT_S * 1000)}ms"\nupstream_response = "{int(RESPONSE_S * 1000)}ms"\n\n'


def outlier(base_ejection: str) -> str:
    return (f'[upstream.api.outlier]\nconsecutive_failures = {CONSECUTIVE}\n'
            f'base_ejection_time = "{base_ejection}"\nmax_ejection_time = "{base_ejection}"\n')


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _preflight() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables, tc): run loadtest/run.sh as root"
    needs = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}
    missing = [f"{tool} (apt-get install {package})" for tool, package in needs.items() if not shutil.which(tool)]
    return f"missing tools: {', '.join(missing)}; loadtest/run.sh installs them" if missing else None


class Lab:
    """`count` network namespaces, each with one veth to the root namespace."""

    def __init__(self, count: int):
        tag = f"{os.getpid() % 100000}"
        self.namespaces = [f"lbpchaos{tag}n{n}" for n in range(1, count + 1)]
        self.host_links = [f"lbc{tag}h{n}" for n in range(1, count + 1)]
        self.table = f"lbpchaos{tag}"
        self.helpers: list[subprocess.Popen] = []
        self.dir = Path(tempfile.mkdtemp(prefix="lbproxy-chaos-"))

    @staticmethod
    def ip(n: int) -> str:
        return f"{SUBNET}.{n}.2"

    def __enter__(self):
        taken = sh("ip", "-4", "addr").stdout + sh("ip", "-4", "route").stdout
        if f"{SUBNET}." in taken:
            raise RuntimeError(f"{SUBNET}.0.0/16 is already in use on this machine; chaos needs it")
        try:
            # With a link down its /24 route goes; without this the default route would carry
            # the backend's traffic off the machine. Unreachable instead: connects fail at once.
            sh("ip", "route", "add", "unreachable", f"{SUBNET}.0.0/16")
            for n, (ns, link) in enumerate(zip(self.namespaces, self.host_links), start=1):
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
                sh("ip", "addr", "add", f"{SUBNET}.{n}.1/24", "dev", link)
                sh("ip", "link", "set", link, "up")
                sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{n}.2/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.__exit__()
            raise
        return self

    def helper(self, n: int, *command: str) -> subprocess.Popen:
        """A process in namespace `n` (1-based), stopped when the lab closes."""
        log = open(self.dir / f"helper-{n}-{len(self.helpers)}.log", "ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.namespaces[n - 1], *command],
                                   stdout=log, stderr=log)
        self.helpers.append(process)
        return process

    def nft(self, rules: str):
        """Replaces this lab's nftables table (in the root namespace) with `rules`."""
        sh("nft", "delete", "table", "inet", self.table, check=False)
        if rules:
            script = self.dir / "rules.nft"
            script.write_text(f"table inet {self.table} {{\n{rules}\n}}\n")
            sh("nft", "-f", str(script))

    def nft_in(self, n: int, rules: str):
        """The same inside namespace `n` (its traffic towards the root namespace)."""
        ns = self.namespaces[n - 1]
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", self.table, check=False)
        if rules:
            script = self.dir / f"rules-{n}.nft"
            script.write_text(f"table inet {self.table} {{\n{rules}\n}}\n")
            sh("ip", "netns", "exec", ns, "nft", "-f", str(script))

    def tcp_counters(self) -> dict:
        """TCP retransmissions and reorder/out-of-order events, summed over the root namespace
        and every backend namespace (each socket counts in its own namespace)."""
        keys = ("RetransSegs", "TCPSACKReorder", "TCPTSReorder", "TCPRenoReorder", "TCPOFOQueue")
        total = dict.fromkeys(keys, 0)
        for prefix in [[]] + [["ip", "netns", "exec", ns] for ns in self.namespaces]:
            for path in ("/proc/net/snmp", "/proc/net/netstat"):
                lines = sh(*prefix, "cat", path).stdout.splitlines() if prefix else \
                    Path(path).read_text().splitlines()
                for names, values in zip(lines[::2], lines[1::2]):
                    for name, value in zip(names.split()[1:], values.split()[1:]):
                        if name in total:
                            total[name] += int(value)
        return total

    def __exit__(self, *exc):
        for process in self.helpers:
            if process.poll() is None:
                process.kill()
                process.wait()
        sh("nft", "delete", "table", "inet", self.table, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)  # its end of each veth, and so the pair
        sh("ip", "route", "del", "unreachable", f"{SUBNET}.0.0/16", check=False)


@dataclass
class Record:
    start: float
    latency: float
    status: int | None  # None: no response (the error says why)
    instance: str | None
    error: str = ""


class RecordingLoad:
    """`clients` keep-alive clients sending `GET path` back to back, every request recorded."""

    def __init__(self, port: int, path: str = "/", clients: int = CLIENTS):
        self.port, self.path, self.clients = port, path, clients
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.began = time.monotonic()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def clock(self) -> float:
        return time.monotonic() - self.began

    def _client(self):
        conn = None
        while not self.stopped.is_set():
            start = self.clock()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                record = Record(start, self.clock() - start, response.status, response.getheader("X-Instance"))
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as error:  # noqa: BLE001 - recorded, then judged
                record = Record(start, self.clock() - start, None, None, str(error) or repr(error))
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.records.append(record)

    def __enter__(self):
        self.began = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(30)

    def between(self, start: float, end: float) -> list[Record]:
        with self.lock:
            return [r for r in self.records if start <= r.start < end]


def stats(records: list[Record]) -> dict:
    latencies = sorted(r.latency for r in records)

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 2) if latencies else None
    by_instance: dict = {}
    for r in records:
        by_instance[r.instance or "-"] = by_instance.get(r.instance or "-", 0) + 1
    failures: dict = {}
    for r in records:
        if r.status != 200:
            key = str(r.status) if r.status is not None else "no response"
            failures[key] = failures.get(key, 0) + 1
    return {"requests": len(records), "failed": failures, "p50_ms": pct(50), "p99_ms": pct(99),
            "max_ms": pct(100), "by_instance": dict(sorted(by_instance.items()))}


def report_of(records: list[Record], seconds: float) -> LoadReport:
    s = stats(records)
    report = LoadReport(requests=len(records), duration_s=round(seconds, 2),
                        rps=len(records) / seconds if seconds else 0.0)
    report.errors = {f"status_{k}" if k[0].isdigit() else k.replace(" ", "_"): v for k, v in s["failed"].items()}
    report.latency_ms = {"p50": s["p50_ms"], "p99": s["p99_ms"], "max": s["max_ms"]}
    return report


def _deployment(name: str, lab: Lab, ready: list[int], extra: str, backends: list[str] | None = None) -> Deployment:
    d = Deployment(name, extra_config=extra, workers=WORKERS,
                   placed=[(lab.ip(n), lab.namespaces[n - 1]) for n in ready])
    d.backends = backends
    return d


def _expected_failures(records: list[Record], statuses=(504,)) -> tuple[list[Record], list[Record]]:
    """(the failures with an expected status, every other failure)."""
    failed = [r for r in records if r.status != 200]
    return [r for r in failed if r.status in statuses], [r for r in failed if r.status not in statuses]


def _ejections(d: Deployment, address: str) -> int:
    return int(d.metric("lbproxy_backend_ejections_total", where=f'"{address}"'))


def _finish(result: Result, records: list[Record], seconds: float, details: dict, checks) -> Result:
    result.details = details
    for key, value in details.items():
        result.notes.append(f"{key}: {value}")
    report = report_of(records, seconds)
    result.judge(report, *checks)
    # judge() counts every non-200 as a failure; the scenario's own checks decide which were
    # the documented answer to the fault.
    result.passed = report.requests > 0 and all(ok for ok, _ in checks)
    result.notes = [n for n in result.notes if not n.endswith("failed requests: " + str(report.errors))
                    and "failed requests:" not in n]
    return result


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

def chaos_blackhole(seconds: int | None) -> Result:
    """Backend 3 accepts connections and never answers. Documented: a request sent to it gets
    504 after timeouts.upstream_response and is not retried (a timeout never is); after
    consecutive_failures such failures in a row a worker ejects it; the others are unaffected."""
    seconds = seconds or 15
    result = Result("chaos-blackhole", "a backend that accepts and never answers (504 after upstream_response, ejection)")
    if (problem := _preflight()):
        result.notes.append(problem)
        return result
    with Lab(3) as lab:
        hole = f"{lab.ip(3)}:8080"
        lab.helper(3, sys.executable, "-c", BLACKHOLE, lab.ip(3), "8080")
        wait_until("the black hole to listen", lambda: _connects(lab.ip(3), 8080))
        d = _deployment("blackhole", lab, [1, 2], TIMEOUTS + outlier("60s"),
                        backends=[f"{lab.ip(1)}:8080", f"{lab.ip(2)}:8080", hole])
        with d:
            with RecordingLoad(d.port) as load:
                time.sleep(seconds)  # the load's duration (not a readiness wait)
            ejected = _ejections(d, hole)
            others_ejected = _ejections(d, f"{lab.ip(1)}:8080") + _ejections(d, f"{lab.ip(2)}:8080")
        records = load.records
    timeouts, other = _expected_failures(records)
    bound = WORKERS * CONSECUTIVE + CLIENTS
    lat = [r.latency for r in timeouts]
    last = max((r.start + r.latency for r in timeouts), default=0.0)
    served = [r for r in records if r.status == 200]
    details = {"all": stats(records), "504s": len(timeouts),
               "504_latency_s": [round(min(lat), 3), round(max(lat), 3)] if lat else None,
               "last_504_at_s": round(last, 2), "ejections_of_the_black_hole": ejected,
               "bound_on_504s": bound}
    return _finish(result, records, seconds, details, [
        (len(timeouts) > 0, f"requests reached the black hole and got 504 ({len(timeouts)})"),
        (not other, f"every failure was a 504 ({len(other)} others: {[(r.status, r.error) for r in other[:3]]})"),
        (all(RESPONSE_S - 0.05 <= x <= RESPONSE_S + 0.6 for x in lat),
         f"each 504 came after upstream_response ({RESPONSE_S}s): {details['504_latency_s']} s"),
        (len(timeouts) <= bound,
         f"{len(timeouts)} 504s <= {WORKERS} workers x consecutive_failures {CONSECUTIVE} + {CLIENTS} in flight"),
        (ejected >= 1 and others_ejected == 0, f"the black hole was ejected ({ejected}), no other backend ({others_ejected})"),
        (last < seconds / 2, f"no 504 after ejection: the last ended at {last:.1f}s of {seconds}s"),
        (len(served) > 0 and all(r.instance in ("1", "2") for r in served),
         f"the two good backends answered the other {len(served)} requests"),
    ])


BLACKHOLE = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4096)
held = []
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = s.accept(); held.append(c)
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"""


def _connects(host: str, port: int) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def chaos_link_cut(seconds: int | None) -> Result:
    """Backend 2's link cut twice under load: silently (nftables drops everything: connects time
    out, requests on open connections get no answer) and loudly (`ip link set down`: the route
    goes, connects fail at once), each time restored. Documented: connect failures and timeouts
    go to the next backend (nothing was sent), a request on a connection that goes silent gets
    504 after upstream_response, the backend is ejected after consecutive_failures and
    readmitted (half-open trial) once it answers again."""
    seconds = seconds or 24
    result = Result("chaos-link-cut", "backend 2's link cut (silent drop, then link down) and restored under load")
    if (problem := _preflight()):
        result.notes.append(problem)
        return result
    phase = seconds / 6
    with Lab(3) as lab:
        d = _deployment("linkcut", lab, [1, 2, 3], TIMEOUTS + outlier("2s"))
        cut = f"{lab.ip(2)}:8080"
        link = lab.host_links[1]
        with d:
            with RecordingLoad(d.port) as load:
                marks = {}
                time.sleep(phase)
                marks["silent_cut"] = load.clock()
                lab.nft(f'chain out {{ type filter hook output priority 0; policy accept; oifname "{link}" drop; }}\n'
                        f'chain in {{ type filter hook input priority 0; policy accept; iifname "{link}" drop; }}')
                time.sleep(phase)
                lab.nft("")
                marks["silent_restored"] = load.clock()
                time.sleep(phase * 1.5)
                marks["link_down"] = load.clock()
                sh("ip", "link", "set", link, "down")
                time.sleep(phase)
                sh("ip", "link", "set", link, "up")
                marks["link_up"] = load.clock()
                time.sleep(phase * 1.5)
                marks["end"] = load.clock()
            ejected = _ejections(d, cut)
        records = load.records
    expected, other = _expected_failures(records, statuses=(502, 504))

    def during(start, end):
        return [r for r in expected if start <= r.start < end + RESPONSE_S + 0.5]
    silent = during(marks["silent_cut"], marks["silent_restored"])
    loud = during(marks["link_down"], marks["link_up"])
    outside = [r for r in expected if r not in silent and r not in loud]
    bound = CLIENTS + WORKERS * CONSECUTIVE + ejected
    back_after_silent = [r for r in load.between(marks["silent_restored"], marks["link_down"]) if r.instance == "2"]
    back_after_link = [r for r in load.between(marks["link_up"], marks["end"]) if r.instance == "2"]
    phases = {name: stats(load.between(a, b)) for name, (a, b) in {
        "before": (0, marks["silent_cut"]), "silent cut": (marks["silent_cut"], marks["silent_restored"]),
        "restored": (marks["silent_restored"], marks["link_down"]), "link down": (marks["link_down"], marks["link_up"]),
        "link up": (marks["link_up"], marks["end"])}.items()}
    details = {"phases": phases, "failures_silent_cut": len(silent), "failures_link_down": len(loud),
               "ejections_of_backend_2": ejected, "bound_per_cut": bound,
               "backend_2_requests_after_silent_restore": len(back_after_silent),
               "backend_2_requests_after_link_up": len(back_after_link), "marks_s": {k: round(v, 2) for k, v in marks.items()}}
    return _finish(result, records, seconds, details, [
        (not other, f"every failure was the proxy's 502/504 ({len(other)} others: {[(r.status, r.error) for r in other[:3]]})"),
        (not outside, f"no failure outside the two cuts ({len(outside)})"),
        (len(silent) <= bound and len(loud) <= bound,
         f"failures per cut ({len(silent)} silent, {len(loud)} link down) <= {CLIENTS} in flight + "
         f"{WORKERS} workers x {CONSECUTIVE} + {ejected} half-open trials"),
        (all(r.status == 504 and RESPONSE_S - 0.05 <= r.latency <= RESPONSE_S + 0.6 for r in silent),
         "each silent-cut failure was a 504 after upstream_response"),
        (ejected >= 1, f"backend 2 was ejected ({ejected} ejections)"),
        (phases["silent cut"]["requests"] > 0 and phases["link down"]["requests"] > 0,
         "the other backends kept answering during both cuts"),
        (len(back_after_silent) > 0 and len(back_after_link) > 0,
         f"backend 2 served again after each restore ({len(back_after_silent)}, {len(back_after_link)} requests)"),
    ])


def _degrade_both_ways(lab: Lab, ns_rule: str, host_rule: str):
    """The same nftables statement on every veth, in the root namespace (towards the backends)
    and in each backend's namespace (towards the proxy)."""
    links = ", ".join(f'"{link}"' for link in lab.host_links)
    lab.nft(f"chain post {{ type filter hook postrouting priority 0; policy accept; oifname {{ {links} }} {host_rule}; }}")
    for n in range(1, len(lab.namespaces) + 1):
        lab.nft_in(n, f'chain post {{ type filter hook postrouting priority 0; policy accept; oifname "eth0" {ns_rule}; }}')


def _baseline_then(name: str, description: str, seconds: int, degrade, restore, lab_extra=None) -> tuple:
    """Half the run clean, half degraded: (result, records, phases, counters, ejections)."""
    result = Result(name, description)
    if (problem := _preflight()):
        result.notes.append(problem)
        return result, None, None, None, None
    with Lab(3) as lab:
        if lab_extra:
            lab_extra(lab)
        d = _deployment(name, lab, [1, 2, 3], "[upstream.api.outlier]\nconsecutive_failures = 5\n")
        with d:
            with RecordingLoad(d.port, "/bytes?n=65536") as load:
                time.sleep(seconds / 2)
                mark = load.clock()
                before = lab.tcp_counters()
                degrade(lab)
                time.sleep(seconds / 2)
                end = load.clock()
                after = lab.tcp_counters()
                restore(lab)
            ejections = sum(_ejections(d, f"{lab.ip(n)}:8080") for n in (1, 2, 3))
    counters = {k: after[k] - before[k] for k in after}
    phases = {"clean": stats(load.between(0, mark)), "degraded": stats(load.between(mark, end))}
    return result, load.records, phases, counters, ejections


def chaos_loss(seconds: int | None) -> Result:
    """5 % of packets dropped both ways on every backend's link. Documented: nothing for the
    proxy to do (TCP retransmits; a connect that times out goes to the next backend): no failed
    request, a longer tail."""
    seconds = seconds or 20
    rule = "numgen random mod 100 < 5 drop"
    result, records, phases, counters, ejections = _baseline_then(
        "chaos-loss", "5% packet loss both ways on every backend link (nftables numgen random drop)", seconds,
        lambda lab: _degrade_both_ways(lab, rule, rule), lambda lab: _degrade_both_ways(lab, "accept", "accept"))
    if records is None:
        return result
    details = {"phases": phases, "tcp_during_loss": counters, "ejections": ejections}
    return _finish(result, records, seconds, details, [
        (not phases["clean"]["failed"] and not phases["degraded"]["failed"],
         f"no failed request, clean or lossy ({phases['clean']['failed']}, {phases['degraded']['failed']})"),
        (counters["RetransSegs"] > 0, f"the loss was real: {counters['RetransSegs']} TCP retransmissions"),
        (phases["degraded"]["p99_ms"] > phases["clean"]["p99_ms"],
         f"the tail grew: p99 {phases['clean']['p99_ms']} -> {phases['degraded']['p99_ms']} ms"),
    ])


def _reorder_lanes(lab: Lab):
    """A fast and a slow HTB class on both ends of every veth; nftables picks the class."""
    for n, link in enumerate(lab.host_links, start=1):
        for prefix in ([], ["ip", "netns", "exec", lab.namespaces[n - 1]]):
            dev = link if not prefix else "eth0"
            sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000")
            sh(*prefix, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
            sh(*prefix, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
               "rate", "20mbit", "ceil", "20mbit")


def chaos_reorder(seconds: int | None) -> Result:
    """A quarter of the packets, both ways, take a slower lane (20 Mbit/s HTB class) than the
    rest: they arrive after packets sent later. Documented: nothing for the proxy to do (TCP
    reassembles): no failed request."""
    seconds = seconds or 20
    slow = "meta priority set numgen random mod 4 map { 0 : 1:20, 1 : 1:10, 2 : 1:10, 3 : 1:10 }"
    result, records, phases, counters, ejections = _baseline_then(
        "chaos-reorder", "25% of packets both ways through a slower HTB lane (reordering)", seconds,
        lambda lab: _degrade_both_ways(lab, slow, slow), lambda lab: _degrade_both_ways(lab, "accept", "accept"),
        lab_extra=_reorder_lanes)
    if records is None:
        return result
    reordered = counters["TCPSACKReorder"] + counters["TCPTSReorder"] + counters["TCPRenoReorder"]
    details = {"phases": phases, "tcp_during_reordering": counters, "ejections": ejections}
    return _finish(result, records, seconds, details, [
        (not phases["clean"]["failed"] and not phases["degraded"]["failed"],
         f"no failed request, in order or not ({phases['clean']['failed']}, {phases['degraded']['failed']})"),
        (reordered > 0 and counters["TCPOFOQueue"] > 0,
         f"the reordering was real: {reordered} reorder detections, {counters['TCPOFOQueue']} segments queued out of order"),
    ])


def chaos_delay(seconds: int | None) -> Result:
    """Backend 1 behind a delaying relay (see delay_relay.py: the stand-in for netem): first
    150 ms each way (a round trip of 300 ms, under upstream_response), then 800 ms each way
    (1.6 s, over it). Documented: a slow backend is only slow; one slower than
    upstream_response gets its requests answered 504 after that timeout, not retried, and is
    ejected after consecutive_failures; the others are unaffected."""
    seconds = seconds or 20
    result = Result("chaos-delay", "backend 1 delayed 150 ms then 800 ms each way (user-space relay; no netem here)")
    if (problem := _preflight()):
        result.notes.append(problem)
        return result
    with Lab(3) as lab:
        delay_file = lab.dir / "delay-ms"
        delay_file.write_text("150")
        d = _deployment("delay", lab, [1, 2, 3], TIMEOUTS + outlier("60s"),
                        backends=[f"{lab.ip(1)}:8081", f"{lab.ip(2)}:8080", f"{lab.ip(3)}:8080"])
        lab.helper(1, sys.executable, str(HERE / "delay_relay.py"), f"{lab.ip(1)}:8081", f"{lab.ip(1)}:8080",
                   str(delay_file))
        wait_until("the relay to listen", lambda: _connects(lab.ip(1), 8081))
        with d:
            with RecordingLoad(d.port) as load:
                time.sleep(seconds / 2)
                mark = load.clock()
                delay_file.write_text("800")
                time.sleep(seconds / 2)
                end = load.clock()
            ejected = _ejections(d, f"{lab.ip(1)}:8081")
    first, second = load.between(0, mark), load.between(mark, end)
    slow_ok = [r for r in first if r.instance == "1" and r.status == 200]
    fast_ok = [r for r in first if r.instance in ("2", "3") and r.status == 200]
    timeouts, other = _expected_failures(second)
    lat = [r.latency for r in timeouts]
    details = {"150ms": stats(first), "800ms": stats(second),
               "backend_1_latency_ms_at_150ms": [round(min(r.latency for r in slow_ok) * 1000, 1),
                                                 round(statistics.median(r.latency for r in slow_ok) * 1000, 1)]
               if slow_ok else None,
               "504s_at_800ms": len(timeouts), "504_latency_s": [round(min(lat), 3), round(max(lat), 3)] if lat else None,
               "ejections_of_backend_1": ejected}
    bound = WORKERS * CONSECUTIVE + CLIENTS
    return _finish(result, first + second, seconds, details, [
        (not stats(first)["failed"], f"no failure at 150 ms each way ({stats(first)['failed']})"),
        (bool(slow_ok) and min(r.latency for r in slow_ok) >= 0.3,
         f"backend 1's answers took the 300 ms round trip or more ({details['backend_1_latency_ms_at_150ms']} ms min/median)"),
        (bool(fast_ok) and statistics.median(r.latency for r in fast_ok) < 0.1, "the other backends stayed fast"),
        (not other and [r for r in first if r.status != 200] == [],
         f"every failure was a 504 ({len(other)} others: {[(r.status, r.error) for r in other[:3]]})"),
        (0 < len(timeouts) <= bound and all(RESPONSE_S - 0.05 <= x <= RESPONSE_S + 0.6 for x in lat),
         f"at 800 ms each way: {len(timeouts)} requests got 504 after upstream_response {details['504_latency_s']} s "
         f"(<= {bound})"),
        (ejected >= 1, f"backend 1 was ejected ({ejected})"),
    ])


CHAOS = {
    "chaos-delay": chaos_delay,
    "chaos-loss": chaos_loss,
    "chaos-reorder": chaos_reorder,
    "chaos-link-cut": chaos_link_cut,
    "chaos-blackhole": chaos_blackhole,
}
