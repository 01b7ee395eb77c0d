//! What a deployment is asked to do: the spec `lbproxy deploy start` reads from a TOML file
//! and/or flags, checked before anything starts.
//!
//! ```toml
//! upstream = "api"            # a group with [upstream.api.discover] systemd = "api@*.service"
//! version = "v2"              # a name: the journal, the history, LBPROXY_VERSION in the env file
//! strategy = "canary"         # or "blue-green"
//! [environment]               # the new version's instances' environment file (see version.rs)
//! API_VERSION = "v2"
//! [canary]
//! instances = 1               # canary instances started beside the stable ones
//! steps = [5, 25, 50, 100]    # percent of the clients, one step per interval
//! interval = "30s"
//! key = "client_ip"           # or "header:x-user", "cookie:session"
//! [analysis]                  # canary against stable over each step's window
//! min_requests = 50           # fewer on either side: hold (never promote on silence)
//! max_error_ratio = 0.05      # canary's 5xx + failed tries over its requests
//! max_error_ratio_increase = 0.02   # ... minus stable's
//! max_p99_ms = 1000
//! max_p99_ratio = 1.5         # canary's p99 over stable's
//! failure_limit = 2           # failed analyses in a row that abort
//! [blue_green]
//! keep_blue = "5m"            # blue runs this long after the switch, for an instant switch back
//! ```

use crate::config::HashKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Canary (stepped weights with analysis) or blue-green (all at once, blue kept warm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Canary,
    BlueGreen,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

/// A checked deployment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The upstream group; it discovers its instances from a `PREFIX@*.service` pattern.
    pub upstream: String,
    /// The new version's name (letters, digits, `.`, `_`, `-`; at most 64).
    pub version: String,
    pub strategy: Strategy,
    /// Variables of the new version's environment file, beside `LBPROXY_VERSION`.
    pub environment: BTreeMap<String, String>,
    pub canary: CanarySpec,
    pub analysis: AnalysisSpec,
    pub blue_green: BlueGreenSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// Canary instances started beside the stable ones. Default 1.
    pub instances: u32,
    /// The canary's share of the clients at each step, in percent, rising, the last 100.
    /// Default 5, 25, 50, 100.
    pub steps: Vec<f64>,
    /// How long each step lasts (its analysis window). Default 30 s.
    #[serde(with = "seconds")]
    pub interval: Duration,
    /// What a client is recognized by for the split. Default: its address.
    #[serde(with = "hash_key")]
    pub key: HashKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSpec {
    /// Requests each side must have answered in the window for a verdict; fewer: hold.
    /// Default 50.
    pub min_requests: u64,
    /// The canary's error ratio (5xx and failed tries over its requests) above this fails.
    /// Default 0.05.
    pub max_error_ratio: f64,
    /// The canary's error ratio minus stable's above this fails. Default 0.02.
    pub max_error_ratio_increase: f64,
    /// The canary's p99 latency above this fails. Default 1000 ms.
    pub max_p99_ms: f64,
    /// The canary's p99 over stable's above this fails (only when the canary's p99 is also
    /// more than 5 ms: noise below that is not a regression). Default 1.5.
    pub max_p99_ratio: f64,
    /// Failed analyses in a row that abort the deployment. Default 2.
    pub failure_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueGreenSpec {
    /// How long blue keeps running after the switch (an instant switch back), before it is
    /// drained and stopped. Default 5 min.
    #[serde(with = "seconds")]
    pub keep_blue: Duration,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            instances: 1,
            steps: vec![5.0, 25.0, 50.0, 100.0],
            interval: Duration::from_secs(30),
            key: HashKey::ClientIp,
        }
    }
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            min_requests: 50,
            max_error_ratio: 0.05,
            max_error_ratio_increase: 0.02,
            max_p99_ms: 1000.0,
            max_p99_ratio: 1.5,
            failure_limit: 2,
        }
    }
}

impl Default for BlueGreenSpec {
    fn default() -> Self {
        Self {
            keep_blue: Duration::from_secs(300),
        }
    }
}

impl CanarySpec {
    /// Step `index`'s weight in basis points.
    pub fn step_bp(&self, index: usize) -> u16 {
        let percent = self.steps.get(index).copied().unwrap_or(100.0);
        (percent * 100.0).round().clamp(0.0, 10_000.0) as u16
    }
}

/// Durations as (fractional) seconds in the JSON the state directory and the admin API keep.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// A split key as text: `client_ip`, `header:NAME`, `cookie:NAME`.
pub mod hash_key {
    use crate::config::HashKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn to_text(key: &HashKey) -> String {
        match key {
            HashKey::ClientIp => "client_ip".to_owned(),
            HashKey::Header(name) => format!("header:{name}"),
            HashKey::Cookie(name) => format!("cookie:{name}"),
        }
    }

    /// `Err`: what is wrong, with the accepted forms (the configuration's `hash_key` rules).
    pub fn from_text(text: &str) -> Result<HashKey, String> {
        crate::config::parse_hash_key(text)
            .map_err(|(problem, fix)| format!("\"{text}\" is not a client key: {problem}; {fix}"))
    }

    pub fn serialize<S: Serializer>(key: &HashKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_text(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashKey, D::Error> {
        from_text(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
