//! Every metric of listeners, upstream groups and backends, declared once: dashboards, alerts
//! and code have this one place to look.
//!
//! Each scope's metrics are one macro below, `listener_metrics!`, `upstream_metrics!`,
//! `backend_metrics!`, `instance_metrics!` (the systemd units of `discover` groups) and
//! `autoscale_metrics!` / `autoscale_signal_metrics!` (the autoscaled groups) and
//! `deploy_metrics!` with its three companions (the deployments), listing
//! an entry per metric family in exposition order: its doc comment is the Prometheus HELP text,
//! then its name in code, its type, its Prometheus name and, if it has one, its JSON API field.
//! The macro hands its entries to the macro it is given (an "x-macro"), and two read them:
//! - [`super::stats`] makes the worker-local statistics structs of them (`metrics_structs!`:
//!   [`ListenerStats`], [`UpstreamStats`], [`BackendStats`], `Cell`s only) and their published
//!   counterparts ([`ListenerCounts`], …) with `snapshot` and `merge`;
//! - [`super::tables`] makes the family tables (`metrics_table!`: [`LISTENERS`], [`UPSTREAMS`],
//!   [`BACKENDS`]) that `/metrics` (`admin/prometheus.rs`) and the JSON API (`admin/api.rs`,
//!   which the dashboard reads) are rendered from, in entry order; `instance_metrics!` is made
//!   into a table by `admin/instances.rs`, over its view of the discovery inventory, and the
//!   autoscale ones by `admin/autoscale.rs`, over its view of the autoscaler's board, and the
//!   deploy ones by `admin/deploy.rs`, over its rows of the deployment board.
//!
//! Flow: a worker increments the cells on the request path (methods in [`super::stats`]); its
//! tick publishes `snapshot()`s ([`super::snapshot`]); the control side sums them with `merge`
//! into aggregate rows ([`super::aggregate`]) and renders the tables over those rows.
//!
//! Two kinds of entries:
//! - `count NAME: CELL = "lbproxy_…"[, json "FIELD"];` — counted by the workers in a `CELL`
//!   (`Counter` counts up, `Gauge` goes up and down — both are summed over the workers —,
//!   `ClassCounters` by status class, `LatencyCounters` a latency histogram), read from the
//!   aggregate row's `counts.NAME`; without `json` it is not in the JSON API.
//! - `show NAME: Gauge = "lbproxy_…", from |row| VALUE;` — worked out on the control side from
//!   the aggregate row (a state, a weight, what the pool holds): a family only. Its closure is
//!   compiled in [`super::tables`], over the row type of the table.
//!
//! # Adding a counter
//!
//! One entry in the scope's list, e.g. for backends:
//!
//! ```text
//! /// Times the backend did X (the HELP text: one paragraph).
//! count x_events: Counter = "lbproxy_backend_x_events_total", json "x_events_total";
//! ```
//!
//! then the line that counts it: a method in [`super::stats`] (`self.x_events.inc()`) called
//! where it happens. `/metrics`, `GET /api/status` and `GET /api/backends` show it from then
//! on. The monitoring README's table (`packaging/monitoring/README.md`) must list the new
//! family: `tests/monitoring.rs` checks that it does.
//!
//! [`ListenerStats`]: super::stats::ListenerStats
//! [`UpstreamStats`]: super::stats::UpstreamStats
//! [`BackendStats`]: super::stats::BackendStats
//! [`ListenerCounts`]: super::stats::ListenerCounts
//! [`LISTENERS`]: super::tables::LISTENERS
//! [`UPSTREAMS`]: super::tables::UPSTREAMS
//! [`BACKENDS`]: super::tables::BACKENDS

