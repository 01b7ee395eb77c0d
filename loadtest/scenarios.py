"""The fault-under-load scenarios. Each returns a `Result` that PASSes only when the load
generator saw zero failed requests (connect/read/write errors, timeouts, non-2xx/3xx) and the
scenario's own checks hold."""

from __future__ import annotations

import re
import signal
import subprocess
import time

from harness import Deployment, Load, LoadReport, Result, http_status, wait_until

SECONDS = 12  # load duration per scenario (``--seconds`` overrides)


def kill_instance(seconds: int) -> Result:
    """kill -9 of one of three instances while 50 connections send GETs."""
    result = Result("kill-instance", "kill -9 of one of three API instances under load")
    with Deployment("kill") as d, Load(d.url, seconds) as load:
        time.sleep(seconds / 3)
        d.instances[1].kill(signal.SIGKILL)
        report = load.report()
        result.command = " ".join(load.args)
        return result.judge(report, (d.instances[1].process.poll() is not None, "instance 2 is dead"))


def rolling_restart(seconds: int) -> Result:
    """Every instance restarted one after another (SIGTERM: drain and exit, then start again)."""
    result = Result("rolling-restart", "restart every API instance one by one under load")
    with Deployment("rolling") as d, Load(d.url, seconds) as load:
        time.sleep(1)
        for instance in d.instances:
            instance.stop()
            instance.start()
        restarted_in = load.elapsed()
        report = load.report()
        result.command = " ".join(load.args)
        return result.judge(
            report,
            (restarted_in < seconds, f"all {len(d.instances)} instances restarted while the load ran "
                                     f"({restarted_in:.1f}s of {seconds}s)"),
        )


def reload_storm(seconds: int) -> Result:
    """20 reloads (SIGHUP) with a changed configuration each time, under `Connection: close`
    traffic, so new connections are accepted throughout."""
    result = Result("reload-storm", "20 proxy reloads under Connection: close traffic")
    reloads = 20
    with Deployment("reload") as d, Load(d.url, seconds, headers=["Connection: close"]) as load:
        pause = (seconds - 2) / reloads
        for n in range(reloads):
            weights = [1 + (n + i) % 3 for i in range(len(d.instances))]
            backends = ", ".join(f'{{ address = "{i.address}", weight = {w} }}'
                                 for i, w in zip(d.instances, weights))
            text = d.config_text().replace(
                re.search(r"backends = \[.*\]", d.config_text()).group(0),
                f'balance = "weighted"\nbackends = [{backends}]')
            d.write_config(text)
            d.reload()
            time.sleep(pause)
        report = load.report()
        result.command = " ".join(load.args)
        log = d.proxy_log()
        reloaded = log.count("configuration reloaded")
        return result.judge(report, (reloaded == reloads,
                                     f"the proxy logged {reloaded} of {reloads} reloads as applied"))


