//! The shipped unit files, checked by systemd's own tools without a running manager:
//! `systemd-analyze verify` prints nothing for any of them, and `systemd-analyze security` rates
//! the system services 2.0 or better.
//!
//! `verify` also checks that each `Exec*=` binary exists, so the units are checked as installed:
//! the system units with `/usr/bin/` pointing at this build, the user units as written by
//! `lbproxy systemd install --user` into a private HOME.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const SYSTEM_UNITS: [&str; 4] = [
    "api@.service",
    "api.target",
    "lbproxy.service",
    "lbproxy.socket",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where lbproxy and lbproxy-demo-api of this build are (`verify` checks api@.service's binary).
fn bin_dir() -> String {
    common::demo::demo_api_binary()
        .parent()
        .unwrap()
        .display()
        .to_string()
}

fn run(command: &mut Command) -> Output {
    command
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (tests/run.sh installs systemd)"))
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn system_units_verify_clean() {
    let dir = tempfile::tempdir().unwrap();
    for unit in SYSTEM_UNITS {
        let text = std::fs::read_to_string(repo().join("systemd/system").join(unit)).unwrap();
        let installed = text.replace("/usr/bin/", &format!("{}/", bin_dir()));
        std::fs::write(dir.path().join(unit), installed).unwrap();
    }
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(SYSTEM_UNITS)
        .current_dir(dir.path()));
    assert!(
        out.status.success() && all_output(&out).is_empty(),
        "systemd-analyze verify on the system units:\n{}",
        all_output(&out)
    );
}

/// `lbproxy systemd install --user` into a fresh HOME (with the demo's units: it writes
/// api@.service only when lbproxy-demo-api is next to it): the HOME, its XDG_RUNTIME_DIR and
/// its user unit directory.
fn install_user_units() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    common::demo::demo_api_binary();
    let install = run(Command::new(env!("CARGO_BIN_EXE_lbproxy"))
        .args(["systemd", "install", "--user"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("XDG_RUNTIME_DIR", &runtime));
    assert!(install.status.success(), "{}", all_output(&install));
    let unit_dir = home.path().join(".config/systemd/user");
    (home, runtime, unit_dir)
}

#[test]
fn user_units_as_installed_verify_clean() {
    let (home, runtime, unit_dir) = install_user_units();
    assert!(unit_dir.join("lbproxy.service").is_file());

    let out = run(Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .args(SYSTEM_UNITS)
        .arg("api@1.service")
        .current_dir(&unit_dir)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("XDG_RUNTIME_DIR", &runtime));
    assert!(
        out.status.success() && all_output(&out).is_empty(),
        "systemd-analyze --user verify on the installed user units:\n{}",
        all_output(&out)
    );
}

/// "→ Overall exposure level for lbproxy.service: 1.2 OK 🙂" → 1.2
fn exposure(unit: &str) -> (f64, String) {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo().join("systemd/system").join(unit)));
    let text = all_output(&out);
    let level = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|score| score.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    (level, text)
}

#[test]
fn system_services_are_rated_2_or_better_by_systemd_analyze_security() {
    for unit in ["lbproxy.service", "api@.service"] {
        let (level, text) = exposure(unit);
        assert!(level <= 2.0, "{unit}: exposure {level} > 2.0\n{text}");
    }
}

#[test]
fn the_proxy_units_keep_what_the_proxy_needs() {
    for dir in ["systemd/system", "systemd/user"] {
        let unit = std::fs::read_to_string(repo().join(dir).join("lbproxy.service")).unwrap();
        for needed in [
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "LimitNOFILE=",
            "RuntimeDirectory=lbproxy",
            "StateDirectory=lbproxy",
            "SystemCallFilter=io_uring_setup io_uring_enter io_uring_register",
            "ExecReload=",
        ] {
            assert!(
                unit.contains(needed),
                "{dir}/lbproxy.service lacks {needed}"
            );
        }
        // Pinning needs sched_setaffinity (@resources).
        assert!(
            !unit
                .lines()
                .any(|l| l.starts_with("SystemCallFilter=") && l.contains("@resources")),
            "{dir}/lbproxy.service"
        );
        // The reload checks the file before it signals.
        let reloads: Vec<&str> = unit
            .lines()
            .filter(|l| l.starts_with("ExecReload="))
            .collect();
        assert_eq!(reloads.len(), 2, "{reloads:?}");
        assert!(reloads[0].contains("lbproxy check -c"), "{reloads:?}");
        assert!(
            reloads[1].contains("lbproxy reload --pid $MAINPID"),
            "{reloads:?}"
        );
    }
}

#[test]
fn the_socket_unit_is_the_same_for_both_managers() {
    let read =
        |dir: &str| std::fs::read_to_string(repo().join(dir).join("lbproxy.socket")).unwrap();
    assert_eq!(read("systemd/system"), read("systemd/user"));
    assert!(read("systemd/user").contains("FileDescriptorName=http"));
}

