"""Starting, pinning, probing and stopping the processes under test.

Every process is started with `taskset -c CPUS` (so the command line in RESULTS.md is exactly
what ran) in its own session, logs to a file in the work directory, and is stopped by its pid
(SIGTERM, then SIGKILL after 10 s). `stop_all` runs at exit so nothing outlives the harness.
"""

import atexit
import http.client
import os
import shlex
import signal
import ssl
import subprocess
import time

_running = []


class Process:
    def __init__(self, name, argv, cpus, log_path, env=None):
        self.name = name
        self.argv = ["taskset", "-c", cpus] + list(argv)
        self.log_path = log_path
        log = open(log_path, "wb")
        full_env = dict(os.environ, **(env or {}))
        self.env_note = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, start_new_session=True)
        log.close()
        _running.append(self)

    @property
    def pid(self):
        return self.popen.pid

    @property
    def command(self):
        prefix = f"{self.env_note} " if self.env_note else ""
        return prefix + " ".join(shlex.quote(a) for a in self.argv)

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self in _running:
            _running.remove(self)


def stop_all():
    for process in list(_running):
        process.stop()


atexit.register(stop_all)


def http_get(port, path="/small", tls=False, timeout=2.0):
    """Status of one GET to 127.0.0.1:port, or None if it failed."""
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status
    except (OSError, http.client.HTTPException):
        return None


def wait_until_serving(process, port, tls=False, deadline_s=15.0):
    """Polls until `port` answers a GET with 200. Raises with the process's log if it never does."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        if http_get(port, tls=tls) == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"{process.name} did not answer on port {port} within {deadline_s}s:\n{process.log_tail()}")


def port_is_free(port):
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
