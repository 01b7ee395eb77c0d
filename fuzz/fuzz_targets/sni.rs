//! The TLS ClientHello reader of tcp listeners: `lbproxy::fuzzing::sni::parse`.
//!
//! Input: the first bytes a client sends.
//!
//! Beyond "never panics", it asserts that the verdict settles as bytes arrive, since the proxy
//! asks again after each read: every prefix of the input is `Incomplete` or already the verdict
//! on the whole (a valid ClientHello is never refused early, a name never changes); bytes after
//! a complete ClientHello change nothing; a server name is non-empty, printable and lowercase.

#![no_main]

use lbproxy::fuzzing::sni::{parse, Hello};
use libfuzzer_sys::fuzz_target;

/// Prefixes checked, evenly spaced (every prefix of short inputs).
const CUTS: usize = 64;

fuzz_target!(|input: &[u8]| {
    let whole = parse(input);
    let step = (input.len() / CUTS).max(1);
    for cut in (0..input.len())
        .step_by(step)
        .chain(input.len().checked_sub(1))
    {
        let prefix = parse(&input[..cut]);
        assert!(
            prefix == Hello::Incomplete || prefix == whole,
            "the first {cut} bytes give {prefix:?}, all {} give {whole:?}",
            input.len()
        );
    }
    if let Hello::Complete(name) = &whole {
        if let Some(name) = name {
            assert!(!name.is_empty());
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
        }
        let mut longer = input.to_vec();
        longer.extend_from_slice(b"\x16\x03\x01\x00\x05GET / HTTP/1.1\r\n");
        assert_eq!(parse(&longer), whole);
    }
});
