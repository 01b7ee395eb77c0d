//! lbproxy: a thread-per-core HTTP/1.1 reverse proxy and load balancer on io_uring (monoio).
//!
//! Flow: [`config::load`] validates a TOML file into a [`config::Config`];
//! [`server::Server::start`] binds every listener, starts one worker thread per core (each its own
//! monoio runtime, its own `SO_REUSEPORT` listener, pool and balancer state) and returns once all
//! are listening; each worker runs [`proxy`] on its accepted connections, using the sans-io
//! [`http`] codec and the [`balancer`]s; the [`health`] thread probes backends once for all
//! workers. `lbproxy up` ([`up`]) runs API instances and the proxy together; under systemd,
//! [`systemd`] adds socket activation, sd_notify, the honest watchdog, reload confirmation and
//! native journal logging. Workers count what they do ([`metrics`]); the [`admin`] server on the
//! control side shows it (dashboard, Prometheus, JSON API) and changes backends at runtime;
//! [`rollout`] restarts the API instances one at a time through systemd and that API.

pub(crate) mod admin;
pub mod cli;
pub mod config;
pub(crate) mod control;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod generate;
pub(crate) mod health;
pub mod http;
pub(crate) mod l4;
pub(crate) mod l7;
pub(crate) mod listener;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod relay;
pub(crate) mod rollout;
pub(crate) mod runtime;
pub mod server;
pub(crate) mod sys;
pub(crate) mod systemd;
pub(crate) mod tls;
pub(crate) mod up;
pub(crate) mod upstream;
pub(crate) mod worker;