/// `api@N` runs `lbproxy-demo-api --instance N`, which listens on port 8000+N (the demo's
/// `default_port_is_8000_plus_instance`). systemd pastes specifiers into text and cannot add, so
/// a description that glues `%i` to digits is wrong from some instance on ("800%i" reads 80010
/// for api@10): the units state the rule instead, which is right for every instance, and the
/// own-API drop-in computes the same port in its shell.
#[test]
fn the_api_units_state_the_port_rule_their_command_follows() {
    for dir in ["systemd/system", "systemd/user"] {
        let unit = std::fs::read_to_string(repo().join(dir).join("api@.service")).unwrap();
        let value = |key: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{dir}/api@.service has no {key}"))
        };
        assert!(
            value("Description=").contains("port 8000+%i"),
            "{dir}/api@.service: {}",
            value("Description=")
        );
        assert!(
            value("ExecStart=").ends_with("/lbproxy-demo-api --instance %i $DEMO_API_ARGS"),
            "{dir}/api@.service: {}",
            value("ExecStart=")
        );
        for line in unit.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                !line
                    .match_indices("%i")
                    .any(|(at, _)| line[..at].ends_with(|c: char| c.is_ascii_digit())),
                "{dir}/api@.service: a digit glued to %i computes nothing: {line}"
            );
        }
    }
    let own = std::fs::read_to_string(repo().join("systemd/examples/own-api.conf")).unwrap();
    assert!(own.contains("$$((8000 + %i))"), "{own}");
}

/// Each instance runs the version its file names (`lbproxy deploy` writes
/// `%S/lbproxy/versions/%n.env`, src/deploy/version.rs): the file is optional (`-`), the demo's
/// arguments from it reach the command, and a unit without a file has the variable set empty
/// (no "unset variable" notice). The proxy's unit gets the same directory as its
/// `$STATE_DIRECTORY` (tests/systemd.rs runs it).
#[test]
fn the_api_units_read_the_version_file_the_proxy_writes() {
    for dir in ["systemd/system", "systemd/user"] {
        let unit = std::fs::read_to_string(repo().join(dir).join("api@.service")).unwrap();
        let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
        let at = |line: &str| {
            settings
                .iter()
                .position(|l| *l == line)
                .unwrap_or_else(|| panic!("{dir}/api@.service lacks {line}"))
        };
        let default = at("Environment=DEMO_API_ARGS=");
        let file = at("EnvironmentFile=-%S/lbproxy/versions/%n.env");
        assert!(
            default < file,
            "{dir}/api@.service: the file must override the default"
        );
        assert!(
            settings
                .iter()
                .any(|l| l.starts_with("ExecStart=") && l.ends_with(" $DEMO_API_ARGS")),
            "{dir}/api@.service"
        );
        let proxy = std::fs::read_to_string(repo().join(dir).join("lbproxy.service")).unwrap();
        assert!(
            proxy.lines().any(|l| l == "StateDirectory=lbproxy"),
            "{dir}/lbproxy.service"
        );
    }
}

/// `api@.socket` has no `ListenStream=` (systemd cannot compute 8000+N): an instance with its
/// port in a drop-in, as systemd/README.md shows, verifies clean with its service; one without is
/// refused for lack of a Listen setting, not bound to a wrong port.
#[test]
fn the_api_socket_template_takes_its_port_from_a_drop_in() {
    let (home, runtime, unit_dir) = install_user_units();
    assert!(unit_dir.join("api@.socket").is_file());
    let drop_in = unit_dir.join("api@1.socket.d");
    std::fs::create_dir(&drop_in).unwrap();
    std::fs::write(
        drop_in.join("listen.conf"),
        "[Socket]\nListenStream=127.0.0.1:8001\n",
    )
    .unwrap();
    let verify = |units: &[&str]| {
        run(Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .args(units)
            .current_dir(&unit_dir)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("XDG_RUNTIME_DIR", &runtime))
    };
    let out = verify(&["api@1.socket", "api@1.service"]);
    assert!(
        out.status.success() && all_output(&out).is_empty(),
        "api@1.socket with its drop-in:\n{}",
        all_output(&out)
    );
    let out = verify(&["api@2.socket"]);
    assert!(
        !out.status.success() && all_output(&out).contains("has no Listen setting"),
        "api@2.socket without a drop-in:\n{}",
        all_output(&out)
    );
}

/// The backup timer and service of systemd/examples, system and user, as a person would install
/// them (the binary's path pointing at this build).
#[test]
fn the_backup_examples_verify_clean() {
    for (manager, dir) in [("--system", "system"), ("--user", "user")] {
        let installed = tempfile::tempdir().unwrap();
        for unit in ["lbproxy-backup.service", "lbproxy-backup.timer"] {
            let text =
                std::fs::read_to_string(repo().join("systemd/examples").join(dir).join(unit))
                    .unwrap();
            let text = text
                .replace("/usr/bin/lbproxy", &format!("{}/lbproxy", bin_dir()))
                .replace("%h/.cargo/bin/", &format!("{}/", bin_dir()));
            std::fs::write(installed.path().join(unit), text).unwrap();
        }
        let runtime = installed.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        let out = run(Command::new("systemd-analyze")
            .args([
                manager,
                "verify",
                "lbproxy-backup.service",
                "lbproxy-backup.timer",
            ])
            .current_dir(installed.path())
            .env("HOME", installed.path())
            .env("XDG_RUNTIME_DIR", &runtime));
        assert!(
            out.status.success() && all_output(&out).is_empty(),
            "systemd-analyze {manager} verify on the {dir} backup units:\n{}",
            all_output(&out)
        );
    }
}
