//! The configuration loader: `lbproxy check`'s path from TOML text to a validated `Config`
//! (parse, `[env.NAME]` overlay, `${VAR}` interpolation, typing, validation, error placement).
//!
//! Input: the text of a configuration file (not UTF-8: skipped, as the loader takes text). It is
//! loaded twice, without and with `--env prod`, with `${PORT}` and `${HOST}` set.
//!
//! Beyond "never panics", it asserts that a refusal is useful: at least one error, each naming
//! the file, a problem and a fix, and each naming a key, except a TOML syntax error, which names
//! its line and column instead (docs/config.md).

#![no_main]

use lbproxy::fuzzing::load_config_text;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

/// Where the text is said to come from: files it names resolve under a directory that does not
/// exist, so nothing real is read.
const PATH: &str = "/nonexistent/lbproxy-fuzz/lbproxy.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An absolute path to a device or a kernel file (`token_file = "/dev/zero"`) would be read
    // as a file: skipped, that is the operator's choice to make, not a parser's bug.
    if ["/dev", "/proc", "/sys"]
        .iter()
        .any(|dir| text.contains(dir))
    {
        return;
    }
    let lookup = |name: &str| match name {
        "PORT" => Some("8001".to_string()),
        "HOST" => Some("127.0.0.1".to_string()),
        _ => None,
    };
    for env in [None, Some("prod")] {
        let Err(errors) = load_config_text(text, PathBuf::from(PATH), env, &lookup) else {
            continue;
        };
        assert!(!errors.0.is_empty(), "refused without a reason");
        for error in &errors.0 {
            assert_eq!(error.file, PATH, "{error:?}");
            assert!(
                !error.problem.trim().is_empty(),
                "no problem named: {error:?}"
            );
            assert!(!error.fix.trim().is_empty(), "no fix named: {error:?}");
            let syntax = error.problem.starts_with("invalid TOML at line ");
            assert!(syntax || !error.key.is_empty(), "no key named: {error:?}");
            // The rendered message must not panic either (it is what `lbproxy check` prints).
            let _ = error.to_string();
        }
        let _ = errors.to_string();
    }
});
