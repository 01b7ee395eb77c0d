//! The raw system calls the proxy needs beyond monoio and std, each wrapped once in a safe
//! function: the non-blocking peek and accept of the data plane ([`socket`]), the pipes and
//! `splice(2)` of the L4 relay ([`pipe`]), the reuseport BPF program that steers a listener's
//! connections by client address ([`reuseport`]), the CPUs a worker may pin to ([`cpus`]), whether
//! io_uring is available ([`driver`]), the open-files limit ([`fd_limit`]), and the state
//! directory with its atomic writes ([`state_dir`]). Nothing here knows about requests,
//! backends or workers.

pub mod cpus;
pub mod driver;
pub mod fd_limit;
pub mod pipe;
pub mod reuseport;
pub mod socket;
pub mod state_dir;
