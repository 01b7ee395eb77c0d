"""Where everything runs: CPUs, ports, the work directory and the files the backends serve.

Pinning: the proxy under test gets one core to itself (`proxy_cpu`, core 0); the load generator,
the backends and this harness share the other cores (`other_cpus`). Every peer runs one worker
(one thread), so CPU per request is directly comparable.

Ports (loopback, below the ephemeral range so no test's port-0 bind can take them; shown for the
default BENCH_PORT_BASE=18000):
  18101, 18102  the two HTTP backends (one static nginx, two listeners)
  18103         the backend's TLS listener (the "direct" row of the TLS scenarios)
  182N1..182N6  target N's HTTP, HTTPS, L4 (splice), L4 (copy), gzip (HTTP, compressing) and
                policy (HTTP with an access list, trusted proxies, a rate limit and connection
                limits, none of which refuses the load)
                listeners
"""

import os
import resource
import subprocess
from dataclasses import dataclass, field

# BENCH_PORT_BASE moves the whole plan (tests/run.sh's smoke stage uses another base, so it never
# collides with a full run on the same machine).
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "18000"))
BACKEND_PORTS = (PORT_BASE + 101, PORT_BASE + 102)
BACKEND_TLS_PORT = PORT_BASE + 103
SMALL_BODY_BYTES = 128
LARGE_BODY_BYTES = 1 << 20
# The compression scenario's document: JSON of this size, as an API would send it.
JSON_BODY_BYTES = 100 * 1024


@dataclass
class Layout:
    workdir: str
    proxy_cpu: int
    other_cpus: list
    l4_bytes: int
    stream_module: str = "/usr/lib/nginx/modules/ngx_stream_module.so"
    started: list = field(default_factory=list)

    @staticmethod
    def create(workdir, l4_bytes):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("bench: needs at least 2 CPUs (one for the proxy, one for the rest)")
        layout = Layout(workdir=workdir, proxy_cpu=cpus[0], other_cpus=cpus[1:], l4_bytes=l4_bytes)
        os.makedirs(layout.path("www"), exist_ok=True)
        layout._write_files()
        layout._make_certificate()
        return layout

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def nofile(self):
        """Descriptors a process may open here (the hard limit; bench/run.sh raises the soft one)."""
        return resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    @property
    def proxy_cpu_list(self):
        return str(self.proxy_cpu)

    @property
    def other_cpu_list(self):
        return ",".join(str(c) for c in self.other_cpus)

    def pin_harness(self):
        """This process (and the load generators it starts) stays off the proxy's core."""
        os.sched_setaffinity(0, self.other_cpus)

    @staticmethod
    def target_port(index, kind):
        offset = {"http": 1, "https": 2, "l4_splice": 3, "l4_copy": 4, "gzip": 5,
                  "policy": 6}[kind]
        return PORT_BASE + 200 + 10 * index + offset

    def _write_files(self):
        with open(self.path("www", "small"), "wb") as f:
            f.write(b"x" * (SMALL_BODY_BYTES - 1) + b"\n")
        with open(self.path("www", "upload"), "wb") as f:
            f.write(b"POST target (see configs.backend_nginx)\n")
        with open(self.path("www", "1m"), "wb") as f:
            f.write(os.urandom(LARGE_BODY_BYTES))
        with open(self.path("www", "data.json"), "wb") as f:
            f.write(json_document(JSON_BODY_BYTES))
        with open(self.path("www", "small.json"), "wb") as f:
            f.write(json_document(SMALL_BODY_BYTES))
        # The L4 transfer: a file the backend sends with sendfile (kept in the page cache).
        big = self.path("www", "big")
        if not os.path.exists(big) or os.path.getsize(big) != self.l4_bytes:
            block = os.urandom(1 << 20)
            with open(big, "wb") as f:
                for _ in range(self.l4_bytes >> 20):
                    f.write(block)

    def _make_certificate(self):
        """A self-signed ECDSA P-256 certificate for 127.0.0.1 / localhost (every TLS peer uses it)."""
        cert, key = self.path("cert.pem"), self.path("key.pem")
        if not os.path.exists(cert):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "30", "-subj", "/CN=localhost", "-keyout", key, "-out", cert,
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                check=True, capture_output=True)
        with open(self.path("combined.pem"), "w") as out:
            for part in (cert, key):
                with open(part) as f:
                    out.write(f.read())

    @property
    def cert(self):
        return self.path("cert.pem")

    @property
    def key(self):
        return self.path("key.pem")

    @property
    def combined_pem(self):
        return self.path("combined.pem")


def json_document(size):
    """A JSON array of API-like records, exactly `size` bytes: it compresses as such data does
    (about 4 to 5 times with gzip), not as a run of one byte would."""
    import json
    import random

    rng = random.Random(22)
    words = ["alpha", "beta", "gamma", "delta", "status", "active", "pending", "region",
             "eu-west", "us-east", "order", "invoice", "customer", "widget", "premium"]
    items, text = [], "[]"
    while len(text) < size:
        i = len(items)
        items.append({"id": i, "name": f"{rng.choice(words)} {rng.choice(words)} {i}",
                      "price": round(rng.uniform(1, 500), 2), "tags": rng.sample(words, 3),
                      "active": rng.random() < 0.7, "updated": 1700000000 + rng.randrange(10**7)})
        text = json.dumps(items, separators=(",", ":"))
    # Whole records while they fit, then a last record that pads to the exact size.
    while True:
        text = json.dumps(items, separators=(",", ":"))[:-1]
        tail = '{"pad":""}]' if not items else ',{"pad":""}]'
        if len(text) + len(tail) <= size or not items:
            break
        items.pop()
    return (text + tail[:-3] + "x" * (size - len(text) - len(tail)) + tail[-3:]).encode()
