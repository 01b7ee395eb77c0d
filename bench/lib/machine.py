"""A description of the machine and the software versions, for the head of RESULTS.md."""

import os
import platform
import subprocess


def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def _load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe(lbproxy_binary, repo_root):
    commit = _first_line(["git", "-C", repo_root, "log", "-1", "--format=%h %s"])
    dirty = subprocess.run(["git", "-C", repo_root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} CPUs",
        "memory": f"{_memory_gib():.1f} GiB",
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "load_average_at_start": _load_average(),
        "lbproxy": f"{lbproxy_binary} (commit {commit}{', with local changes' if dirty else ''})",
        "rustc": _first_line(["rustc", "--version"]),
        "nginx": _first_line(["nginx", "-v"]),
        "haproxy": _first_line(["haproxy", "-v"]),
        "wrk": _first_line(["wrk", "--version"]),
        "oha": _first_line(["oha", "--version"]),
        "curl": _first_line(["curl", "--version"]),
        "io_uring_disabled": open("/proc/sys/kernel/io_uring_disabled").read().strip()
        if os.path.exists("/proc/sys/kernel/io_uring_disabled") else "n/a",
    }
