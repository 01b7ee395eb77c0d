//! `[upstream.NAME.discover]`: the unit pattern, the bus, where addresses come from, the resync
//! period and the cgroup limits set on the instances.

use super::{secs, Validator};
use crate::config::error::{quote, KeyPath};
use crate::config::file::FileDiscover;
use crate::config::{AddressSource, AddressTemplate, DiscoverConfig, SystemdBus, UnitResources};
use std::net::IpAddr;

const BUSES: [(&str, SystemdBus); 2] = [("user", SystemdBus::User), ("system", SystemdBus::System)];

const ADDRESS_FIX: &str = "write \"IP:{OFFSET+N}\" (instance N of api@N.service listens on port \
                           OFFSET+N, e.g. \"127.0.0.1:{8000+N}\"), \"IP:{N}\", or \"socket\" (the \
                           ListenStream= of the instance's socket unit, api@N.socket)";

/// The largest `TasksMax=` systemd takes (the kernel's pid_max limit).
const TASKS_MAX: i64 = 4_194_304;

impl Validator<'_> {
    pub(super) fn discover(
        &mut self,
        raw: &FileDiscover,
        path: &KeyPath,
    ) -> Option<DiscoverConfig> {
        let systemd = self.unit_pattern(raw.systemd.as_deref(), &path.key("systemd"));
        let bus = match &raw.bus {
            None => Some(SystemdBus::User),
            Some(text) => self.choice(
                text,
                &path.key("bus"),
                "bus",
                &BUSES,
                " (user: units of `systemctl --user`; system: units of `systemctl`)",
            ),
        };
        let address = match raw.address.as_deref() {
            None => {
                self.push(
                    path.key("address"),
                    "",
                    "no address for the discovered instances",
                    ADDRESS_FIX,
                );
                None
            }
            Some(text) => self.address_source(text, &path.key("address")),
        };
        let resync = self.duration(raw.resync.as_ref(), &path.key("resync"), secs(30), true);
        let cpu_quota = match raw.cpu_quota.as_deref() {
            None => Some(None),
            Some(text) => self.cpu_quota(text, &path.key("cpu_quota")).map(Some),
        };
        let memory_max = match &raw.memory_max {
            None => Some(None),
            Some(size) => self
                .size(Some(size), &path.key("memory_max"), 0)
                .and_then(|bytes| self.positive_bytes(bytes, size, &path.key("memory_max")))
                .map(Some),
        };
        let tasks_max = match &raw.tasks_max {
            None => Some(None),
            Some(raw) => self
                .int(Some(raw), &path.key("tasks_max"), 512, 1, TASKS_MAX)
                .map(|n| Some(n as u64)),
        };
        let systemd = systemd?;
        let address = address?;
        if matches!(address, AddressSource::Template(_)) && !systemd.contains('@') {
            self.push(
                path.key("systemd"),
                quote(&systemd),
                "an address template numbers the instances (N), but the pattern names no \
                 template instances",
                "match instances of a template unit, e.g. \"api@*.service\", or use \
                 address = \"socket\"",
            );
            return None;
        }
        Some(DiscoverConfig {
            systemd,
            bus: bus?,
            address,
            resync: resync?,
            resources: UnitResources {
                cpu_quota_percent: cpu_quota?,
                memory_max: memory_max?,
                tasks_max: tasks_max?,
            },
            children: false,
        })
    }

    fn unit_pattern(&mut self, text: Option<&str>, path: &KeyPath) -> Option<String> {
        let fix = "write a service unit name or pattern, e.g. systemd = \"api@*.service\"";
        let Some(text) = text else {
            self.push(path.clone(), "", "no unit pattern to discover", fix);
            return None;
        };
        let problem = if text.is_empty() {
            Some("empty")
        } else if !text.ends_with(".service") {
            Some("not a service unit (the name must end in .service)")
        } else if text.contains(|c: char| c.is_whitespace() || c == '/' || c.is_control()) {
            Some("a unit name has no spaces or slashes")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.push(path.clone(), quote(text), problem, fix);
                None
            }
            None => Some(text.to_owned()),
        }
    }

    fn address_source(&mut self, text: &str, path: &KeyPath) -> Option<AddressSource> {
        if text == "socket" {
            return Some(AddressSource::Socket);
        }
        match parse_template(text) {
            Ok(template) => Some(AddressSource::Template(template)),
            Err(problem) => {
                self.push(path.clone(), quote(text), problem, ADDRESS_FIX);
                None
            }
        }
    }

    fn cpu_quota(&mut self, text: &str, path: &KeyPath) -> Option<u32> {
        let percent = text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|&n| (1..=100_000).contains(&n));
        if percent.is_none() {
            self.push(
                path.clone(),
                quote(text),
                "not a CPU quota",
                "write a percentage of one CPU as systemd's CPUQuota= takes it: \"50%\" (half a \
                 CPU), \"200%\" (two CPUs)",
            );
        }
        percent
    }

    fn positive_bytes(
        &mut self,
        bytes: u64,
        raw: &crate::config::file::FileSize,
        path: &KeyPath,
    ) -> Option<u64> {
        if bytes > 0 {
            return Some(bytes);
        }
        self.push(
            path.clone(),
            raw.0.as_written(),
            "a memory limit of 0 would stop the instances",
            "write a size such as \"256MiB\", or remove the key for no limit",
        );
        None
    }
}