/// Every listener metric, in exposition order: `listener_metrics!(then! { HEAD })` is
/// `then! { HEAD ENTRIES }`.
macro_rules! listener_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// Client connections accepted.
            count accepted: Counter = "lbproxy_listener_connections_total",
                json "connections_total";
            /// Client connections open now.
            count open: Gauge = "lbproxy_listener_open_connections", json "open_connections";
            /// Requests answered, by status class (code="none": no response was sent).
            count responses: ClassCounters = "lbproxy_listener_requests_total",
                json "requests_total";
            /// Bytes received from clients (request heads and bodies).
            count bytes_received: Counter = "lbproxy_listener_received_bytes_total",
                json "received_bytes";
            /// Bytes sent to clients.
            count bytes_sent: Counter = "lbproxy_listener_sent_bytes_total", json "sent_bytes";
            /// Client connections reset because the client did not take a response buffer
            /// (64 KiB) within timeouts.client_idle: it stopped reading, or reads too slowly.
            count slow_readers_reset: Counter = "lbproxy_listener_slow_readers_reset_total",
                json "slow_readers_reset";
            /// Client connections closed at accept because the listener already had
            /// connection_limits.max open.
            count refused_full: Counter = "lbproxy_listener_refused_connections_max_total",
                json "refused_connections_max";
            /// Client connections closed because their client address already had
            /// connection_limits.per_client open, or opened them faster than per_client_rate.
            count refused_per_client: Counter =
                "lbproxy_listener_refused_connections_per_client_total",
                json "refused_connections_per_client";
            /// Client connections reset when they opened because the listener's access list
            /// denies their address.
            count denied_connections: Counter = "lbproxy_listener_denied_connections_total",
                json "denied_connections";
            /// Client connections closed because their PROXY protocol header was missing,
            /// malformed, late, or sent by a peer outside trusted_proxies.
            count proxy_header_errors: Counter = "lbproxy_listener_proxy_protocol_errors_total",
                json "proxy_protocol_errors";
            /// Requests refused (403 or reset) by the access list of their listener or route.
            count denied_requests: Counter = "lbproxy_listener_denied_requests_total",
                json "denied_requests";
            /// Requests answered 429 by a rate limit.
            count rate_limited: Counter = "lbproxy_listener_rate_limited_requests_total",
                json "rate_limited_requests";
            /// Requests a rate limit in dry_run mode would have refused (they were served).
            count rate_limit_dry_run: Counter = "lbproxy_listener_rate_limit_dry_run_total",
                json "rate_limit_dry_run";
            /// TLS handshakes in which the client presented a certificate that verified.
            count client_certificates: Counter =
                "lbproxy_listener_client_certificates_total", json "client_certificates";
            /// TLS handshakes that failed because the client certificate was missing (where
            /// required) or did not verify against client_ca.
            count client_certificate_failures: Counter =
                "lbproxy_listener_client_certificate_failures_total",
                json "client_certificate_failures";
        }
    };
}

/// Every upstream group metric, in exposition order (see [`listener_metrics!`]).
macro_rules! upstream_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// Requests routed to the group, by the status class of the final response (the
            /// backend's or the proxy's own).
            count responses: ClassCounters = "lbproxy_upstream_requests_total",
                json "requests_total";
            /// Requests of the group not finished yet.
            count in_flight: Gauge = "lbproxy_upstream_in_flight_requests", json "in_flight";
            /// Requests waiting for an instance of an autoscaled group that has none (scale
            /// from zero): the autoscaler starts one.
            count waiting_for_instance: Gauge = "lbproxy_upstream_waiting_for_instance_requests",
                json "waiting_for_instance";
            /// Attempts after the first (to the next backend, or the same one on a fresh
            /// connection).
            count retries: Counter = "lbproxy_upstream_retries_total", json "retries_total";
            /// Retries refused because the group's retry budget was spent (the request failed
            /// fast).
            count budget_rejections: Counter = "lbproxy_upstream_retry_budget_rejections_total",
                json "retry_budget_rejections_total";
            /// Backends chosen on the other side of a deployment's traffic split than the
            /// client's (canary or stable), because no backend of its own side could take the
            /// request: down, draining, ejected, full or already tried.
            count split_fallbacks: Counter = "lbproxy_upstream_split_fallbacks_total",
                json "split_fallbacks_total";
            /// Requests answered 503 because no backend of the group was usable.
            count no_usable_backend: Counter = "lbproxy_upstream_no_usable_backend_total",
                json "no_usable_backend_total";
            /// Requests answered 503 after waiting queue_timeout for a backend under its
            /// max_connections.
            count queue_timeouts: Counter = "lbproxy_upstream_queue_timeouts_total",
                json "queue_timeouts_total";
            /// Requests answered 503 (connections closed) because the proxy ran out of file
            /// descriptors connecting to a backend.
            count out_of_resources: Counter = "lbproxy_upstream_out_of_resources_total",
                json "out_of_resources_total";
            /// Time from the complete request head to the end of the response, for every
            /// request of the group.
            count latency: LatencyCounters = "lbproxy_upstream_request_duration_seconds";
        }
    };
}

