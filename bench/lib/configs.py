"""Equivalent configurations for every proxy under test, and for the static backend.

The same for every peer: the two backends (127.0.0.1:18101 and :18102, round robin), upstream
keep-alive on (64 idle connections, reused for every request, no per-connection request cap),
no access log (errors only), one worker/thread, streamed bodies (no buffering of request or
response bodies), X-Forwarded-For/-Proto and a request id added to each forwarded request,
the same timeouts, and the same certificate (ECDSA P-256, TLS 1.3 negotiated by wrk).
"""

from layout import BACKEND_PORTS, BACKEND_TLS_PORT

BACKENDS = [f"127.0.0.1:{p}" for p in BACKEND_PORTS]
IDLE_UPSTREAM = 64

# ----------------------------------------------------------------------------------------------
# The static backend: one nginx worker serving files from www/ (sendfile) on two ports, plus a
# TLS listener for the "direct" rows of the TLS scenarios. POST /upload reads the whole body, then
# answers with the 128-byte file: `mirror_request_body on` makes nginx read the body before the
# content phase, where POST to a static file is a 405 that error_page turns into /small. (A plain
# `return 200` would answer before the body has arrived.)


def backend_nginx(layout):
    listens = "\n".join(
        f"        listen 127.0.0.1:{p} backlog=4096;" for p in BACKEND_PORTS)
    return f"""# bench/: the static backend
user root;
worker_processes 1;
worker_rlimit_nofile {layout.nofile};
pid {layout.path("backend.pid")};
error_log {layout.path("backend-error.log")} error;
daemon off;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {layout.path("backend-body")};
    client_max_body_size 0;
    client_body_buffer_size 64k;
    server {{
{listens}
        listen 127.0.0.1:{BACKEND_TLS_PORT} ssl backlog=4096;
        ssl_certificate {layout.cert};
        ssl_certificate_key {layout.key};
        root {layout.path("www")};
        location = /upload {{
            mirror /drop;
            mirror_request_body on;
            error_page 405 =200 /small;
        }}
        location = /drop {{ internal; return 204; }}
        location = /data.json {{ default_type application/json; }}
        location = /small.json {{ default_type application/json; }}
    }}
}}
"""


# ----------------------------------------------------------------------------------------------
# lbproxy. The TLS and L4 listeners are spelled as docs/config.md says (`protocol = "https"`,
# `protocol = "tcp"` with `relay`). `lbproxy check` on a probe config decides whether this build
# supports each (see targets.py), so an older build's rows read "not supported yet".

LBPROXY_TLS_LISTENER = """
[listener.bench_tls]
address = "127.0.0.1:{port}"
protocol = "https"
upstream = "bench"
[[listener.bench_tls.tls.certificate]]
cert = "{cert}"
key = "{key}"
"""

LBPROXY_TCP_LISTENER = """
[listener.bench_l4_{relay}]
address = "127.0.0.1:{port}"
protocol = "tcp"
upstream = "bench"
relay = "{relay}"
"""


# The compression scenario: gzip only, on a listener of its own whose one route compresses
# ([compression] stays off for the others). nginx at gzip_comp_level 1 (its default); lbproxy at
# the level that gives the same size: its zlib-rs, like zlib-ng, runs level 1 as "deflate_quick"
# (static codes, about 30 % larger here), so zlib's level 1 corresponds to its level 2.
NGINX_GZIP_LEVEL = 1
LBPROXY_GZIP_LEVEL = 2

LBPROXY_GZIP_LISTENER = """
[compression]
algorithms = ["gzip"]
gzip_level = {level}
content_types = ["application/json"]

[listener.bench_gzip]
address = "127.0.0.1:{port}"
protocol = "http"
[[listener.bench_gzip.route]]
path_prefix = "/"
upstream = "bench"
compress = true
"""


