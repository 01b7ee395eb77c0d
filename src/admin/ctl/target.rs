//! Which admin server `lbproxy ctl` and `lbproxy rollout` talk to, and with which token: the
//! flags they share ([`AdminTargetArgs`]) and how they resolve.
//!
//! The address: `--admin`, else the `[admin] address` of `--config FILE` (with `--env NAME`),
//! else `$LBPROXY_ADMIN`, else `127.0.0.1:9901`. The token: `--token-file`, else the config's
//! `[admin] token` / `token_file`, else `$LBPROXY_ADMIN_TOKEN` (the token itself), else the file
//! named by `$LBPROXY_ADMIN_TOKEN_FILE`. Reading the proxy's own configuration means that
//! `lbproxy ctl -c FILE status` reaches any proxy started with `-c FILE`, whatever its admin
//! address; [`command_for`] is the command `lbproxy up` prints.

use crate::config::{self, Config};
use anyhow::Context;
use clap::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The admin address when nothing says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The flags that name a proxy's admin server, shared by `lbproxy ctl` and `lbproxy rollout`.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminTargetArgs {
    /// The admin server, HOST:PORT. Default: the --config file's `[admin]` address, else
    /// $LBPROXY_ADMIN, else 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// The proxy's configuration file (its `-c FILE`): the admin address and token are read from
    /// its `[admin]` section.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --config: the environment overlay the proxy runs with (its `--env NAME`).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub env: Option<String>,
    /// A file holding the admin token. Default: the --config file's token, else
    /// $LBPROXY_ADMIN_TOKEN (the token itself), else the file named by $LBPROXY_ADMIN_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Where the flags lead: the admin address and the token to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTarget {
    pub address: String,
    pub token: Option<String>,
}

impl AdminTargetArgs {
    /// The address and token, in the order the module doc gives.
    pub fn resolve(&self) -> anyhow::Result<AdminTarget> {
        let from_config = self
            .config
            .as_deref()
            .map(|path| from_config(path, self.env.as_deref()))
            .transpose()?;
        let address = match (&self.admin, &from_config) {
            (Some(address), _) => address.clone(),
            (None, Some(config)) => config
                .address
                .clone()
                .map_err(anyhow::Error::msg)?
                .to_string(),
            (None, None) => admin_address(None),
        };
        let token = match from_config.and_then(|c| c.token) {
            Some(token) if self.token_file.is_none() => Some(token),
            _ => admin_token(self.token_file.as_deref())?,
        };
        Ok(AdminTarget { address, token })
    }

    /// These flags as they would be typed again, for a command printed in a message (`-c FILE`
    /// and `--env` when given, else `--admin` when the address is not the default, and
    /// `--token-file`).
    pub fn echo(&self, address: &str) -> String {
        let mut flags = String::new();
        if let Some(file) = &self.config {
            flags.push_str(&format!(" -c {}", shell_word(&file.display().to_string())));
            if let Some(env) = &self.env {
                flags.push_str(&format!(" --env {}", shell_word(env)));
            }
        }
        if self.admin.is_some() || (self.config.is_none() && address != DEFAULT_ADMIN) {
            flags.push_str(&format!(" --admin {address}"));
        }
        if let Some(file) = &self.token_file {
            flags.push_str(&format!(
                " --token-file {}",
                shell_word(&file.display().to_string())
            ));
        }
        flags
    }
}

/// The admin address: `flag` (`--admin`), else `$LBPROXY_ADMIN`, else [`DEFAULT_ADMIN`].
pub fn admin_address(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| {
            std::env::var("LBPROXY_ADMIN")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ADMIN.to_owned())
}

