//! Which systemd unit runs which backend, and so the order of a rollout.
//!
//! By default `--unit 'api@{n}'`: `{n}` is the backend's 1-based position in the group's
//! `backends` list (the configuration's order, which `/api/backends` keeps), so the default
//! group 127.0.0.1:8001..8003 maps to `api@1`..`api@3` — the shipped units' instance N listens on
//! 8000+N. Where positions and instance numbers differ, `{port}` is the backend's port and
//! `{port-N}` the port minus N (`api@{port-8000}`: 127.0.0.1:8003 → `api@3`, whatever its
//! position), or `--map ADDR=UNIT,…` names each unit outright; backends a map leaves out are
//! left alone (a remote backup, say). Backends the configuration drains (`drain = true`) are left
//! alone too; those drained at runtime (`lbproxy ctl drain`, or a rollout that stopped) are
//! restarted and enabled like the others.

use super::group::BackendStatus;
use std::net::SocketAddr;

/// A `--unit` template: text with `{n}`, `{port}` or `{port-N}` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `{n}`: 1-based position in the group.
    Position,
    /// `{port}`, or `{port-N}`: the port minus N.
    Port {
        minus: u16,
    },
}

const PLACEHOLDERS: &str =
    "{n} (the backend's position in the group, from 1), {port} or {port-N} (its port minus N)";

impl std::str::FromStr for UnitTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| {
                format!("unclosed `{{` in {text:?}; placeholders: {PLACEHOLDERS}")
            })? + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "n" => Part::Position,
                "port" => Part::Port { minus: 0 },
                _ => match name.strip_prefix("port-").map(str::parse::<u16>) {
                    Some(Ok(minus)) => Part::Port { minus },
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{name}}} in {text:?}; use {PLACEHOLDERS}"
                        ))
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.iter().all(|p| matches!(p, Part::Text(_))) {
            return Err(format!(
                "{text:?} names one unit for every backend; put a placeholder in it: \
                 {PLACEHOLDERS}, e.g. 'api@{{n}}'"
            ));
        }
        Ok(UnitTemplate { parts })
    }
}

impl UnitTemplate {
    /// The unit of the backend at `position` (1-based) with `address`.
    pub fn unit_for(&self, position: usize, address: SocketAddr) -> Result<String, String> {
        let mut unit = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => unit.push_str(text),
                Part::Position => unit.push_str(&position.to_string()),
                Part::Port { minus } => {
                    let port = address.port().checked_sub(*minus).ok_or_else(|| {
                        format!(
                            "{address}: its port is below {minus}, so {{port-{minus}}} is negative"
                        )
                    })?;
                    unit.push_str(&port.to_string());
                }
            }
        }
        Ok(unit)
    }
}

/// `ADDR=UNIT` of `--map`.
pub fn parse_map_entry(text: &str) -> Result<(SocketAddr, String), String> {
    let (address, unit) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write IP:PORT=UNIT, e.g. 127.0.0.1:8001=api@1"))?;
    let address = address
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {address:?} is not an IP:PORT address"))?;
    let unit = unit.trim();
    if unit.is_empty() {
        return Err(format!("{text:?}: the unit is missing after `=`"));
    }
    Ok((address, unit.to_owned()))
}

/// How backends become units.
#[derive(Debug, Clone)]
pub enum UnitRule {
    Template(UnitTemplate),
    Map(Vec<(SocketAddr, String)>),
}

/// One backend to restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based position in the group.
    pub position: usize,
    pub address: SocketAddr,
    pub unit: String,
}

/// The steps in order, and the backends left alone with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub left_alone: Vec<(SocketAddr, String)>,
}