# The policy scenario: the same GET on a listener with every traffic policy of its kind on, set
# so that none refuses the load: an access list admitting loopback, trusted proxies (the load
# generator is not one: its forwarded fields are dropped), a rate limit per client address and
# connection limits per client. What the checks cost a request that passes them all (compare
# l7-keepalive). nginx: allow/deny, realip, limit_req and limit_conn; HAProxy: an ACL, a stick
# table tracking the source (connections and request rate), set-src from X-Forwarded-For.
POLICY_RATE = 10_000_000  # requests per second: never reached
POLICY_CONNECTIONS = 20_000

LBPROXY_POLICY_LISTENER = """
[rate_limit.bench_per_client]
key = "client"
rate = "{rate}/s"
burst = {rate}

[listener.bench_policy]
address = "127.0.0.1:{port}"
protocol = "http"
upstream = "bench"
trusted_proxies = ["10.0.0.0/8"]
access = {{ allow = ["127.0.0.0/8"] }}
rate_limits = ["bench_per_client"]

[listener.bench_policy.connection_limits]
max = {connections}
per_client = {connections}
per_client_rate = "{rate}/s"
"""


def lbproxy(layout, ports, features, driver="auto"):
    """`features`: the subset of {"https", "l4_splice", "l4_copy", "gzip", "policy"} to
    include."""
    backends = ", ".join(f'"{b}"' for b in BACKENDS)
    text = f"""# bench/: lbproxy under test
[runtime]
workers = 1
driver = "{driver}"
pin_workers = true

[limits]
max_body = "unlimited"

[log]
access = false

# On, as in production, but on any free port: 9901 may belong to an lbproxy already running.
[admin]
address = "127.0.0.1:0"

[listener.bench_http]
address = "127.0.0.1:{ports["http"]}"
protocol = "http"
upstream = "bench"

[upstream.bench]
balance = "round_robin"
backends = [{backends}]

[upstream.bench.pool]
max_idle_per_backend = {IDLE_UPSTREAM}
idle_timeout = "60s"
"""
    if "https" in features:
        text += LBPROXY_TLS_LISTENER.format(port=ports["https"], cert=layout.cert, key=layout.key)
    for relay in ("splice", "copy"):
        if f"l4_{relay}" in features:
            text += LBPROXY_TCP_LISTENER.format(relay=relay, port=ports[f"l4_{relay}"])
    if "gzip" in features:
        text += LBPROXY_GZIP_LISTENER.format(port=ports["gzip"], level=LBPROXY_GZIP_LEVEL)
    if "policy" in features:
        text += LBPROXY_POLICY_LISTENER.format(port=ports["policy"], rate=POLICY_RATE,
                                               connections=POLICY_CONNECTIONS)
    return text


# ----------------------------------------------------------------------------------------------
# nginx: one worker, upstream keep-alive, unbuffered streaming both ways (like lbproxy), the
# stream module for L4 (nginx copies through user space; it has no splice).


