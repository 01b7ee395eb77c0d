"""CPU time and memory of a process tree, read from /proc.

CPU is utime + stime from /proc/PID/stat (all threads of the process, in clock ticks), summed over
the process and its descendants (nginx's master and worker). Sampled right before and right after
a load run, the difference is the proxy's CPU for exactly that run. Memory is VmRSS (now) and
VmHWM (peak since start) from /proc/PID/status, in KiB, summed the same way.
"""

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root):
    """`root` and every live descendant."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids):
    """User + system CPU seconds consumed so far by `pids` (exited ones count as 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def memory_kib(pids, field):
    """Sum of a /proc/PID/status memory field (`VmRSS`, `VmHWM`) in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class CpuMeter:
    """Measures the CPU a set of processes uses between `start()` and `stop()`."""

    def __init__(self, pids):
        self.pids = pids
        self.begin = None

    def start(self):
        self.begin = cpu_seconds(self.pids)

    def stop(self):
        return cpu_seconds(self.pids) - self.begin