/// Every backend metric, in exposition order (see [`listener_metrics!`]).
macro_rules! backend_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// Responses the backend gave, by status class.
            count responses: ClassCounters = "lbproxy_backend_requests_total",
                json "requests_total";
            /// Tries that got no complete response: connect errors, timeouts, lost
            /// connections, invalid responses.
            count failed_attempts: Counter = "lbproxy_backend_failed_attempts_total",
                json "failed_attempts_total";
            /// Connections to the backend that failed (refused, timed out, TLS handshake
            /// failed).
            count connect_errors: Counter = "lbproxy_backend_connect_errors_total",
                json "connect_errors_total";
            /// Times the backend broke HTTP/1.1 framing: an invalid response, bytes past the
            /// end of a response, or bytes sent on an idle keep-alive connection (each closed
            /// the connection, and no client saw those bytes).
            count protocol_errors: Counter = "lbproxy_backend_protocol_errors_total",
                json "protocol_errors_total";
            /// Times outlier detection ejected the backend (summed over workers).
            count ejections: Counter = "lbproxy_backend_ejections_total",
                json "ejections_total";
            /// Requests sent on an idle keep-alive connection from the pool.
            count pool_hits: Counter = "lbproxy_backend_pool_hits_total",
                json "pool_hits_total";
            /// Requests that found no idle connection in the pool and connected.
            count pool_misses: Counter = "lbproxy_backend_pool_misses_total",
                json "pool_misses_total";
            /// Idle keep-alive connections to the backend in the pools.
            show idle_connections: Gauge = "lbproxy_backend_idle_connections",
                from |b| Value::Number(b.idle_connections);
            /// Requests in flight to the backend.
            show in_flight: Gauge = "lbproxy_backend_in_flight_requests",
                from |b| Value::Number(b.in_flight);
            /// Request bytes sent to the backend (heads as the proxy wrote them, and bodies).
            count bytes_sent: Counter = "lbproxy_backend_sent_bytes_total";
            /// Response bytes from the backend, as relayed to clients.
            count bytes_received: Counter = "lbproxy_backend_received_bytes_total";
            /// TCP (L4) connections relayed to the backend.
            count connections: Counter = "lbproxy_backend_connections_total",
                json "connections_total";
            /// TCP (L4) connections to the backend open now.
            count open_connections: Gauge = "lbproxy_backend_open_connections",
                json "open_connections";
            /// 1 while the active health checks pass (or none are configured), else 0.
            show healthy: Gauge = "lbproxy_backend_healthy",
                from |b| Value::Number(u64::from(b.healthy));
            /// 1 when the backend takes requests (up or in slow start) on every worker, else 0.
            show up: Gauge = "lbproxy_backend_up", from |b| Value::Number(u64::from(b.is_up()));
            /// The weight in force (a runtime override from the admin API, else the configured
            /// one).
            show weight: Gauge = "lbproxy_backend_weight",
                from |b| Value::Number(u64::from(b.weight));
            /// Workers on which the backend is in this state (up, slow-start, half-open,
            /// ejected, down, draining, retired).
            show state: Gauge = "lbproxy_backend_state", from |b| Value::Labelled {
                label: "state",
                samples: BackendState::ALL
                    .iter()
                    .map(|s| (s.as_str(), u64::from(b.workers_in(*s))))
                    .collect(),
            };
            /// Workers on which the backend's circuit breaker is in this state (closed, open,
            /// half-open).
            show circuit: Gauge = "lbproxy_backend_circuit", from |b| Value::Labelled {
                label: "state",
                samples: CircuitState::ALL
                    .iter()
                    .zip(b.circuits)
                    .map(|(c, n)| (c.as_str(), u64::from(n)))
                    .collect(),
            };
            /// Time from the complete request head to the end of the response, for responses
            /// the backend gave.
            count latency: LatencyCounters = "lbproxy_backend_request_duration_seconds";
        }
    };
}