def nginx(layout, ports, with_stream):
    servers = "\n".join(f"        server {b};" for b in BACKENDS)
    stream = ""
    if with_stream:
        stream = f"""
stream {{
    upstream bench_l4 {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{ports["l4_copy"]} backlog=4096;
        proxy_pass bench_l4;
        proxy_buffer_size 64k;
    }}
}}
"""
    location = """
        location / {
            proxy_pass http://bench;
        }"""
    return f"""# bench/: nginx under test
{"load_module " + layout.stream_module + ";" if with_stream else ""}
user root;
worker_processes 1;
worker_rlimit_nofile {layout.nofile};
pid {layout.path("nginx.pid")};
error_log {layout.path("nginx-error.log")} error;
daemon off;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    client_header_timeout 10s;
    client_body_timeout 60s;
    client_max_body_size 0;
    client_body_buffer_size 64k;
    client_body_temp_path {layout.path("nginx-body")};
    proxy_temp_path {layout.path("nginx-proxy")};
    upstream bench {{
{servers}
        keepalive {IDLE_UPSTREAM};
        keepalive_requests 10000000;
        keepalive_timeout 60s;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Request-Id $request_id;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_buffer_size 64k;
    proxy_buffers 4 64k;
    proxy_connect_timeout 2s;
    proxy_read_timeout 30s;
    server {{
        listen 127.0.0.1:{ports["http"]} backlog=4096;{location}
    }}
    server {{
        listen 127.0.0.1:{ports["https"]} ssl backlog=4096;
        ssl_certificate {layout.cert};
        ssl_certificate_key {layout.key};{location}
    }}
    server {{
        listen 127.0.0.1:{ports["gzip"]} backlog=4096;
        gzip on;
        gzip_types application/json;
        gzip_comp_level {NGINX_GZIP_LEVEL};
        gzip_min_length 1024;
        gzip_vary on;{location}
    }}
    limit_req_zone $binary_remote_addr zone=bench_rate:10m rate={POLICY_RATE}r/s;
    limit_conn_zone $binary_remote_addr zone=bench_conn:10m;
    server {{
        listen 127.0.0.1:{ports["policy"]} backlog=4096;
        allow 127.0.0.0/8;
        deny all;
        set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;
        limit_req zone=bench_rate burst={POLICY_RATE} nodelay;
        limit_conn bench_conn {POLICY_CONNECTIONS};{location}
    }}
}}
{stream}"""


# ----------------------------------------------------------------------------------------------
# HAProxy: one thread, connection reuse for every request (`http-reuse always`, as the others
# do), `mode tcp` with kernel splicing for L4.


def haproxy(layout, ports):
    servers = "\n".join(
        f"    server b{i} {b}" for i, b in enumerate(BACKENDS, start=1))
    return f"""# bench/: HAProxy under test
global
    nbthread 1
    # The descriptor limit may be capped (a container's hard limit): HAProxy then warns that
    # 2 × maxconn needs more instead of refusing to start; idle client connections (the memory
    # scenario) hold no server connection, so one descriptor each is enough.
    no strict-limits
    maxconn 12000
    pidfile {layout.path("haproxy.pid")}

defaults
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend bench_http
    mode http
    bind 127.0.0.1:{ports["http"]}
    http-request set-header X-Forwarded-Proto http
    default_backend bench

# HAProxy's gzip is libslz here (`haproxy -vv`: "Built with libslz"): one speed, about zlib's
# level 1, so no level to set.
frontend bench_gzip
    mode http
    bind 127.0.0.1:{ports["gzip"]}
    http-request set-header X-Forwarded-Proto http
    compression algo gzip
    compression type application/json
    default_backend bench

frontend bench_policy
    mode http
    bind 127.0.0.1:{ports["policy"]}
    maxconn {POLICY_CONNECTIONS}
    stick-table type ip size 1m expire 10s store conn_cur,conn_rate(1s),http_req_rate(1s)
    tcp-request connection reject unless {{ src 127.0.0.0/8 }}
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(0) gt {POLICY_CONNECTIONS} }}
    tcp-request connection reject if {{ sc_conn_rate(0) gt {POLICY_RATE} }}
    http-request set-src hdr_ip(x-forwarded-for,-1) if {{ src 10.0.0.0/8 }}
    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {POLICY_RATE} }}
    http-request set-header X-Forwarded-Proto http
    default_backend bench

frontend bench_https
    mode http
    bind 127.0.0.1:{ports["https"]} ssl crt {layout.combined_pem}
    http-request set-header X-Forwarded-Proto https
    default_backend bench

backend bench
    mode http
    balance roundrobin
    http-reuse always
    option forwardfor
    unique-id-format %[uuid()]
    http-request set-header X-Request-Id %[unique-id]
{servers}

listen bench_l4
    mode tcp
    bind 127.0.0.1:{ports["l4_splice"]}
    balance roundrobin
    option splice-auto
{servers}
"""
