//! The default https settings checked from outside by sslyze against Mozilla's "intermediate"
//! TLS profile (protocol versions, cipher suites, key exchange groups, certificate type and
//! lifetime, and the known attacks sslyze probes for). sslyze comes from PyPI; tests/run.sh
//! installs it, and this test fails, naming that step, where it is missing.

mod common;

use common::backend::{RawBackend, Reply};
use common::tls::{https_config, Pki};
use common::{on_both_drivers, Proxy};
use std::process::Command;

on_both_drivers!(the_default_https_listener_meets_mozilla_intermediate);

fn the_default_https_listener_meets_mozilla_intermediate(driver: &str) {
    let installed = Command::new("python3")
        .args(["-m", "sslyze", "--help"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        installed,
        "sslyze is missing: install it as tests/run.sh does (python3 -m pip install sslyze==6.3.1)"
    );

    let pki = Pki::new();
    let leaf = pki.leaf("proxy", &["proxy.test"]);
    let backend = RawBackend::start(Reply::Fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    let proxy = Proxy::start(&https_config(driver, &[&leaf], &[backend.addr], ""));
    // `NAME:PORT{IP}`: connect to the IP, ask for NAME (SNI and certificate name).
    let target = format!("proxy.test:{}{{127.0.0.1}}", proxy.addr.port());
    let out = Command::new("python3")
        .args([
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
        ])
        .arg(pki.ca_path())
        .arg(&target)
        .output()
        .expect("run sslyze");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = format!("{target}: OK - Compliant.").replace("{127.0.0.1}", "");
    assert!(
        out.status.success() && stdout.contains(&verdict),
        "sslyze: not compliant with Mozilla intermediate (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}
