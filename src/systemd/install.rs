//! `lbproxy systemd install --user`: puts the user units and a configuration where the user's
//! systemd finds them, pointing at the binaries that are actually installed.
//!
//! Flow: find the binaries (the directory of the running `lbproxy`, or `--bin-dir`); write
//! `systemd/user/*` (embedded in the binary) into
//! `$XDG_CONFIG_HOME/systemd/user` (`~/.config/systemd/user`), with `%h/.cargo/bin` — where the
//! shipped files expect `cargo install` to have put the binaries — replaced by that directory;
//! write the default configuration to `$XDG_CONFIG_HOME/lbproxy/lbproxy.toml` unless a file is
//! there already (it is the user's; units are ours and are replaced); then ask the user manager
//! to `daemon-reload`, if one runs. The demo API's units (`api@.service`, `api@.socket`,
//! `api.target`) are written only when `lbproxy-demo-api` is there too: the packages ship it apart
//! (`lbproxy-demo`), and a proxy in front of the user's own API needs only its own units.
//!
//! Everything goes under `$XDG_CONFIG_HOME` or `$HOME`, so a test with a private `HOME` touches
//! nothing real.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The user units, as shipped in `systemd/user/`.
pub const USER_UNITS: [(&str, &str); 5] = [
    (
        "api@.service",
        include_str!("../../systemd/user/api@.service"),
    ),
    (
        "api@.socket",
        include_str!("../../systemd/user/api@.socket"),
    ),
    ("api.target", include_str!("../../systemd/user/api.target")),
    (
        "lbproxy.service",
        include_str!("../../systemd/user/lbproxy.service"),
    ),
    (
        "lbproxy.socket",
        include_str!("../../systemd/user/lbproxy.socket"),
    ),
];

/// Where the shipped user units expect the binaries (`cargo install`'s default).
pub const SHIPPED_BIN_DIR: &str = "%h/.cargo/bin";

/// The binary the proxy's units run, and the demo API's (whose units are [`DEMO_UNITS`]).
const PROXY_BINARY: &str = "lbproxy";
const DEMO_BINARY: &str = "lbproxy-demo-api";
/// The units that run [`DEMO_BINARY`].
const DEMO_UNITS: [&str; 3] = ["api@.service", "api@.socket", "api.target"];

/// What [`install_user`] did, for the message to the user.
#[derive(Debug)]
pub struct Installed {
    pub unit_dir: PathBuf,
    pub units: Vec<PathBuf>,
    pub config: PathBuf,
    /// False when a configuration file was already there (and kept).
    pub config_written: bool,
    pub bin_dir: PathBuf,
    /// Whether the demo API's units were written (its binary was found).
    pub demo: bool,
}

/// Where the user manager reads units and lbproxy its configuration, from the environment.
#[derive(Debug, Clone)]
pub struct UserDirs {
    /// `$XDG_CONFIG_HOME`, or `$HOME/.config`.
    pub config_home: PathBuf,
}

impl UserDirs {
    pub fn from_env() -> anyhow::Result<Self> {
        let config_home = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
            _ => {
                let home = std::env::var_os("HOME")
                    .filter(|h| Path::new(h).is_absolute())
                    .context("neither XDG_CONFIG_HOME nor HOME is set to an absolute path")?;
                Path::new(&home).join(".config")
            }
        };
        Ok(Self { config_home })
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.config_home.join("systemd/user")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_home.join("lbproxy/lbproxy.toml")
    }
}

/// The directory of the running executable, resolved (so the units keep working if a symlink
/// to it moves).
pub fn own_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running lbproxy executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent()
        .map(Path::to_path_buf)
        .context("the lbproxy executable has no parent directory")
}

/// Writes the user units and (if absent) the configuration.
pub fn install_user(dirs: &UserDirs, bin_dir: &Path) -> anyhow::Result<Installed> {
    let proxy = bin_dir.join(PROXY_BINARY);
    anyhow::ensure!(
        proxy.is_file(),
        "{} is missing; the units run it from there. Install it first (from a clone, `cargo \
         install --locked --path .` puts lbproxy in ~/.cargo/bin and `cargo install --locked \
         --path demo-api` lbproxy-demo-api), or pass --bin-dir",
        proxy.display()
    );
    let demo = bin_dir.join(DEMO_BINARY).is_file();
    let bin_dir_text = bin_dir
        .to_str()
        .filter(|p| !p.contains(char::is_whitespace) && !p.contains('%'))
        .with_context(|| {
            format!(
                "{} cannot be written into a unit's ExecStart= (spaces, '%' or not UTF-8); \
                 install the binaries elsewhere or pass --bin-dir",
                bin_dir.display()
            )
        })?;

    let unit_dir = dirs.unit_dir();
    std::fs::create_dir_all(&unit_dir)
        .with_context(|| format!("creating {}", unit_dir.display()))?;
    let mut units = Vec::new();
    for (name, text) in USER_UNITS {
        if !demo && DEMO_UNITS.contains(&name) {
            continue;
        }
        let path = unit_dir.join(name);
        std::fs::write(&path, text.replace(SHIPPED_BIN_DIR, bin_dir_text))
            .with_context(|| format!("writing {}", path.display()))?;
        units.push(path);
    }

    let config = dirs.config_file();
    let config_written = !config.exists();
    if config_written {
        if let Some(parent) = config.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&config, crate::config::EMBEDDED_DEFAULT)
            .with_context(|| format!("writing {}", config.display()))?;
    }
    Ok(Installed {
        unit_dir,
        units,
        config,
        config_written,
        bin_dir: bin_dir.to_path_buf(),
        demo,
    })
}

