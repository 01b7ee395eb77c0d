//! HTTP conformance tests ported from HAProxy's reg-tests (`tests/vtc/*.vtc`, each naming the
//! HAProxy file it came from), run against the real `lbproxy` binary with varnishtest, on both io
//! drivers. Each .vtc starts its own servers and its own `lbproxy serve` (see the files); this
//! only runs varnishtest on it and shows the log when it fails. Where lbproxy and HAProxy expect
//! different things, docs/http.md says which and why.
//!
//! varnishtest comes with Debian's `varnish` package: tests/run.sh installs it, and so does
//! tests/vtc/run.sh, which runs the same files by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One test per .vtc file and driver: `io_uring::NAME` and `legacy::NAME` run `tests/vtc/NAME.vtc`.
macro_rules! vtc_files {
    ($($name:ident),* $(,)?) => {
        const FILES: &[&str] = &[$(stringify!($name)),*];
        mod io_uring { $( #[test] fn $name() { super::run(stringify!($name), "io_uring") } )* }
        mod legacy { $( #[test] fn $name() { super::run(stringify!($name), "legacy") } )* }
    };
}

vtc_files!(
    h1_to_h1,
    h1_request_target_validation,
    http_1xx_responses,
    http_abortonclose,
    http_bodyless_response,
    http_request_buffer,
    http_transfer_encoding,
    httpclose,
    truncated_response,
);

fn vtc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vtc")
}

fn run(name: &str, driver: &str) {
    let file = vtc_dir().join(format!("{name}.vtc"));
    // The `lbproxy serve` each file starts records its configuration in a state directory:
    // this test's own, never the real ~/.local/state.
    let state_home = tempfile::tempdir().unwrap();
    let output = Command::new("varnishtest")
        .env("XDG_STATE_HOME", state_home.path())
        .env_remove("STATE_DIRECTORY")
        // -v: the whole log, shown only when the test fails; -t: varnishtest's own time limit.
        .args(["-v", "-t", "60"])
        .arg("-D")
        .arg(format!("lbproxy={}", env!("CARGO_BIN_EXE_lbproxy")))
        .arg("-D")
        .arg(format!("lbproxy_driver={driver}"))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run varnishtest ({e}): tests/run.sh installs it \
                 (apt-get install varnish), as does tests/vtc/run.sh"
            )
        });
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout);
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("----")).collect();
        panic!(
            "{} failed on the {driver} driver ({}):\n{}\n\nthe whole log:\n{log}{}",
            file.display(),
            output.status,
            errors.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every .vtc file in tests/vtc is in the list above, so none is silently left out.
#[test]
fn every_vtc_file_is_run() {
    let mut on_disk: Vec<String> = std::fs::read_dir(vtc_dir())
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".vtc").map(str::to_owned)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(std::string::ToString::to_string).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/conformance.rs must list every tests/vtc/*.vtc"
    );
}
