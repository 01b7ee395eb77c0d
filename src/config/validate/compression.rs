//! `[compression]`: algorithms, levels, minimum size and content types, checked.
//!
//! Every value has a default (off, all three codings, 1 KiB, the text types below, moderate
//! levels), so an empty or absent section is valid. Each mistake names its key and value and says
//! what to write instead; an unknown algorithm gets a did-you-mean.

use super::Validator;
use crate::config::error::{did_you_mean, list, quote};
use crate::config::file::FileConfig;
use crate::config::key_path::KeyPath;
use crate::config::{CompressionConfig, Encoding};

/// The media types compressed by default: text and the structured formats sent as text.
pub(crate) const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/problem+json",
    "image/svg+xml",
];

impl Validator<'_> {
    pub(super) fn compression(
        &mut self,
        file: &FileConfig,
        path: &KeyPath,
    ) -> Option<CompressionConfig> {
        let raw = &file.compression;
        let enabled = self.boolean(raw.enabled.as_ref(), &path.key("enabled"), false);
        let algorithms = self.algorithms(raw.algorithms.as_deref(), &path.key("algorithms"));
        let min_size = self.size(raw.min_size.as_ref(), &path.key("min_size"), 1024);
        let content_types =
            self.content_types(raw.content_types.as_deref(), &path.key("content_types"));
        let gzip_level = self.int(raw.gzip_level.as_ref(), &path.key("gzip_level"), 2, 1, 9);
        let brotli_level = self.int(
            raw.brotli_level.as_ref(),
            &path.key("brotli_level"),
            4,
            0,
            11,
        );
        let zstd_level = self.int(raw.zstd_level.as_ref(), &path.key("zstd_level"), 3, 1, 19);
        // In range, checked just above.
        Some(CompressionConfig {
            enabled: enabled?,
            algorithms: algorithms?,
            min_size: min_size?,
            content_types: content_types?,
            gzip_level: gzip_level? as u32,
            brotli_level: brotli_level? as u32,
            zstd_level: zstd_level? as i32,
        })
    }

    /// `algorithms`: known tokens, each once, at least one; the order is kept (the preference).
    fn algorithms(&mut self, raw: Option<&[String]>, path: &KeyPath) -> Option<Vec<Encoding>> {
        let Some(raw) = raw else {
            return Some(Encoding::ALL.to_vec());
        };
        let names = || Encoding::ALL.iter().map(|e| e.token());
        if raw.is_empty() {
            self.push(
                path.clone(),
                "[]",
                "no algorithm listed",
                format!(
                    "list at least one of {}, or set enabled = false to compress nothing",
                    list(names())
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut algorithms = Vec::with_capacity(raw.len());
        for (index, text) in raw.iter().enumerate() {
            let Some(encoding) = Encoding::ALL.into_iter().find(|e| e.token() == text) else {
                self.push(
                    path.index(index),
                    quote(text),
                    format!("unknown algorithm `{text}`"),
                    match text.to_ascii_lowercase().as_str() {
                        "brotli" => "write `br`: brotli's token in Accept-Encoding and \
                                     Content-Encoding"
                            .to_owned(),
                        "zstandard" => "write `zstd`".to_owned(),
                        "deflate" | "x-gzip" => format!(
                            "write `gzip`: the same deflate stream, which every client accepts; \
                             the algorithms are {}",
                            list(names())
                        ),
                        _ => format!(
                            "{}use one of {}",
                            did_you_mean(text, names()),
                            list(names())
                        ),
                    },
                );
                ok = false;
                continue;
            };
            if algorithms.contains(&encoding) {
                self.push(
                    path.index(index),
                    quote(text),
                    format!("`{text}` is listed twice"),
                    "list each algorithm once, the preferred one first",
                );
                ok = false;
                continue;
            }
            algorithms.push(encoding);
        }
        ok.then_some(algorithms)
    }

    /// `content_types`: `type/subtype` or `type/*`, lowercase tokens, without parameters.
    fn content_types(&mut self, raw: Option<&[String]>, path: &KeyPath) -> Option<Vec<String>> {
        let Some(raw) = raw else {
            return Some(
                DEFAULT_CONTENT_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
            );
        };
        let mut ok = true;
        for (index, text) in raw.iter().enumerate() {
            if let Err((problem, fix)) = media_range_problem(text) {
                self.push(path.index(index), quote(text), problem, fix);
                ok = false;
            }
        }
        ok.then(|| raw.to_vec())
    }
}

/// Why `text` is not a media type the proxy can match, and what to write.
fn media_range_problem(text: &str) -> Result<(), (String, String)> {
    let example = "write a media type such as \"application/json\" or \"text/*\"";
    if text.contains(';') {
        let bare = text
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        return Err((
            "parameters are not matched (the proxy compares the media type alone)".to_owned(),
            format!("write \"{bare}\""),
        ));
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err((
            "media types are listed in lowercase (they match any case)".to_owned(),
            format!("write \"{}\"", text.to_ascii_lowercase()),
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            && s != "*"
    };
    match text.split_once('/') {
        Some((kind, "*")) if token(kind) => Ok(()),
        Some((kind, subtype)) if token(kind) && token(subtype) => Ok(()),
        Some(("*", _)) => Err((
            "`*/*` would compress images, video and archives, which are compressed already"
                .to_owned(),
            "list the types to compress, e.g. \"text/*\"".to_owned(),
        )),
        _ => Err((
            "not a media type `type/subtype`".to_owned(),
            example.to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, invalid, one_error, valid, with};
    use crate::config::Encoding;

    #[test]
    fn defaults_compress_nothing_until_enabled() {
        let c = valid(&with("")).compression;
        assert!(!c.enabled);
        assert_eq!(c.algorithms, Encoding::ALL.to_vec());
        assert_eq!(c.min_size, 1024);
        assert!(c.content_types.iter().any(|t| t == "application/json"));
        assert_eq!((c.gzip_level, c.brotli_level, c.zstd_level), (2, 4, 3));
        assert!(!valid(&with("")).listeners[0].routes[0].compress);
    }

    #[test]
    fn every_key_is_read() {
        let c = valid(&with(
            "[compression]\nenabled = true\nalgorithms = [\"gzip\", \"br\"]\nmin_size = \"2KiB\"\n\
             content_types = [\"text/*\", \"application/json\"]\ngzip_level = 6\n\
             brotli_level = 11\nzstd_level = 19\n",
        ));
        let config = c.compression;
        assert!(config.enabled);
        assert_eq!(config.algorithms, vec![Encoding::Gzip, Encoding::Brotli]);
        assert_eq!(config.min_size, 2048);
        assert_eq!(config.content_types, vec!["text/*", "application/json"]);
        assert_eq!(
            (config.gzip_level, config.brotli_level, config.zstd_level),
            (6, 11, 19)
        );
        assert!(c.listeners[0].routes[0].compress, "routes follow `enabled`");
    }

    #[test]
    fn an_unknown_or_repeated_algorithm_is_named_with_a_fix() {
        let e = one_error(&with(
            "[compression]\nalgorithms = [\"gzip\", \"brotli\"]\n",
        ));
        assert_error(
            &e,
            "compression.algorithms[1]",
            "\"brotli\"",
            "unknown algorithm `brotli`",
            "write `br`",
        );
        let e = one_error(&with("[compression]\nalgorithms = [\"gzip\", \"gzip\"]\n"));
        assert_error(
            &e,
            "compression.algorithms[1]",
            "\"gzip\"",
            "listed twice",
            "once",
        );
        let e = one_error(&with("[compression]\nalgorithms = []\n"));
        assert_error(
            &e,
            "compression.algorithms",
            "[]",
            "no algorithm",
            "enabled = false",
        );
        let e = one_error(&with("[compression]\nalgorithms = [\"gzp\"]\n"));
        assert!(e.fix.contains("did you mean `gzip`"), "{e}");
    }

    #[test]
    fn levels_are_bounded_per_algorithm() {
        for (key, bad, range) in [
            ("gzip_level", "0", "between 1 and 9"),
            ("gzip_level", "10", "between 1 and 9"),
            ("brotli_level", "12", "between 0 and 11"),
            ("zstd_level", "20", "between 1 and 19"),
            ("zstd_level", "0", "between 1 and 19"),
        ] {
            let e = one_error(&with(&format!("[compression]\n{key} = {bad}\n")));
            assert_error(
                &e,
                &format!("compression.{key}"),
                bad,
                range,
                "whole number",
            );
        }
        assert_eq!(
            valid(&with("[compression]\nbrotli_level = 0\n"))
                .compression
                .brotli_level,
            0
        );
    }

    #[test]
    fn content_types_are_bare_lowercase_media_types() {
        for (bad, problem, fix) in [
            (
                "text/html; charset=utf-8",
                "parameters",
                "write \"text/html\"",
            ),
            (
                "Application/JSON",
                "lowercase",
                "write \"application/json\"",
            ),
            ("json", "not a media type", "application/json"),
            ("*/*", "compressed already", "text/*"),
            ("text/", "not a media type", "text/*"),
            ("text/a b", "not a media type", "text/*"),
        ] {
            let text = format!("[compression]\ncontent_types = [\"ok/x\", \"{bad}\"]\n");
            let e = one_error(&with(&text));
            assert_error(
                &e,
                "compression.content_types[1]",
                &format!("{bad:?}"),
                problem,
                fix,
            );
        }
        let errors = invalid(&with("[compression]\nmin_size = -1\ngzip_level = \"x\"\n"));
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