/// Every metric of a discovered instance (a systemd unit of a `discover` group), in exposition
/// order. Nothing here is counted by the workers: each is a `show` entry over the admin's view of
/// one inventory row (`admin::instances::InstanceView`, which also answers `/api/instances`), and
/// the table is made there (`INSTANCES`, labels `upstream` and `unit`) because the inventory
/// lives above this layer. The closures read the view's fields, `Routing` and
/// `UNIT_ACTIVE_STATES` where the table is made. A figure systemd does not report (accounting
/// off, the unit not running) is no sample at all rather than a made-up 0.
macro_rules! instance_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// 1 when the instance is a backend of its group (its unit is active and its address
            /// known), else 0 (waiting, draining or out).
            show up: Gauge = "lbproxy_instance_up",
                from |i| Value::Number(u64::from(i.routing == Routing::Routed));
            /// 1 for the unit's systemd ActiveState (active, activating, deactivating, inactive,
            /// failed, reloading, maintenance), 0 for the others.
            show state: Gauge = "lbproxy_instance_state", from |i| Value::Labelled {
                label: "state",
                samples: UNIT_ACTIVE_STATES
                    .iter()
                    .map(|s| (*s, u64::from(i.active_state == *s)))
                    .collect(),
            };
            /// When the unit last became active (ActiveEnterTimestamp), in seconds since the Unix
            /// epoch; no sample while it is not active.
            show start_time: Gauge = "lbproxy_instance_start_time_seconds",
                from |i| i.started_ms.map_or(Value::Unknown, |ms| Value::Real(ms as f64 / 1e3));
            /// Automatic restarts of the unit (systemd's NRestarts; back to 0 when it is started
            /// by hand).
            show restarts: Counter = "lbproxy_instance_restarts_total",
                from |i| Value::Number(u64::from(i.restarts));
            /// 1 while the unit restarted within the flapping window, else 0.
            show flapping: Gauge = "lbproxy_instance_flapping",
                from |i| Value::Number(u64::from(i.flapping));
            /// CPU time the unit's processes used (systemd's CPUUsageNSec; a new count each time
            /// the unit starts).
            show cpu: Counter = "lbproxy_instance_cpu_seconds_total",
                from |i| i.cpu_usage_seconds.map_or(Value::Unknown, Value::Real);
            /// Memory the unit's cgroup uses (systemd's MemoryCurrent).
            show memory: Gauge = "lbproxy_instance_memory_bytes",
                from |i| i.memory_bytes.map_or(Value::Unknown, Value::Number);
            /// The unit's MemoryMax= in force; no sample when unlimited.
            show memory_max: Gauge = "lbproxy_instance_memory_max_bytes",
                from |i| i.limits.memory_max.map_or(Value::Unknown, Value::Number);
            /// Tasks (processes and threads) in the unit's cgroup (systemd's TasksCurrent).
            show tasks: Gauge = "lbproxy_instance_tasks",
                from |i| i.tasks.map_or(Value::Unknown, Value::Number);
            /// The unit's TasksMax= in force; no sample when unlimited.
            show tasks_max: Gauge = "lbproxy_instance_tasks_max",
                from |i| i.limits.tasks_max.map_or(Value::Unknown, Value::Number);
        }
    };
}

/// Every metric of an autoscaled group (`[upstream.NAME.autoscale]`), in exposition order. Like
/// [`instance_metrics!`], `show` entries only, over the admin's view of the autoscaler's board
/// (`admin::autoscale::AutoscaleView`, which also answers `/api/autoscale`); the table is made
/// there (`AUTOSCALE`, label `upstream`). The signal has a label more, the metric it measures,
/// and so a table of its own: [`autoscale_signal_metrics!`].
macro_rules! autoscale_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// The instance count the autoscaling policy wants now (within min and max).
            show desired: Gauge = "lbproxy_autoscale_desired_instances",
                from |a| Value::Number(u64::from(a.desired));
            /// Instances of the group routed now.
            show current: Gauge = "lbproxy_autoscale_current_instances",
                from |a| Value::Number(u64::from(a.current));
            /// Instances the autoscaler started that are not routed yet.
            show starting: Gauge = "lbproxy_autoscale_starting_instances",
                from |a| Value::Number(u64::from(a.starting));
            /// Instances the autoscaler is draining or stopping.
            show stopping: Gauge = "lbproxy_autoscale_stopping_instances",
                from |a| Value::Number(u64::from(a.stopping));
            /// The wanted value of the group's metric per instance (requests in flight, req/s,
            /// p99 milliseconds or CPU percent of one core).
            show target: Gauge = "lbproxy_autoscale_target",
                from |a| Value::Real(a.target);
            /// The fewest instances the autoscaler keeps (0: scale to zero).
            show min: Gauge = "lbproxy_autoscale_min_instances",
                from |a| Value::Number(u64::from(a.min));
            /// The most instances the autoscaler starts.
            show max: Gauge = "lbproxy_autoscale_max_instances",
                from |a| Value::Number(u64::from(a.max));
            /// 1 while the group is in panic mode (the signal passed the panic threshold: scale
            /// up at once, no scale-down), else 0.
            show panic: Gauge = "lbproxy_autoscale_panic",
                from |a| Value::Number(u64::from(a.mode == "panic"));
            /// Decisions that changed the group's instance count, by direction (up, down).
            show decisions: Counter = "lbproxy_autoscale_decisions_total",
                from |a| Value::Labelled {
                    label: "direction",
                    samples: vec![("up", a.decisions.up), ("down", a.decisions.down)],
                };
        }
    };
}