/// `IP:{OFFSET+N}` or `IP:{N}` (IPv6 in brackets).
fn parse_template(text: &str) -> Result<AddressTemplate, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or("no port: the template is IP:{OFFSET+N}")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("`{host}` is not an IP address"))?;
    let inner = port
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or("the port must be {N} or {OFFSET+N}")?
        .replace(' ', "");
    let port_offset = match inner.as_str() {
        "N" => 0,
        _ => inner
            .strip_suffix("+N")
            .and_then(|offset| offset.parse::<u16>().ok())
            .ok_or("the port must be {N} or {OFFSET+N} with OFFSET a port number")?,
    };
    Ok(AddressTemplate {
        text: text.to_owned(),
        ip,
        port_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{one_error, valid};

    const LISTENER: &str = "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n";

    fn table(table: &str) -> String {
        format!("{LISTENER}[upstream.api.discover]\n{table}")
    }

    #[test]
    fn a_discovered_group_needs_no_backends_and_takes_its_keys() {
        let config = valid(&table(
            "systemd = \"api@*.service\"\nbus = \"system\"\naddress = \"127.0.0.1:{8000+N}\"\n\
             resync = \"10s\"\ncpu_quota = \"50%\"\nmemory_max = \"256MiB\"\ntasks_max = 64\n",
        ));
        let api = &config.upstreams[0];
        assert!(api.backends.is_empty());
        let discover = api.discover.as_ref().unwrap();
        assert_eq!(discover.systemd, "api@*.service");
        assert_eq!(discover.bus, SystemdBus::System);
        let AddressSource::Template(template) = &discover.address else {
            panic!("a template: {:?}", discover.address);
        };
        assert_eq!(
            template.address("3"),
            Some("127.0.0.1:8003".parse().unwrap())
        );
        assert_eq!(template.address("blue"), None, "not a number");
        assert_eq!(template.address("65535"), None, "past the last port");
        assert_eq!(discover.resync, secs(10));
        assert_eq!(
            discover.resources,
            UnitResources {
                cpu_quota_percent: Some(50),
                memory_max: Some(256 << 20),
                tasks_max: Some(64),
            }
        );
        let defaults = valid(&table(
            "systemd = \"api@*.service\"\naddress = \"socket\"\n",
        ));
        let discover = defaults.upstreams[0].discover.as_ref().unwrap();
        assert_eq!(discover.bus, SystemdBus::User);
        assert_eq!(discover.address, AddressSource::Socket);
        assert_eq!(discover.resync, secs(30));
        assert!(discover.resources.is_empty());
    }

    #[test]
    fn templates_take_ipv6_and_a_bare_n() {
        let template = parse_template("[::1]:{N}").unwrap();
        assert_eq!(
            template.address("9001"),
            Some("[::1]:9001".parse().unwrap())
        );
        assert!(parse_template("127.0.0.1:8001").is_err());
        assert!(parse_template("localhost:{8000+N}").is_err());
        assert!(parse_template("127.0.0.1:{N+8000}").is_err());
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let cases = [
            (
                "address = \"socket\"\n",
                "discover.systemd",
                "no unit pattern",
                "api@*.service",
            ),
            (
                "systemd = \"api@*\"\naddress = \"socket\"\n",
                "discover.systemd",
                "not a service unit",
                "api@*.service",
            ),
            (
                "systemd = \"api@*.service\"\n",
                "discover.address",
                "no address",
                "127.0.0.1:{8000+N}",
            ),
            (
                "systemd = \"api@*.service\"\naddress = \"127.0.0.1:8001\"\n",
                "discover.address",
                "{OFFSET+N}",
                "socket",
            ),
            (
                "systemd = \"api.service\"\naddress = \"127.0.0.1:{8000+N}\"\n",
                "discover.systemd",
                "no template instances",
                "address = \"socket\"",
            ),
            (
                "systemd = \"api@*.service\"\naddress = \"socket\"\nbus = \"session\"\n",
                "discover.bus",
                "unknown bus",
                "user",
            ),
            (
                "systemd = \"api@*.service\"\naddress = \"socket\"\ncpu_quota = \"half\"\n",
                "discover.cpu_quota",
                "not a CPU quota",
                "50%",
            ),
            (
                "systemd = \"api@*.service\"\naddress = \"socket\"\nmemory_max = 0\n",
                "discover.memory_max",
                "stop the instances",
                "256MiB",
            ),
            (
                "systemd = \"api@*.service\"\naddress = \"socket\"\ntasks_max = 0\n",
                "discover.tasks_max",
                "between 1",
                "4194304",
            ),
        ];
        for (text, key, problem, fix) in cases {
            let e = one_error(&table(text));
            let text = e.to_string();
            assert!(
                text.contains(&format!("upstream.api.{key}")),
                "{key}: {text}"
            );
            assert!(text.contains(problem), "{key}: {text}");
            assert!(text.contains(fix), "{key}: {text}");
        }
    }

    #[test]
    fn a_group_lists_backends_or_discovers_them_not_both() {
        let e = one_error(&format!(
            "{LISTENER}[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n\
             [upstream.api.discover]\nsystemd = \"api@*.service\"\naddress = \"socket\"\n"
        ));
        let text = e.to_string();
        assert!(text.contains("upstream.api.backends"), "{text}");
        assert!(text.contains("remove `backends`"), "{text}");
        let none = one_error(&format!("{LISTENER}[upstream.api]\nbalance = \"p2c\"\n"));
        assert!(none.to_string().contains("discover"), "{none}");
    }
}
