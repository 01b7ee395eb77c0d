//! Command-line flags, and the small duration syntax they use ("500ms", "2s", "1m").
//!
//! Besides where to listen and how to start and stop, the flags say which version this instance
//! is and how bad it is (`--fail-ratio`, `--delay`, `--crash-after`): a version to practise
//! progressive delivery on. `lbproxy deploy` writes such flags into an instance's version file
//! as `DEMO_API_ARGS`, which `api@.service` passes to the program.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Without `--listen`, instance N listens on `127.0.0.1:(BASE_PORT + N)`.
const BASE_PORT: u16 = 8000;

/// The environment variable a version file sets (`LBPROXY_VERSION="v2"`), read when
/// `--version NAME` is not given.
pub const VERSION_ENV: &str = "LBPROXY_VERSION";

/// The version an instance reports when neither `--version NAME` nor [`VERSION_ENV`] says.
pub const DEFAULT_VERSION: &str = "v1";

/// The longest version name (as `lbproxy deploy` allows).
const MAX_VERSION_LEN: usize = 64;

/// The demo API that lbproxy balances: one instance of a pretend user service.
///
/// Instance N listens on 127.0.0.1:(8000+N), or on --listen. Socket activation: when systemd
/// passes a listening socket (LISTEN_PID is this process, LISTEN_FDS at least 1; e.g. api@N.socket
/// in front of api@N.service), the instance serves on that socket instead (the one named `http`
/// in LISTEN_FDNAMES if there are several, else the first) and ignores --listen; the stdout line
/// shows the socket's address. It must be a listening TCP socket, or the start fails. On SIGTERM
/// the instance closes only its own copy: the socket stays open in systemd, so connections made
/// while the instance restarts wait for the next one instead of being refused.
///
/// A bad version to practise canary and blue-green deployments on: --fail-ratio, --delay and
/// --crash-after apply to ordinary requests (every path but /health/* and /admin/*), and
/// --version names the version in the X-Api-Version header and in GET /.
#[derive(Debug, Parser)]
// `--version NAME` names the version this instance runs; clap's own version flag is replaced by
// the same option without a value (`--version` or `-V` alone still print the program's version).
#[command(name = "lbproxy-demo-api", version, disable_version_flag = true)]
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

    /// The version this instance runs, reported in the `X-Api-Version` header of every response
    /// and as `version` in `GET /` (letters, digits, `.`, `_`, `-`; at most 64). Default: the
    /// environment variable LBPROXY_VERSION (which lbproxy deploy writes into the instance's
    /// version file), else `v1`. Without NAME (`--version` or `-V` alone): print the program's
    /// version and exit.
    #[arg(short = 'V', long = "version", value_name = "NAME", value_parser = parse_version_name)]
    pub version: Option<Option<String>>,

    /// Answer this share of ordinary requests (all but /health/* and /admin/*) with 500, evenly
    /// spread: request n fails when floor(n*R) > floor((n-1)*R), so 0.2 fails every fifth, and
    /// exactly 20 of every 100.
    #[arg(long, value_name = "R", default_value = "0", value_parser = parse_ratio)]
    pub fail_ratio: f64,

    /// Added latency: every ordinary request (all but /health/* and /admin/*) waits this long
    /// before it is served, e.g. 150ms.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub delay: Duration,

    /// Crash after answering N ordinary requests (all but /health/* and /admin/*): the process
    /// exits at once with status 70, without draining, as a crash looks to systemd; requests
    /// after the Nth get no answer.
    #[arg(long, value_name = "N")]
    pub crash_after: Option<NonZeroU64>,
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

    /// `--version` or `-V` without a name: print the program's version instead of serving.
    pub fn prints_program_version(&self) -> bool {
        matches!(self.version, Some(None))
    }

    /// The version this instance reports: `--version NAME`, else `env` (the value of
    /// [`VERSION_ENV`]; an error names the variable when it is not a valid name), else
    /// [`DEFAULT_VERSION`].
    pub fn version_name(&self, env: Option<OsString>) -> anyhow::Result<String> {
        if let Some(Some(name)) = &self.version {
            return Ok(name.clone());
        }
        match env {
            None => Ok(DEFAULT_VERSION.to_owned()),
            Some(value) => {
                let text = value.to_str().with_context(|| {
                    format!("{VERSION_ENV} is not UTF-8; set it to a name such as v2")
                })?;
                parse_version_name(text)
                    .map_err(|problem| anyhow::anyhow!("{VERSION_ENV}={text:?}: {problem}"))
            }
        }
    }
}