def bad_reload(seconds: int) -> Result:
    """A reload with a broken configuration: refused, and the running one keeps serving."""
    result = Result("bad-reload", "a reload with a broken configuration under load")
    with Deployment("badreload") as d, Load(d.url, seconds) as load:
        time.sleep(seconds / 3)
        good = d.config_path.read_text()
        d.write_config(good + '\n[timeouts]\nclient_header = "soon"\n')
        d.reload()
        wait_until("the reload to be refused", lambda: "reload failed" in d.proxy_log())
        d.write_config(good)
        still_serving = http_status(d.url) == 200
        report = load.report()
        result.command = " ".join(load.args)
        log = d.proxy_log()
        return result.judge(
            report,
            ("reload failed" in log and "timeouts.client_header" in log,
             "the refusal is logged with the bad key"),
            (still_serving, "the proxy answered 200 right after the refused reload"),
        )


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _slowhttptest(args: list[str], seconds: int) -> subprocess.Popen:
    return subprocess.Popen(["slowhttptest", *args, "-l", str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _attack_report(process: subprocess.Popen, seconds: int) -> dict:
    out = ANSI.sub("", process.communicate(timeout=seconds + 60)[0])
    closed = [int(x) for x in re.findall(r"closed:\s+(\d+)", out)]
    available = re.findall(r"service available:\s+(\w+)", out)
    return {"closed": closed[-1] if closed else 0,
            "service_available": available[-1] if available else "?",
            "command": " ".join(process.args)}


def slow_clients(seconds: int) -> Result:
    """slowloris (slow heads), slow bodies and slow reads while normal clients keep being served:
    the attacks' connections are cut by the header timeout, the body deadline and the write
    limit (`client_idle`), the normal load sees no error."""
    result = Result("slow-clients", "slowloris, slow-body and slow-read attacks beside normal load")
    config = '[timeouts]\nclient_header = "2s"\nclient_body = "3s"\nclient_idle = "3s"\n'
    with Deployment("slow", extra_config=config) as d, Load(d.url, seconds) as load:
        attack_seconds = seconds - 2
        running = {
            "slowloris": _slowhttptest(["-H", "-c", "500", "-r", "100", "-i", "1", "-u", d.url],
                                       attack_seconds),
            "slow-body": _slowhttptest(["-B", "-c", "500", "-r", "100", "-i", "1", "-s", "100000",
                                        "-u", d.url + "echo"], attack_seconds),
            # Slow read: a 512..1024-byte receive window, 32 bytes read every 5 s, of a 64 MiB
            # body (far more than the kernel's socket buffers hold, so the proxy's writes stall).
            "slow-read": _slowhttptest(["-X", "-c", "500", "-r", "100", "-w", "512", "-y", "1024",
                                        "-n", "5", "-z", "32", "-k", "1",
                                        "-u", d.url + "bytes?n=67108864"], attack_seconds),
        }
        attacks = {name: _attack_report(p, attack_seconds) for name, p in running.items()}
        # slowhttptest counts a reset slow reader only once it has read out what its tiny
        # window already holds (minutes at 32 bytes per 5 s): the proxy's own count says it.
        slow_readers_reset = int(d.metric("lbproxy_listener_slow_readers_reset_total"))
        attacks["slow-read"]["reset_by_proxy"] = slow_readers_reset
        report = load.report()
        result.command = " ".join(load.args)
        result.notes.append(f"attacks: {attacks}")
        return result.judge(
            report,
            (attacks["slowloris"]["closed"] > 0, "the proxy closed slowloris connections (header timeout)"),
            (attacks["slow-body"]["closed"] > 0, "the proxy closed slow-body connections (body deadline)"),
            (slow_readers_reset > 0,
             f"the proxy reset {slow_readers_reset} slow-read connections (client_idle write limit; "
             "lbproxy_listener_slow_readers_reset_total)"),
        )


def ten_thousand_connections(seconds: int) -> Result:
    """10 000 concurrent client connections, each sending GETs."""
    result = Result("10k-connections", "10 000 concurrent keep-alive client connections")
    with Deployment("c10k") as d, Load(d.url, seconds, connections=10_000, timeout_s=10) as load:
        report = load.report()
        result.command = " ".join(load.args)
        return result.judge(report)


def _merged(reports: list[LoadReport]) -> LoadReport:
    """Several wrk runs as one: requests and errors summed, the worst latency percentiles."""
    merged = LoadReport()
    for report in reports:
        merged.requests += report.requests
        merged.duration_s += report.duration_s
        for kind, count in report.errors.items():
            merged.errors[kind] = merged.errors.get(kind, 0) + count
        for pct, ms in report.latency_ms.items():
            merged.latency_ms[pct] = max(merged.latency_ms.get(pct, 0.0), ms)
    merged.rps = merged.requests / merged.duration_s if merged.duration_s else 0.0
    return merged


def dead_backends(seconds: int) -> Result:
    """N−1 of N instances dead (2 of 3, 3 of 4), with the default configuration and with
    `[health]`: the one left answers everything (refused connections fail over for free)."""
    result = Result("dead-backends", "2 of 3 and 3 of 4 instances killed, with and without [health]")
    phase_seconds = max(3, seconds // 4)
    health = '[upstream.api.health]\ninterval = "500ms"\n'
    reports, commands, checks = [], [], []
    for instances, extra in [(3, ""), (4, ""), (3, health), (4, health)]:
        with Deployment(f"dead{instances}", instances=instances, extra_config=extra) as d:
            for instance in d.instances[1:]:
                instance.kill(signal.SIGKILL)
                instance.process.wait(10)
            dead = all(i.process.poll() is not None for i in d.instances[1:])
            with Load(d.url + "delay?ms=50", phase_seconds) as load:
                reports.append(load.report())
                commands.append(" ".join(load.args))
            label = f"{instances - 1} of {instances} dead" + (" with [health]" if extra else "")
            checks.append((dead, f"{label}: the instances are dead"))
            print(f"    {label}: {reports[-1].requests} requests, errors {reports[-1].errors}", flush=True)
    result.command = " ; ".join(commands)
    return result.judge(_merged(reports), *checks)


SCENARIOS = {
    "kill-instance": kill_instance,
    "rolling-restart": rolling_restart,
    "reload-storm": reload_storm,
    "bad-reload": bad_reload,
    "slow-clients": slow_clients,
    "10k-connections": ten_thousand_connections,
    "dead-backends": dead_backends,
}