/// The plan for a group whose backends are `backends` (in the group's order).
pub fn plan(group: &str, backends: &[BackendStatus], rule: &UnitRule) -> Result<Plan, String> {
    if let UnitRule::Map(map) = rule {
        for (address, _) in map {
            if !backends.iter().any(|b| b.address == *address) {
                let list: Vec<String> = backends.iter().map(|b| b.address.to_string()).collect();
                return Err(format!(
                    "--map names {address}, which is not a backend of upstream \"{group}\" (its \
                     backends: {})",
                    list.join(", ")
                ));
            }
        }
    }
    let mut plan = Plan {
        steps: Vec::new(),
        left_alone: Vec::new(),
    };
    for (index, backend) in backends.iter().enumerate() {
        let position = index + 1;
        if backend.drained_by_config() {
            plan.left_alone.push((
                backend.address,
                "drained by the configuration (drain = true)".to_owned(),
            ));
            continue;
        }
        let unit = match rule {
            UnitRule::Template(template) => template.unit_for(position, backend.address)?,
            UnitRule::Map(map) => match map.iter().find(|(a, _)| *a == backend.address) {
                Some((_, unit)) => unit.clone(),
                None => {
                    plan.left_alone
                        .push((backend.address, "not in --map".to_owned()));
                    continue;
                }
            },
        };
        if let Some(twice) = plan.steps.iter().find(|s| s.unit == unit) {
            return Err(format!(
                "{} and {} would both be unit {unit}; give each backend its own unit (--unit \
                 with {{n}} or {{port-N}}, or --map)",
                twice.address, backend.address
            ));
        }
        plan.steps.push(Step {
            position,
            address: backend.address,
            unit,
        });
    }
    if plan.steps.is_empty() {
        return Err(format!(
            "nothing to restart in upstream \"{group}\": every backend is left alone"
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(address: &str, state: &str, drain_override: Option<bool>) -> BackendStatus {
        BackendStatus {
            address: address.parse().unwrap(),
            state: state.to_owned(),
            health: "up".to_owned(),
            drain_override,
            in_flight: 0,
            open_connections: 0,
            ramp_percent: 100.0,
            probes: None,
        }
    }

    fn three() -> Vec<BackendStatus> {
        vec![
            backend("127.0.0.1:8001", "up", None),
            backend("127.0.0.1:8002", "up", None),
            backend("127.0.0.1:8003", "up", None),
        ]
    }

    fn units(plan: &Plan) -> Vec<&str> {
        plan.steps.iter().map(|s| s.unit.as_str()).collect()
    }

    fn template(text: &str) -> UnitRule {
        UnitRule::Template(text.parse().unwrap())
    }

    #[test]
    fn by_default_the_instance_is_the_position_in_the_group() {
        let plan = plan("api", &three(), &template("api@{n}")).unwrap();
        assert_eq!(units(&plan), ["api@1", "api@2", "api@3"]);
        assert_eq!(plan.steps[2].position, 3);
        assert_eq!(plan.steps[2].address, "127.0.0.1:8003".parse().unwrap());
        assert!(plan.left_alone.is_empty());
    }

    #[test]
    fn the_instance_can_come_from_the_port() {
        let mut backends = three();
        backends.swap(0, 2);
        let plan = plan("api", &backends, &template("api@{port-8000}.service")).unwrap();
        assert_eq!(
            units(&plan),
            ["api@3.service", "api@2.service", "api@1.service"]
        );
        let plan = super::plan("api", &backends, &template("web-{port}")).unwrap();
        assert_eq!(units(&plan), ["web-8003", "web-8002", "web-8001"]);
        let low = [backend("127.0.0.1:80", "up", None)];
        let error = super::plan("api", &low, &template("api@{port-8000}")).unwrap_err();
        assert!(error.contains("negative"), "{error}");
    }

    #[test]
    fn templates_say_what_is_wrong_with_them() {
        for (text, says) in [
            ("api@{i}", "unknown placeholder {i}"),
            ("api@{port+1}", "unknown placeholder {port+1}"),
            ("api@{n", "unclosed"),
            ("api@1", "names one unit for every backend"),
        ] {
            let error = text.parse::<UnitTemplate>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_map_names_units_and_leaves_the_rest_alone() {
        let map = vec![
            parse_map_entry("127.0.0.1:8003=blue@3").unwrap(),
            parse_map_entry(" 127.0.0.1:8001 = blue@1 ").unwrap(),
        ];
        let plan = plan("api", &three(), &UnitRule::Map(map)).unwrap();
        assert_eq!(units(&plan), ["blue@1", "blue@3"], "in the group's order");
        assert_eq!(
            plan.left_alone,
            [("127.0.0.1:8002".parse().unwrap(), "not in --map".to_owned())]
        );
        let stranger = vec![parse_map_entry("127.0.0.1:9999=x@1").unwrap()];
        let error = super::plan("api", &three(), &UnitRule::Map(stranger)).unwrap_err();
        assert!(
            error.contains("not a backend of upstream \"api\""),
            "{error}"
        );
        assert!(parse_map_entry("127.0.0.1:8001").is_err());
        assert!(parse_map_entry("localhost:8001=api@1").is_err());
        assert!(parse_map_entry("127.0.0.1:8001=").is_err());
    }

    #[test]
    fn backends_drained_by_the_configuration_are_left_alone_runtime_drains_are_not() {
        let backends = vec![
            backend("127.0.0.1:8001", "draining", None),
            backend("127.0.0.1:8002", "draining", Some(true)),
            backend("127.0.0.1:8003", "down", None),
        ];
        let plan = plan("api", &backends, &template("api@{n}")).unwrap();
        assert_eq!(units(&plan), ["api@2", "api@3"]);
        assert_eq!(plan.left_alone.len(), 1);
        assert!(plan.left_alone[0].1.contains("drain = true"));
    }

    #[test]
    fn two_backends_never_share_a_unit_and_an_empty_plan_is_refused() {
        let map = vec![
            parse_map_entry("127.0.0.1:8001=api@1").unwrap(),
            parse_map_entry("127.0.0.1:8002=api@1").unwrap(),
        ];
        let error = plan("api", &three(), &UnitRule::Map(map)).unwrap_err();
        assert!(error.contains("would both be unit api@1"), "{error}");
        let drained = [backend("127.0.0.1:8001", "draining", None)];
        let error = plan("api", &drained, &template("api@{n}")).unwrap_err();
        assert!(error.contains("nothing to restart"), "{error}");
    }
}
