//! lbproxy: a thread-per-core HTTP/1.1 and TCP reverse proxy and load balancer on io_uring
//! (monoio), with a systemd layer that runs and orchestrates the API instances behind it.
//!
//! Flow: [`config::load`] validates a TOML file into a [`config::Config`];
//! [`server::Server::start`] binds every listener, starts one worker per core ([`worker`]: its
//! own monoio runtime, `SO_REUSEPORT` listener, pools and balancer state) and returns once all
//! are listening. Each worker runs the HTTP session ([`l7`], on the sans-io [`http`] codec) or the
//! L4 session ([`l4`]) on its accepted connections; both choose, connect and fail over through
//! [`upstream`] and read and write through [`net`] and [`relay`]. The control side ([`control`])
//! reloads, drains, probes backends once for all workers ([`health`]) and drives the systemd
//! services (watchdog, `STATUS=`, reload confirmation); workers count what they do ([`metrics`]),
//! and the [`admin`] server shows it (dashboard, Prometheus, JSON API) and changes backends at
//! runtime. `lbproxy up` ([`up`]) runs API instances and the proxy together; [`rollout`]
//! restarts the API instances one at a time through systemd. Every configuration that serves is
//! recorded in the state directory ([`history`]); [`recovery`] rolls back to one, and backs up
//! and restores the configuration and the state directory. ARCHITECTURE.md has the picture.
//!
//! The library's API is what the binary, the tests and the fuzz targets use: [`cli`],
//! [`config`], [`http`], [`logging`], [`server`], the hidden `fuzzing` and the hidden
//! `systemd_bus`; everything else is crate-private.

pub(crate) mod admin;
pub mod cli;
pub mod config;
pub(crate) mod control;
pub(crate) mod deploy;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod generate;
pub(crate) mod health;
pub(crate) mod history;
pub mod http;
pub(crate) mod l4;
pub(crate) mod l7;
pub(crate) mod listener;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod policy;
pub(crate) mod recovery;
pub(crate) mod relay;
pub(crate) mod rollout;
pub(crate) mod runtime;
pub mod server;
pub(crate) mod sys;
pub(crate) mod systemd;
/// systemd's manager over D-Bus, for tests/systemd_bus.rs: its calls are checked against a real
/// user manager there, which no CLI verb exposes one by one. Not a stable API.
#[doc(hidden)]
pub use systemd::bus as systemd_bus;
pub(crate) mod tls;
pub(crate) mod up;
pub(crate) mod upstream;
pub(crate) mod worker;
