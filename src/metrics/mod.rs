//! Metrics: what the workers count, and how it reaches the control side.
//!
//! Every metric of listeners, groups and backends is declared once, in [`catalog`]: its
//! Prometheus name, TYPE and HELP, its JSON API field, and the `Cell` that counts it. The
//! [`family`] macros make [`stats`]' structs (cells, published counts, `snapshot`, `merge`) and
//! the [`tables`] that `/metrics` and the JSON API are rendered from out of those declarations.
//!
//! Flow: every worker owns its statistics ([`stats`]: per listener, route, upstream group and
//! backend, made of the `Cell` primitives in [`counters`]) and updates them on the request path
//! with plain increments — one writer, no lock, no atomic. On its 100 ms tick the worker copies
//! them into a [`WorkerSnapshot`] ([`snapshot`]) and swaps it into its slot in `WorkerShared`;
//! once a second it also hands over each backend's latency histogram (hdrhistogram) for that
//! second. The control side ([`crate::admin`], the systemd status line) reads the latest
//! snapshot of every worker and sums them ([`aggregate`]) when it needs figures: at scrape time,
//! never on the data path; it renders them through the [`tables`].
//!
//! Response compression is counted apart, per coding ([`compression`]), by the same flow.
//!
//! [`state`] names backend and circuit states for everything that shows them.

pub mod aggregate;
pub mod catalog;
pub mod compression;
pub mod counters;
pub mod family;
pub mod rate_limits;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod tables;

pub use aggregate::Aggregate;
pub use snapshot::{Published, WorkerSnapshot};
pub use state::{BackendState, CircuitState};