/// The admin token: read from `token_file` (`--token-file`), else `$LBPROXY_ADMIN_TOKEN`, else
/// read from `$LBPROXY_ADMIN_TOKEN_FILE`; `None` without any.
pub fn admin_token(token_file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let from_file = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("reading the admin token from {}", path.display()))
    };
    if let Some(path) = token_file {
        return from_file(path).map(Some);
    }
    if let Some(token) = std::env::var("LBPROXY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    match std::env::var_os("LBPROXY_ADMIN_TOKEN_FILE").filter(|f| !f.is_empty()) {
        Some(path) => from_file(Path::new(&path)).map(Some),
        None => Ok(None),
    }
}

/// What a proxy's configuration says about reaching its admin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTarget {
    /// Where to connect: the configured address, with an unspecified IP (`0.0.0.0`, `::`)
    /// replaced by loopback. `Err` says why the file cannot tell (no admin server, port 0).
    pub address: Result<SocketAddr, String>,
    pub token: Option<String>,
}

/// Loads `path` (with the `env` overlay) as `lbproxy serve -c` would and reads its `[admin]`.
pub fn from_config(path: &Path, env: Option<&str>) -> anyhow::Result<ConfigTarget> {
    let config = config::load(Some(path), env).map_err(|errors| {
        anyhow::anyhow!(
            "cannot read the admin address from {}:\n{errors}",
            path.display()
        )
    })?;
    Ok(target_of(&config, path))
}

fn target_of(config: &Config, path: &Path) -> ConfigTarget {
    let admin = &config.admin;
    let address = if !admin.enabled {
        Err(format!(
            "{} turns the admin server off ([admin] enabled = false)",
            path.display()
        ))
    } else if admin.address.port() == 0 {
        Err(format!(
            "{} lets the admin server take any free port ([admin] address = \"{}\"): pass \
             --admin with the address the proxy logged (`admin=…`)",
            path.display(),
            admin.address
        ))
    } else {
        Ok(reachable(admin.address))
    };
    ConfigTarget {
        address,
        token: admin.token.as_ref().map(|t| t.as_str().to_owned()),
    }
}