/// A version name: 1 to 64 letters, digits, `.`, `_` or `-` (what `lbproxy deploy` accepts, and
/// always a valid header value).
pub fn parse_version_name(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > MAX_VERSION_LEN || !text.chars().all(allowed) {
        return Err(format!(
            "`{text}` is not a version name: use 1 to {MAX_VERSION_LEN} letters, digits, `.`, \
             `_` or `-` (e.g. v2)"
        ));
    }
    Ok(text.to_owned())
}

/// A share from 0 to 1 ("0.2", "1", "0").
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!(
            "`{text}` is not a ratio from 0 to 1 (e.g. 0.2 for one request in five)"
        )),
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

    #[test]
    fn the_version_comes_from_the_flag_then_the_environment_then_v1() {
        let named = Cli::parse_from(["lbproxy-demo-api", "--version", "v7"]);
        assert!(!named.prints_program_version());
        let from_env = Some(OsString::from("v9"));
        assert_eq!(named.version_name(from_env.clone()).unwrap(), "v7");

        let unnamed = Cli::parse_from(["lbproxy-demo-api", "--instance", "2"]);
        assert_eq!(unnamed.version_name(from_env).unwrap(), "v9");
        assert_eq!(unnamed.version_name(None).unwrap(), DEFAULT_VERSION);
        let bad = unnamed
            .version_name(Some(OsString::from("v 2")))
            .unwrap_err()
            .to_string();
        assert!(bad.contains(VERSION_ENV), "{bad}");

        assert!(Cli::try_parse_from(["lbproxy-demo-api", "--version", "v/2"]).is_err());
        let too_long = "v".repeat(MAX_VERSION_LEN + 1);
        assert!(Cli::try_parse_from(["lbproxy-demo-api", "--version", &too_long]).is_err());
    }

    #[test]
    fn version_without_a_name_still_prints_the_program_version() {
        for flag in ["--version", "-V"] {
            let cli = Cli::parse_from(["lbproxy-demo-api", flag]);
            assert!(cli.prints_program_version(), "{flag}");
        }
        let cli = Cli::parse_from(["lbproxy-demo-api", "--version", "--instance", "3"]);
        assert!(cli.prints_program_version());
        assert_eq!(cli.instance, 3);
    }

    #[test]
    fn bad_version_flags_parse_and_ratios_outside_0_to_1_are_rejected() {
        let cli = Cli::parse_from([
            "lbproxy-demo-api",
            "--fail-ratio",
            "0.2",
            "--delay",
            "150ms",
            "--crash-after",
            "3",
        ]);
        assert_eq!(cli.fail_ratio, 0.2);
        assert_eq!(cli.delay, Duration::from_millis(150));
        assert_eq!(cli.crash_after.map(NonZeroU64::get), Some(3));

        let defaults = Cli::parse_from(["lbproxy-demo-api"]);
        assert_eq!(defaults.fail_ratio, 0.0);
        assert_eq!(defaults.delay, Duration::ZERO);
        assert_eq!(defaults.crash_after, None);

        for ratio in ["1.5", "-0.1", "NaN", "a fifth", ""] {
            assert!(parse_ratio(ratio).is_err(), "{ratio:?}");
        }
        assert!(Cli::try_parse_from(["lbproxy-demo-api", "--crash-after", "0"]).is_err());
    }
}
