// lbproxy dashboard: polls /api/status, /api/instances, /api/autoscale and /api/deploy once a second and renders them. No dependencies; every
// value reaches the page through textContent (never as HTML).
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "lbproxy-admin-token";
const COLORS = { ok: "#3fb950", bad: "#f85149", info: "#58a6ff", grid: "#263240", muted: "#8b98a5" };

let token = sessionStorage.getItem(TOKEN_KEY);
let lastUpdate = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmtRate(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function fmtPercent(share) {
  if (!share) return "0%";
  const pct = share * 100;
  return (pct >= 10 ? pct.toFixed(0) : pct.toFixed(1)) + "%";
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 10) return ms.toFixed(0) + " ms";
  return ms.toFixed(2) + " ms";
}

function fmtCount(n) {
  return Number(n).toLocaleString("en-US");
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// A figure that may be unknown (null): "–", else formatted.
function known(value, format) {
  return value === null || value === undefined ? "–" : format(value);
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

// A line chart of one or more series (null values are gaps) on a canvas.
function drawChart(canvas, series, opts = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = Math.max(opts.min || 0, ...values, 0) * 1.15 || 1;
  const pad = opts.axis ? 4 : 1;
  if (opts.axis) {
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    for (const f of [0.25, 0.5, 0.75]) {
      const y = Math.round(height - pad - f * (height - 2 * pad)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(width, y); ctx.stroke();
    }
    ctx.fillStyle = COLORS.muted;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(fmtRate(max), 4, 12);
  }
  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = opts.axis ? 1.6 : 1.2;
    ctx.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { drawing = false; return; }
      const x = (i / (n - 1)) * (width - 2) + 1;
      const y = height - pad - (v / max) * (height - 2 * pad);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }
}

function renderTotals(s) {
  const t = s.totals;
  $("kpi-rps").textContent = fmtRate(t.rps);
  const errors = $("kpi-errors");
  errors.textContent = fmtPercent(t.error_rate);
  errors.className = t.error_rate >= 0.05 ? "bad" : t.error_rate > 0 ? "warn" : "";
  $("kpi-p50").textContent = fmtMs(t.p50_ms);
  $("kpi-p99").textContent = fmtMs(t.p99_ms);
  $("kpi-connections").textContent = fmtCount(t.open_connections);
  $("kpi-in-flight").textContent = fmtCount(t.in_flight);
  const up = $("kpi-backends");
  up.textContent = `${t.backends_up} / ${t.backends}`;
  up.className = t.backends_up < t.backends ? (t.backends_up === 0 ? "bad" : "warn") : "";
  $("total-requests").textContent = fmtCount(t.requests);
  $("meta").textContent =
    `v${s.version} · pid ${s.pid} · up ${fmtUptime(s.uptime_s)} · ${s.workers.length} workers on ${s.driver}` +
    ` · ${s.reloads} reloads · ${s.config}` + (s.shutting_down ? " · SHUTTING DOWN" : "");
  drawChart($("chart-rps"), [
    { values: s.history.rps, color: COLORS.ok },
    { values: s.history.errors_per_s, color: COLORS.bad },
  ], { axis: true });
  drawChart($("chart-p99"), [{ values: s.history.p99_ms, color: COLORS.info }], { axis: true });
}

function workersNote(counts, total) {
  const entries = Object.entries(counts);
  if (entries.length <= 1) return null;
  return el("span", { class: "workers-note" },
    "(" + entries.map(([state, n]) => `${state} ${n}/${total}`).join(", ") + ")");
}

function backendRow(group, b, workerCount) {
  const overrides = [];
  if (b.drain_override === true) overrides.push("drained by admin");
  if (b.drain_override === false) overrides.push("enabled by admin");
  if (b.weight_override !== null && b.weight_override !== undefined) overrides.push(`weight set to ${b.weight_override}`);
  const rpsSpark = el("canvas", { width: 120, height: 26 });
  const p99Spark = el("canvas", { width: 120, height: 26 });
  const row = el("tr", { "data-backend": b.address, "data-upstream": group, "data-state": b.state },
    el("td", {}, b.address, b.backup ? el("span", { class: "workers-note" }, "backup") : null),
    el("td", { class: "state" },
      el("span", { class: `badge state-${b.state}` }, b.state),
      workersNote(b.state_workers, workerCount),
      overrides.length ? el("span", { class: "override" }, overrides.join(", ")) : null),
    el("td", { class: `health-${b.health}` }, b.health),
    el("td", { class: `circuit-${b.circuit}` }, b.circuit, workersNote(b.circuit_workers, workerCount)),
    el("td", { class: "num" }, b.weight + (b.ramp_percent < 100 ? ` (${b.ramp_percent.toFixed(0)}%)` : "")),
    el("td", { class: "num in-flight" }, fmtCount(b.in_flight)),
    el("td", { class: "num rps" }, fmtRate(b.rps)),
    el("td", { class: "num errors" + (b.error_rate >= 0.05 ? " bad" : b.error_rate > 0 ? " warn" : "") }, fmtPercent(b.error_rate)),
    el("td", { class: "num p50" }, fmtMs(b.p50_ms)),
    el("td", { class: "num p99" }, fmtMs(b.p99_ms)),
    el("td", { class: "num requests" },
      b.connections_total ? `${fmtCount(b.connections_total)} conns` : fmtCount(b.requests_total)),
    el("td", { class: "spark" }, rpsSpark),
    el("td", { class: "spark" }, p99Spark));
  return { row, draw: () => {
    if (!b.history) return;
    drawChart(rpsSpark, [{ values: b.history.rps, color: COLORS.ok }]);
    drawChart(p99Spark, [{ values: b.history.p99_ms, color: COLORS.info }]);
  } };
}

function renderUpstreams(s) {
  const container = $("upstreams");
  const drawings = [];
  const sections = s.upstreams.map((u) => {
    const head = el("tr", {},
      ...["backend", "state", "health", "circuit", "weight", "in flight", "req/s", "errors", "p50", "p99", "requests", "req/s (2 min)", "p99 (2 min)"]
        .map((h, i) => el("th", { class: i >= 4 && i <= 10 ? "num" : "" }, h)));
    const rows = u.backends.map((b) => {
      const { row, draw } = backendRow(u.name, b, s.workers.length);
      drawings.push(draw);
      return row;
    });
    const detail = `${u.balance} · ${fmtRate(u.rps)} req/s · ${fmtPercent(u.error_rate)} 5xx · p99 ${fmtMs(u.p99_ms)}` +
      ` · ${fmtCount(u.retries_total)} retries · ${fmtCount(u.retry_budget_rejections_total)} over retry budget` +
      ` · ${fmtCount(u.no_usable_backend_total)} with no usable backend`;
    return el("div", { class: "upstream", "data-upstream": u.name },
      el("h2", {}, `upstream ${u.name}`, el("span", { class: "detail" }, detail)),
      el("table", { class: "backends" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  });
  container.replaceChildren(...sections);
  drawings.forEach((draw) => draw());
}

function renderWorkers(s) {
  const rows = s.workers.map((w) => el("tr", { "data-worker": w.worker },
    el("td", {}, w.worker),
    el("td", {}, w.driver),
    el("td", { class: "num" + (w.loop_lag_ms >= 50 ? " bad" : w.loop_lag_ms >= 10 ? " warn" : "") }, fmtMs(w.loop_lag_ms)),
    el("td", { class: "num" + (w.loop_lag_max_ms >= 50 ? " bad" : w.loop_lag_max_ms >= 10 ? " warn" : "") }, fmtMs(w.loop_lag_max_ms)),
    el("td", { class: "num" + (w.heartbeat_age_ms >= 1000 ? " bad" : "") }, fmtMs(w.heartbeat_age_ms)),
    el("td", { class: "num" }, fmtCount(w.open_connections)),
    el("td", { class: "num" }, fmtCount(w.requests))));
  $("workers").tBodies[0].replaceChildren(...rows);
  const listeners = s.listeners.map((l) => el("tr", { "data-listener": l.name },
    el("td", {}, l.name),
    el("td", {}, `${l.protocol}://${l.address || "?"}`),
    el("td", { class: "num" }, fmtCount(l.open_connections)),
    el("td", { class: "num" }, fmtCount(l.connections_total)),
    el("td", { class: "num" }, fmtCount(l.requests_total)),
    el("td", { class: "num" }, fmtCount(l.responses["5xx"] || 0))));
  $("listeners").tBodies[0].replaceChildren(...listeners);
}

// One row per discovered unit (`i`), with the proxy's figures for it as a backend (`f`, null
// when it is not one).
function instanceRow(i) {
  const f = i.backend || {};
  const memory = known(i.memory_bytes, fmtBytes) +
    (i.limits.memory_max !== null ? ` / ${fmtBytes(i.limits.memory_max)}` : "");
  const tasks = known(i.tasks, String) + (i.limits.tasks_max !== null ? ` / ${i.limits.tasks_max}` : "");
  const cpu = known(i.cpu_percent, (c) => c.toFixed(1) + "%") +
    (i.limits.cpu_quota_percent !== null ? ` / ${i.limits.cpu_quota_percent}%` : "");
  return el("tr", { "data-unit": i.unit, "data-upstream": i.group, "data-routing": i.routing, "data-state": i.active_state },
    el("td", {}, i.group),
    el("td", {}, i.unit),
    el("td", { class: `unit-state unit-state-${i.active_state}` }, `${i.active_state}/${i.sub_state}`),
    el("td", { class: "num pid" }, known(i.pid, String)),
    el("td", { class: "num uptime" }, known(i.uptime_seconds, fmtUptime)),
    el("td", { class: "num restarts" }, i.restarts, i.flapping ? el("span", { class: "flapping" }, "flapping") : null),
    el("td", { class: "num cpu" }, cpu),
    el("td", { class: "num memory" }, memory),
    el("td", { class: "num tasks" }, tasks),
    el("td", { class: "address" }, i.address || "–"),
    el("td", {}, el("span", { class: `badge routing-${i.routing}` }, i.routing)),
    el("td", { class: "num rps" }, known(f.rps, fmtRate)),
    el("td", { class: "num p99" }, known(f.p99_ms, fmtMs)),
    el("td", { class: "num errors" + (f.error_rate >= 0.05 ? " bad" : f.error_rate > 0 ? " warn" : "") },
      known(f.error_rate, fmtPercent)),
    el("td", { class: "num in-flight" }, known(f.in_flight, fmtCount)));
}

// The Instances panel: hidden when no group discovers its backends; a note while none is found.
function renderInstances(v) {
  const discover = v.discover || [];
  const hidden = v.instances.length === 0 && discover.length === 0;
  $("instances").hidden = hidden;
  const following = discover.map((d) => `${d.group} follows ${d.systemd} (${d.bus} bus)`).join("; ");
  $("instances-note").textContent = hidden || v.instances.length ? "" :
    (v.read_at_ms === null ? `the units have not been read yet: ${following}` : `no unit matches: ${following}`);
  $("instances-table").hidden = v.instances.length === 0;
  $("instances-table").tBodies[0].replaceChildren(...v.instances.map(instanceRow));
}

// One autoscaled group (`a`): its numbers, and its instance count and desired count over time.
function autoscaleGroup(a) {
  const chart = el("canvas", { width: 600, height: 90 });
  const current = `${a.current}` + (a.starting ? ` +${a.starting} starting` : "") +
    (a.stopping ? ` −${a.stopping} stopping` : "");
  const mode = a.mode + (a.holding_reason ? ` (${a.holding_reason})` : "");
  const d = a.last_decision;
  const last = d ? `${d.from} → ${d.to} at ${new Date(d.at_ms).toLocaleTimeString()}: ${d.reason}` : "none yet";
  const fig = (label, cls, value) =>
    el("div", { class: "kpi" }, el("span", { class: "label" }, label), el("b", { class: cls }, value));
  const node = el("div", { class: "autoscale-group", "data-upstream": a.group, "data-mode": a.mode,
    "data-current": a.current, "data-desired": a.desired },
    el("h3", {}, `upstream ${a.group}`,
      el("span", { class: `badge mode-${a.mode}` }, mode),
      el("span", { class: "detail" }, `${a.metric || "?"} · min ${a.min} · max ${a.max}` +
        ` · ${a.decisions.up} up, ${a.decisions.down} down`)),
    el("div", { class: "kpis" },
      fig(`signal (${a.metric || "?"})`, "signal", known(a.signal, fmtRate)),
      fig("target", "target", fmtRate(a.target)),
      fig("instances", "current", current),
      fig("desired", "desired", a.desired),
      fig("waiting", "waiting" + (a.waiting ? " warn" : ""), fmtCount(a.waiting))),
    el("p", { class: "note last-decision" }, `last decision: ${last}`),
    el("figure", {}, chart));
  return { node, draw: () => drawChart(chart, [
    { values: a.history.map((p) => p[1]), color: COLORS.ok },
    { values: a.history.map((p) => p[2]), color: COLORS.info },
  ], { axis: true, min: a.max }) };
}

// The Autoscaling panel: hidden when no group is autoscaled.
function renderAutoscale(v) {
  const groups = v.groups || [];
  $("autoscale").hidden = groups.length === 0;
  const rendered = groups.map(autoscaleGroup);
  $("autoscale-groups").replaceChildren(...rendered.map((g) => g.node));
  rendered.forEach((g) => g.draw());
}

// A share of the clients (0 to 1) as a bar on a canvas, with a tick at each of `steps` (percent).
function drawWeight(canvas, share, steps) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = COLORS.grid;
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = COLORS.info;
  ctx.fillRect(0, 0, Math.round(width * Math.min(Math.max(share, 0), 1)), height);
  ctx.fillStyle = COLORS.muted;
  for (const step of steps) {
    const x = Math.min(Math.round((width * step) / 100), width - 1);
    ctx.fillRect(x, 0, 1, height);
  }
}

function fmtWeight(bp) {
  const pct = bp / 100;
  return (Number.isInteger(pct) ? pct.toFixed(0) : pct.toFixed(2).replace(/0$/, "")) + "%";
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString();
}

// A check's value or limit: up to four decimals.
function fmtCheck(value) {
  if (value === null || value === undefined) return "–";
  return String(Number(value.toFixed(4)));
}

function deployOutcome(o) {
  if (!o) return null;
  if (o.result === "promoted") return "promoted";
  return `${o.result === "rolled-back" ? "rolled back" : "aborted"}: ${o.reason}`;
}

// The Deployment panel: the deployment in progress, or the last one (with how it ended);
// hidden before the first.
function renderDeploy(v) {
  const d = v.current;
  $("deploy").hidden = !d;
  if (!d) {
    $("deploy-body").replaceChildren();
    return;
  }
  const spec = d.spec;
  const canary = spec.strategy === "canary";
  const steps = spec.canary.steps;
  const stepText = !canary ? (d.keep_blue_until_ms ? `blue kept until ${fmtTime(d.keep_blue_until_ms)}` : "all at once") :
    d.phase === "starting" ? `starting, then ${steps.length} steps` : `step ${d.step + 1} of ${steps.length}`;
  const outcome = deployOutcome(d.outcome);
  const fig = (label, cls, value) =>
    el("div", { class: "kpi" }, el("span", { class: "label" }, label), el("b", { class: cls }, value));
  const bar = el("canvas", { width: 600, height: 14 });
  const a = d.last_analysis;
  let analysis = el("p", { class: "note" }, canary ? "no analysis yet" : null);
  if (a) {
    const rows = a.checks.map((c) => el("tr", { "data-check": c.name, "data-passed": String(c.passed) },
      el("td", {}, c.name),
      el("td", { class: "num canary" + (c.passed ? "" : " bad") }, fmtCheck(c.canary)),
      el("td", { class: "num stable" }, fmtCheck(c.stable)),
      el("td", { class: "num limit" }, fmtCheck(c.limit)),
      el("td", {}, el("span", { class: `badge check-${c.passed ? "ok" : "failed"}` }, c.passed ? "ok" : "failed"))));
    analysis = el("div", { class: "deploy-analysis" },
      el("p", { class: "note" }, `last analysis: ${a.verdict} · canary ${fmtCount(a.canary.requests)} requests, ` +
        `stable ${fmtCount(a.stable.requests)} · ${d.failures_in_a_row} failed in a row (${spec.analysis.failure_limit} abort)`),
      el("table", { class: "checks" },
        el("thead", {}, el("tr", {}, el("th", {}, "check"), el("th", { class: "num" }, "canary"),
          el("th", { class: "num" }, "stable"), el("th", { class: "num" }, "limit"), el("th", {}, "verdict"))),
        el("tbody", {}, ...rows)),
      el("p", { class: "note" }, a.summary));
  }
  const decisions = d.decisions.slice(-8).map((x) => el("tr", { "data-event": x.event },
    el("td", {}, fmtTime(x.at_ms)),
    el("td", {}, x.event),
    el("td", { class: "num" }, fmtWeight(x.weight_bp)),
    el("td", { class: "message" }, x.message)));
  const node = el("div", { class: "deploy-current", "data-id": d.id, "data-upstream": spec.upstream,
    "data-phase": d.phase, "data-strategy": spec.strategy, "data-weight-bp": d.weight_bp },
    el("h3", {}, `deployment ${d.id} · upstream ${spec.upstream} · ${d.from_version || "template"} → ${spec.version}`,
      el("span", { class: `badge phase-${d.phase}` }, d.phase),
      outcome ? el("span", { class: "outcome" }, outcome) : null,
      el("span", { class: "detail" }, `${spec.strategy} · started ${fmtTime(d.started_ms)}`)),
    el("div", { class: "kpis" },
      fig("new version's share", "weight", fmtWeight(d.weight_bp)),
      fig(canary ? "step" : "switch", "step", stepText),
      fig("old instances", "old-units", d.old_units.length ? d.old_units.join(", ") : "none"),
      fig("new instances", "new-units", d.new_units.length ? d.new_units.join(", ") : "none")),
    el("figure", { class: "weight-bar" }, bar),
    analysis,
    el("table", { class: "decisions" },
      el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "decision"), el("th", { class: "num" }, "weight"),
        el("th", {}, "why"))),
      el("tbody", {}, ...decisions)));
  $("deploy-body").replaceChildren(node);
  drawWeight(bar, d.weight_bp / 10000, canary ? steps : []);
}

function setLive(ok, why) {
  const live = $("live");
  live.className = "live " + (ok ? "ok" : "stale");
  live.textContent = ok ? "live" : `no data: ${why}`;
}

async function refresh() {
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch("/api/status", { headers, cache: "no-store" });
    if (response.status === 401) {
      $("auth").hidden = false;
      $("auth-error").textContent = token ? "that token was refused" : "";
      setLive(false, "the admin token is needed");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const status = await response.json();
    $("auth").hidden = true;
    renderTotals(status);
    renderUpstreams(status);
    renderWorkers(status);
    const instances = await fetch("/api/instances", { headers, cache: "no-store" });
    if (!instances.ok) throw new Error(`/api/instances: HTTP ${instances.status}`);
    renderInstances(await instances.json());
    const autoscale = await fetch("/api/autoscale", { headers, cache: "no-store" });
    if (!autoscale.ok) throw new Error(`/api/autoscale: HTTP ${autoscale.status}`);
    renderAutoscale(await autoscale.json());
    const deploy = await fetch("/api/deploy", { headers, cache: "no-store" });
    if (!deploy.ok) throw new Error(`/api/deploy: HTTP ${deploy.status}`);
    renderDeploy(await deploy.json());
    lastUpdate = Date.now();
    setLive(true);
  } catch (error) {
    setLive(false, error.message || String(error));
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
});

// A page left open against a proxy that stopped says so.
setInterval(() => {
  if (lastUpdate && Date.now() - lastUpdate > 3 * POLL_MS) setLive(false, "the proxy stopped answering");
}, POLL_MS);

refresh();