/// An address to connect to for one a server listens on: `0.0.0.0`/`::` mean every local
/// address, of which loopback is one.
fn reachable(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// The `lbproxy ctl` command line (without its subcommand) that reaches a proxy started from
/// `path` (`None`: the embedded default) with the `env` overlay, whose admin server is
/// configured at `configured` and listens on `bound`: plain `lbproxy ctl` when the defaults
/// find it, else `-c FILE` (which also brings the token), plus `--admin` where the file cannot
/// tell the address (port 0).
pub fn command_for(
    path: Option<&Path>,
    env: Option<&str>,
    configured: SocketAddr,
    bound: SocketAddr,
    has_token: bool,
) -> String {
    let mut command = String::from("lbproxy ctl");
    let default = DEFAULT_ADMIN.parse::<SocketAddr>().ok();
    if Some(bound) == default && !has_token {
        return command;
    }
    if let Some(path) = path {
        command.push_str(&format!(" -c {}", shell_word(&path.display().to_string())));
        if let Some(env) = env {
            command.push_str(&format!(" --env {}", shell_word(env)));
        }
    }
    if path.is_none() || configured.port() == 0 {
        command.push_str(&format!(" --admin {bound}"));
    }
    command
}

/// `word`, single-quoted for a POSIX shell when it holds anything but plain characters.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_config_gives_the_address_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        let write = |admin: &str| {
            std::fs::write(
                &path,
                format!(
                    "[admin]\n{admin}\n[listener.http]\naddress = \"127.0.0.1:8080\"\n\
                     upstream = \"api\"\n[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n"
                ),
            )
            .unwrap();
        };
        write("address = \"0.0.0.0:9911\"\ntoken = \"0123456789abcdef-token\"");
        let target = from_config(&path, None).unwrap();
        assert_eq!(target.address, Ok(addr("127.0.0.1:9911")));
        assert_eq!(target.token.as_deref(), Some("0123456789abcdef-token"));

        write("address = \"127.0.0.1:0\"");
        let any = from_config(&path, None).unwrap().address.unwrap_err();
        assert!(any.contains("pass --admin"), "{any}");
        write("enabled = false");
        let off = from_config(&path, None).unwrap().address.unwrap_err();
        assert!(off.contains("enabled = false"), "{off}");
        write("adress = \"127.0.0.1:1\"");
        let invalid = from_config(&path, None).unwrap_err().to_string();
        assert!(
            invalid.contains("cannot read the admin address from"),
            "{invalid}"
        );
    }

    #[test]
    fn the_flags_resolve_in_order_and_echo_as_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        std::fs::write(
            &path,
            "[admin]\naddress = \"127.0.0.1:9911\"\ntoken = \"0123456789abcdef-token\"\n\
             [listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [upstream.api]\nbackends = [\"127.0.0.1:8001\"]\n",
        )
        .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "fedcba9876543210-token\n").unwrap();
        let from_file = AdminTargetArgs {
            config: Some(path.clone()),
            ..AdminTargetArgs::default()
        };
        assert_eq!(
            from_file.resolve().unwrap(),
            AdminTarget {
                address: "127.0.0.1:9911".into(),
                token: Some("0123456789abcdef-token".into())
            }
        );
        assert_eq!(
            from_file.echo("127.0.0.1:9911"),
            format!(" -c {}", path.display())
        );
        let overridden = AdminTargetArgs {
            admin: Some("127.0.0.1:9922".into()),
            token_file: Some(token_file.clone()),
            ..from_file
        };
        assert_eq!(
            overridden.resolve().unwrap(),
            AdminTarget {
                address: "127.0.0.1:9922".into(),
                token: Some("fedcba9876543210-token".into())
            },
            "--admin and --token-file win over the file"
        );
        assert_eq!(
            overridden.echo("127.0.0.1:9922"),
            format!(
                " -c {} --admin 127.0.0.1:9922 --token-file {}",
                path.display(),
                token_file.display()
            )
        );
        assert_eq!(AdminTargetArgs::default().echo(DEFAULT_ADMIN), "");
        assert_eq!(
            AdminTargetArgs::default().echo("127.0.0.1:9933"),
            " --admin 127.0.0.1:9933",
            "an address from $LBPROXY_ADMIN is spelled out"
        );
    }

    #[test]
    fn ctl_and_rollout_take_the_same_flags() {
        use clap::Parser;
        for command in ["ctl", "rollout"] {
            let mut words = vec![
                "lbproxy",
                command,
                "-c",
                "/etc/lbproxy/lb.toml",
                "--env",
                "prod",
            ];
            words.extend(if command == "ctl" {
                vec!["status"]
            } else {
                vec!["--dry-run"]
            });
            let parsed = crate::cli::Cli::try_parse_from(&words);
            assert!(parsed.is_ok(), "{command}: {}", parsed.unwrap_err());
        }
    }

    #[test]
    fn the_printed_command_reaches_the_proxy() {
        let default = addr(DEFAULT_ADMIN);
        let other = addr("127.0.0.1:9911");
        let file = Path::new("/etc/lb proxy/lb.toml");
        assert_eq!(
            command_for(None, None, default, default, false),
            "lbproxy ctl"
        );
        assert_eq!(
            command_for(Some(file), None, default, default, false),
            "lbproxy ctl"
        );
        assert_eq!(
            command_for(Some(file), Some("prod"), other, other, false),
            "lbproxy ctl -c '/etc/lb proxy/lb.toml' --env prod"
        );
        assert_eq!(
            command_for(Some(Path::new("up.toml")), None, default, default, true),
            "lbproxy ctl -c up.toml",
            "the token comes from the file"
        );
        assert_eq!(
            command_for(
                Some(Path::new("up.toml")),
                None,
                addr("127.0.0.1:0"),
                other,
                false
            ),
            "lbproxy ctl -c up.toml --admin 127.0.0.1:9911"
        );
        assert_eq!(
            command_for(None, None, other, other, false),
            "lbproxy ctl --admin 127.0.0.1:9911"
        );
    }
}
