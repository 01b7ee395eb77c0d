//! Choosing the io driver: io_uring where the kernel allows it, else monoio's legacy (epoll)
//! driver, said once in the log.

use crate::config::DriverChoice;
pub use crate::sys::driver::Driver;

/// Resolves the configured choice against what this kernel allows.
pub fn resolve(choice: DriverChoice) -> anyhow::Result<Driver> {
    match choice {
        DriverChoice::Legacy => Ok(Driver::Legacy),
        DriverChoice::IoUring if crate::sys::driver::io_uring_available() => Ok(Driver::IoUring),
        DriverChoice::IoUring => anyhow::bail!(
            "runtime.driver = \"io_uring\" but io_uring is not available here (old kernel, \
             kernel.io_uring_disabled, or a seccomp profile that blocks io_uring_setup); \
             set driver = \"auto\" or \"legacy\""
        ),
        DriverChoice::Auto if crate::sys::driver::io_uring_available() => Ok(Driver::IoUring),
        DriverChoice::Auto => {
            tracing::warn!(
                "io_uring is not available (old kernel, kernel.io_uring_disabled, or seccomp); \
                 using the legacy epoll driver"
            );
            Ok(Driver::Legacy)
        }
    }
}
