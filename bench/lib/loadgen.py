"""Load generators, each run as a subprocess on the non-proxy cores and parsed into one dict:

- wrk (saturation): `wrk -t1 -cN -dD --timeout 5s -s wrk_report.lua URL`, figures from the
  script's `done` callback (requests, errors, p50/p99/p99.9 in µs).
- oha (fixed offered rate): `oha -z D -c N -q RATE --latency-correction --no-tui
  --output-format json URL`; latency corrected for coordinated omission.
- curl (L4 throughput): one transfer of the large file, `-w` reports bytes and seconds.
"""

import json
import os
import shlex
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.relpath(os.path.join(HERE, "wrk_report.lua"))


def _run(argv, env=None, timeout=None):
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def wrk_command(url, connections, duration_s, body_bytes=0, close=False, accept_encoding=None):
    """(argv, env) for one wrk run; the same text goes into RESULTS.md."""
    env = {}
    if accept_encoding:
        env["BENCH_ACCEPT_ENCODING"] = accept_encoding
    if body_bytes:
        env["BENCH_BODY_BYTES"] = str(body_bytes)
    if close:
        env["BENCH_CLOSE"] = "1"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
            "-s", WRK_SCRIPT, url]
    return argv, env


def wrk(url, connections, duration_s, body_bytes=0, close=False, accept_encoding=None):
    argv, env = wrk_command(url, connections, duration_s, body_bytes, close, accept_encoding)
    out = _run(argv, env, timeout=duration_s + 60)
    line = next((l for l in out.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-1000:]}")
    raw = json.loads(line[len("BENCH_JSON "):])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {
        "requests": raw["requests"],
        "bytes": raw["bytes"],
        "seconds": seconds,
        "rps": raw["requests"] / seconds,
        # Response bytes on the wire (head and body, as framed) per response.
        "bytes_per_resp": raw["bytes"] / max(raw["requests"], 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "errors": errors,
        "error_detail": raw["errors"] if errors else None,
    }


def oha_command(url, connections, duration_s, rate, body_path=None):
    """`body_path`: POST that file's bytes as each request's body instead of a GET."""
    body = ["-m", "POST", "-D", body_path] if body_path else []
    return ["oha", "-z", f"{duration_s}s", "-c", str(connections), "-q", str(rate),
            "--latency-correction", "--no-tui", "--output-format", "json", *body, url]


def oha(url, connections, duration_s, rate, body_path=None):
    out = _run(oha_command(url, connections, duration_s, rate, body_path), timeout=duration_s + 60)
    raw = json.loads(out)
    summary = raw["summary"]
    pct = raw["latencyPercentiles"]
    statuses = raw.get("statusCodeDistribution", {})
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    total = sum(statuses.values())
    # Requests still in flight when -z ends are cancelled and reported as errors: not failures.
    failed = {k: n for k, n in raw.get("errorDistribution", {}).items() if "deadline" not in k}
    errors = (total - ok) + sum(failed.values())
    seconds = summary["total"]
    return {
        "requests": total,
        "seconds": seconds,
        "rps": total / seconds if seconds else 0.0,
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "p999_ms": (pct.get("p99.9") or 0) * 1000,
        "errors": errors,
        "error_detail": failed or None,
    }


def curl_command(url):
    return ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total} %{http_code}", url]


def curl_transfer(url, expected_bytes):
    """One download: (bytes, seconds); raises when the transfer came back short."""
    out = _run(curl_command(url), timeout=600)
    size, seconds, code = out.split()
    size, seconds = int(size), float(seconds)
    if code != "200" or size != expected_bytes:
        raise RuntimeError(f"transfer from {url}: status {code}, {size} of {expected_bytes} bytes")
    return size, seconds


def describe(argv, env=None):
    prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    return (prefix + " " if prefix else "") + " ".join(shlex.quote(a) for a in argv)
