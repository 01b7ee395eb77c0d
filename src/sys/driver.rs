//! The io driver a worker runs on, and whether this kernel lets us use io_uring (an
//! `io_uring_setup` probe: old kernels, `kernel.io_uring_disabled` and seccomp profiles refuse).
//! Which one the workers use is decided once, from the configuration, by
//! `crate::runtime::driver::resolve`.

use std::fmt;

/// The driver the workers actually run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        })
    }
}

/// Whether io_uring can be set up here.
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}
