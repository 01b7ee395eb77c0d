"""The things a scenario is run against: "direct" (the backend itself, no proxy), lbproxy (and any
extra lbproxy binaries given with --compare), nginx and HAProxy.

Each target knows its listeners (HTTP, HTTPS, L4 in one or two relay modes), which of them it
supports (lbproxy's TLS and L4 support is detected with `lbproxy check`), and how to start
(pinned to the proxy core), probe and stop itself.
"""

import os
import subprocess

import configs
from layout import BACKEND_PORTS, BACKEND_TLS_PORT, Layout
from procs import Process, wait_until_serving
from procstat import process_tree

NOT_YET = "not supported yet"
# The listeners beyond plain HTTP, each probed with `lbproxy check` (an older build may lack one).
OPTIONAL_FEATURES = ("https", "l4_splice", "l4_copy", "gzip", "policy")


class Target:
    """A proxy under test. Subclasses render the config and the command line."""

    kind = "proxy"

    def __init__(self, name, index, layout):
        self.name = name
        self.layout = layout
        self.ports = {k: Layout.target_port(index, k)
                      for k in ("http", "https", "l4_splice", "l4_copy", "gzip", "policy")}
        self.process = None
        self.config_path = None
        self.unsupported = {}  # feature -> reason

    # The L4 rows this target contributes: (row label, listener feature).
    l4_variants = ()

    def endpoint(self, feature):
        """(port, tls) for "http", "https", "l4_splice", "l4_copy", "gzip" or "policy"."""
        return self.ports[feature], feature == "https"

    def why_unsupported(self, feature):
        return self.unsupported.get(feature)

    def start(self):
        self.config_path = self.layout.path(f"{self.name}.conf")
        with open(self.config_path, "w") as f:
            f.write(self.render_config())
        self.process = Process(self.name, self.argv(), self.layout.proxy_cpu_list,
                               self.layout.path(f"{self.name}.log"), env=self.env())
        wait_until_serving(self.process, self.ports["http"])

    def stop(self):
        if self.process:
            self.process.stop()
            self.process = None

    def pids(self):
        return process_tree(self.process.pid) if self.process else []

    @property
    def command(self):
        return self.process.command if self.process else "(not started)"

    def env(self):
        return {}


class Direct(Target):
    """The backend without a proxy: what the load generator can do at all."""

    kind = "direct"
    l4_variants = (("direct", "l4_direct"),)

    def endpoint(self, feature):
        if feature == "https":
            return BACKEND_TLS_PORT, True
        return BACKEND_PORTS[0], False

    def start(self):
        pass

    @property
    def command(self):
        return "(the backend itself)"


class Lbproxy(Target):
    l4_variants = (("splice", "l4_splice"), ("copy", "l4_copy"))

    def __init__(self, name, index, layout, binary, driver="auto"):
        super().__init__(name, index, layout)
        self.binary = os.path.abspath(binary)
        self.driver = driver
        self.unsupported = self._detect_unsupported()

    def _detect_unsupported(self):
        """`lbproxy check` on a config with only that listener added: what it rejects is not
        supported by this build yet."""
        unsupported = {}
        for feature in OPTIONAL_FEATURES:
            probe = self.layout.path(f"{self.name}-probe-{feature}.toml")
            with open(probe, "w") as f:
                f.write(configs.lbproxy(self.layout, self.ports, {feature}, self.driver))
            check = subprocess.run([self.binary, "check", "-c", probe],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                first_error = next((l for l in check.stderr.splitlines() if l.startswith("error")), "")
                unsupported[feature] = f"{NOT_YET} (`lbproxy check` rejects it: {first_error.strip()})"
        return unsupported

    def render_config(self):
        features = {f for f in OPTIONAL_FEATURES if f not in self.unsupported}
        return configs.lbproxy(self.layout, self.ports, features, self.driver)

    def argv(self):
        return [self.binary, "serve", "-c", self.config_path]

    def env(self):
        return {"LBPROXY_LOG": "error"}


class Nginx(Target):
    l4_variants = (("stream, copy", "l4_copy"),)

    def __init__(self, name, index, layout):
        super().__init__(name, index, layout)
        self.with_stream = os.path.exists(layout.stream_module)
        if not self.with_stream:
            self.unsupported["l4_copy"] = "nginx stream module not installed (libnginx-mod-stream)"
        self.unsupported["l4_splice"] = "nginx has no splice relay"

    def render_config(self):
        return configs.nginx(self.layout, self.ports, self.with_stream)

    def argv(self):
        return ["nginx", "-p", self.layout.workdir, "-c", self.config_path]


class Haproxy(Target):
    l4_variants = (("splice", "l4_splice"),)

    def __init__(self, name, index, layout):
        super().__init__(name, index, layout)
        self.unsupported["l4_copy"] = "compared with splice only"

    def render_config(self):
        return configs.haproxy(self.layout, self.ports)

    def argv(self):
        return ["haproxy", "-db", "-f", self.config_path]


def start_backend(layout):
    """The static nginx backend, on the non-proxy cores."""
    path = layout.path("backend.conf")
    with open(path, "w") as f:
        f.write(configs.backend_nginx(layout))
    process = Process("backend", ["nginx", "-p", layout.workdir, "-c", path],
                      layout.other_cpu_list, layout.path("backend.log"))
    for port in BACKEND_PORTS:
        wait_until_serving(process, port)
    wait_until_serving(process, BACKEND_TLS_PORT, tls=True)
    return process