/// The autoscaled group's signal, labelled `upstream` and `metric` (see [`autoscale_metrics!`]).
macro_rules! autoscale_signal_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// The group's metric at the autoscaler's last tick, per routed instance (the group's
            /// p99 for metric p99); no sample without data (no instance, no sample yet).
            show signal: Gauge = "lbproxy_autoscale_signal",
                from |a| a.signal.map_or(Value::Unknown, Value::Real);
        }
    };
}

/// Every metric of a group with deployments (`lbproxy deploy`), in exposition order. Like
/// [`autoscale_metrics!`], `show` entries only, over the admin's rows of the deployment board
/// (`admin::deploy::DeployGroupRow`, one per group the board has seen deployed); the tables are
/// made there (`DEPLOY`, label `upstream`). The new version's weight, and the last analysis's
/// checks, have labels more and so tables of their own: [`deploy_weight_metrics!`],
/// [`deploy_check_metrics!`] and [`deploy_check_value_metrics!`].
macro_rules! deploy_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// 1 while a deployment of the group is in progress (from its start until its
            /// old or new instances are stopped), else 0.
            show in_progress: Gauge = "lbproxy_deploy_in_progress",
                from |d| Value::Number(u64::from(d.in_progress));
            /// The canary step in force, counting from 1 (0 while the canary instances start);
            /// no sample for blue-green or without a deployment in progress.
            show step: Gauge = "lbproxy_deploy_step",
                from |d| d.step.map_or(Value::Unknown, Value::Number);
            /// Failed canary analyses in a row (failure_limit of them abort); no sample
            /// without a deployment in progress.
            show failures: Gauge = "lbproxy_deploy_failures_in_a_row",
                from |d| d.failures_in_a_row.map_or(Value::Unknown, |n| Value::Number(u64::from(n)));
            /// Ended deployments of the group the proxy keeps in its history (the last 50), by
            /// result (promoted, aborted, rolled-back).
            show ended: Counter = "lbproxy_deploys_total", from |d| Value::Labelled {
                label: "result",
                samples: vec![
                    ("promoted", d.promoted),
                    ("aborted", d.aborted),
                    ("rolled-back", d.rolled_back),
                ],
            };
        }
    };
}

/// The new version's share of the clients, labelled `upstream` and `version` (see
/// [`deploy_metrics!`]).
macro_rules! deploy_weight_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// The share of the group's clients the deployment in progress sends to its new
            /// version, 0 to 1; no sample without a deployment in progress.
            show weight: Gauge = "lbproxy_deploy_weight_ratio",
                from |w| Value::Real(f64::from(w.weight_bp) / 10_000.0);
        }
    };
}

/// The limits of the last canary analysis's checks, labelled `upstream` and `check` (see
/// [`deploy_metrics!`]).
macro_rules! deploy_check_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// The limit of a check of the last canary analysis (error_ratio,
            /// error_ratio_increase, p99_ms, p99_ratio): the value fails above it.
            show limit: Gauge = "lbproxy_deploy_analysis_limit", from |c| Value::Real(c.limit);
        }
    };
}

/// The values the last canary analysis measured, labelled `upstream`, `check` and `side` (see
/// [`deploy_metrics!`]).
macro_rules! deploy_check_value_metrics {
    ($then:ident! { $($head:tt)* }) => {
        $then! {
            $($head)*

            /// A check's value in the last canary analysis, for the canary and (for the checks
            /// that compare) stable; no sample before the first analysis.
            show value: Gauge = "lbproxy_deploy_analysis_value", from |c| Value::Real(c.value);
        }
    };
}

pub(crate) use {
    autoscale_metrics, autoscale_signal_metrics, backend_metrics, deploy_check_metrics,
    deploy_check_value_metrics, deploy_metrics, deploy_weight_metrics, instance_metrics,
    listener_metrics, upstream_metrics,
};
