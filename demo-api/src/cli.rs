//! Command-line flags, and the small duration syntax they use ("500ms", "2s", "1m").

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Without `--listen`, instance N listens on `127.0.0.1:(BASE_PORT + N)`.
const BASE_PORT: u16 = 8000;

/// The demo API that lbproxy balances: one instance of a pretend user service.
///
/// Instance N listens on 127.0.0.1:(8000+N), or on --listen. Socket activation: when systemd
/// passes a listening socket (LISTEN_PID is this process, LISTEN_FDS at least 1; e.g. api@N.socket
/// in front of api@N.service), the instance serves on that socket instead (the one named `http`
/// in LISTEN_FDNAMES if there are several, else the first) and ignores --listen; the stdout line
/// shows the socket's address. It must be a listening TCP socket, or the start fails. On SIGTERM
/// the instance closes only its own copy: the socket stays open in systemd, so connections made
/// while the instance restarts wait for the next one instead of being refused.
#[derive(Debug, Parser)]
#[command(name = "lbproxy-demo-api", version)]
pub struct Cli {
    /// Instance number, reported in `GET /` and the `X-Instance` header. Without `--listen` the
    /// instance listens on 127.0.0.1:(8000+N).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub instance: u16,

    /// Address to listen on, overriding the 8000+N default. Port 0 picks a free port (read it
    /// from the stdout line). Ignored under socket activation (a socket passed by systemd).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Tokio worker threads.
    #[arg(long, value_name = "N", default_value = "2")]
    pub threads: NonZeroUsize,

    /// Readiness answers 503 `starting` for this long after listening (simulated warm-up).
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub startup_delay: Duration,

    /// After SIGTERM/SIGINT keep serving, with readiness 503 `draining`, for this long before
    /// closing the listener, so a load balancer's health checks notice.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}

impl Cli {
    /// `--listen`, or 127.0.0.1:(8000+instance).
    pub fn listen_address(&self) -> anyhow::Result<SocketAddr> {
        if let Some(address) = self.listen {
            return Ok(address);
        }
        let port = BASE_PORT.checked_add(self.instance).with_context(|| {
            format!(
                "instance {} has no default port (8000+N > 65535); pass --listen",
                self.instance
            )
        })?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

/// Parses a whole number followed by `ms`, `s` or `m` ("500ms", "2s", "1m"); a bare "0" is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. 500ms, 2s or 1m"))?;
    let (number, unit) = text.split_at(digits_end);
    let amount: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(amount)),
        "s" => Some(Duration::from_secs(amount)),
        "m" => amount.checked_mul(60).map(Duration::from_secs),
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    duration.ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in ["", "2", "s", "2h", "-1s", "1.5s", "ms"] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn default_port_is_8000_plus_instance() {
        let cli = Cli::parse_from(["lbproxy-demo-api", "--instance", "3"]);
        assert_eq!(
            cli.listen_address().unwrap(),
            "127.0.0.1:8003".parse().unwrap()
        );
        let cli = Cli::parse_from(["lbproxy-demo-api", "--instance", "60000"]);
        assert!(cli.listen_address().is_err());
    }
}