/// `systemctl --user daemon-reload`, so a running user manager sees the new units. Returns why
/// not when it could not (no user manager: the units load when it starts).
pub fn reload_user_manager() -> Result<(), String> {
    match std::process::Command::new("systemctl")
        .args(["--user", "daemon-reload"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(format!("cannot run systemctl: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for binary in [PROXY_BINARY, DEMO_BINARY] {
            std::fs::write(dir.path().join(binary), "").unwrap();
        }
        dir
    }

    #[test]
    fn units_point_at_the_binaries_and_an_existing_config_is_kept() {
        let bins = fake_bin_dir();
        let home = tempfile::tempdir().unwrap();
        let dirs = UserDirs {
            config_home: home.path().join(".config"),
        };
        let installed = install_user(&dirs, bins.path()).unwrap();
        assert!(installed.config_written);
        assert_eq!(installed.units.len(), USER_UNITS.len());
        let service = std::fs::read_to_string(dirs.unit_dir().join("lbproxy.service")).unwrap();
        let exec_start = service
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap();
        assert_eq!(
            exec_start,
            format!(
                "ExecStart={}/lbproxy serve -c %E/lbproxy/lbproxy.toml",
                bins.path().display()
            )
        );
        assert!(!service.contains(SHIPPED_BIN_DIR), "{service}");

        std::fs::write(dirs.config_file(), "# mine\n").unwrap();
        let again = install_user(&dirs, bins.path()).unwrap();
        assert!(!again.config_written);
        assert_eq!(
            std::fs::read_to_string(dirs.config_file()).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn without_the_demo_api_only_the_proxys_units_are_written() {
        let bins = tempfile::tempdir().unwrap();
        std::fs::write(bins.path().join("lbproxy"), "").unwrap();
        let home = tempfile::tempdir().unwrap();
        let dirs = UserDirs {
            config_home: home.path().to_path_buf(),
        };
        let installed = install_user(&dirs, bins.path()).unwrap();
        assert!(!installed.demo);
        let names: Vec<_> = installed
            .units
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lbproxy.service", "lbproxy.socket"]);
        assert!(!dirs.unit_dir().join("api@.service").exists());
    }

    #[test]
    fn a_missing_proxy_binary_is_named_with_the_fix() {
        let bins = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let dirs = UserDirs {
            config_home: home.path().to_path_buf(),
        };
        let err = install_user(&dirs, bins.path()).unwrap_err().to_string();
        assert!(err.contains("lbproxy is missing"), "{err}");
        assert!(err.contains("cargo install --locked --path ."), "{err}");
    }

    #[test]
    fn the_installed_instance_unit_keeps_its_version_file_and_arguments() {
        let bins = fake_bin_dir();
        let home = tempfile::tempdir().unwrap();
        let dirs = UserDirs {
            config_home: home.path().to_path_buf(),
        };
        install_user(&dirs, bins.path()).unwrap();
        let api = std::fs::read_to_string(dirs.unit_dir().join("api@.service")).unwrap();
        let settings: Vec<&str> = api.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            settings.contains(&"EnvironmentFile=-%S/lbproxy/versions/%n.env"),
            "{api}"
        );
        let exec_start = format!(
            "ExecStart={}/lbproxy-demo-api --instance %i $DEMO_API_ARGS",
            bins.path().display()
        );
        assert!(settings.contains(&exec_start.as_str()), "{api}");
    }

    #[test]
    fn every_shipped_user_unit_runs_binaries_from_the_cargo_bin_dir() {
        for (name, text) in USER_UNITS {
            for line in text.lines().filter(|l| l.starts_with("Exec")) {
                assert!(
                    line.contains(&format!("={SHIPPED_BIN_DIR}/")),
                    "{name}: {line}"
                );
            }
        }
    }
}
