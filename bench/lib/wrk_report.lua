-- wrk script for bench/: the request shape comes from the environment (so the static request
-- stays in C: no Lua runs per request), and `done` prints one JSON line with the figures the
-- harness reads (latencies in microseconds).
--   BENCH_BODY_BYTES=N   POST an N-byte body instead of a GET
--   BENCH_CLOSE=1        send `Connection: close` (one new connection per request)
--   BENCH_ACCEPT_ENCODING=CODINGS  send `Accept-Encoding: CODINGS` (the compression scenario)

local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
if body_bytes > 0 then
   wrk.method = "POST"
   wrk.body = string.rep("x", body_bytes)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
local accept_encoding = os.getenv("BENCH_ACCEPT_ENCODING")
if accept_encoding and accept_encoding ~= "" then
   wrk.headers["Accept-Encoding"] = accept_encoding
end
if os.getenv("BENCH_CLOSE") == "1" then
   wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"p50_us":%.1f,"p99_us":%.1f,"p999_us":%.1f,"max_us":%.1f,"mean_us":%.1f}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
