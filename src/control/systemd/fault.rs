//! Fault injection for the watchdog tests: with `LBPROXY_ALLOW_FAULTS=1` in the environment,
//! SIGUSR2 (received by [`crate::control::signals`], carried out by the control loop as
//! `Command::FaultStall`) stalls worker 0 for good — its thread blocks inside its event loop, as
//! a stuck ring or a runaway loop would — so a test can watch systemd kill and restart the proxy
//! with `Result=watchdog`.
//!
//! Nothing here can be switched on by accident: without that exact variable no handler is
//! installed (SIGUSR2 keeps its default action, which ends the process, as for any program that
//! does not handle it), and when it is set the proxy says so in its log at start.

/// The variable that allows fault injection; only the value `1` does.
pub const ALLOW_FAULTS_VAR: &str = "LBPROXY_ALLOW_FAULTS";

/// Whether this process may inject faults.
pub fn allowed() -> bool {
    std::env::var(ALLOW_FAULTS_VAR).is_ok_and(|v| v == "1")
}

/// Says in the log that fault injection is on, when [`allowed`]; returns whether it is.
pub fn announce() -> bool {
    let allowed = allowed();
    if allowed {
        tracing::warn!(
            "{ALLOW_FAULTS_VAR}=1: fault injection is on (SIGUSR2 stalls worker 0); never set \
             this outside tests"
        );
    }
    allowed
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_exact_value_allows_faults() {
        for (value, allowed) in [("1", true), ("0", false), ("yes", false), ("", false)] {
            std::env::set_var(super::ALLOW_FAULTS_VAR, value);
            assert_eq!(super::allowed(), allowed, "{value:?}");
        }
        std::env::remove_var(super::ALLOW_FAULTS_VAR);
        assert!(!super::allowed());
    }
}
