//! `[compression]`: which responses the proxy compresses for clients that accept it, and how.
//! Off by default; a route's `compress` turns it on or off for that route.

/// A content coding the proxy can produce (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];
}

/// `[compression]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Compress where a route does not say (`compress`). Default false.
    pub enabled: bool,
    /// The codings offered, the proxy's preference first (used when the client's q-values tie).
    /// Default `["zstd", "br", "gzip"]`.
    pub algorithms: Vec<Encoding>,
    /// Responses whose announced length is below this are sent as they are. Default 1 KiB.
    pub min_size: u64,
    /// Media types compressed (`text/html`, or `text/*`), compared without parameters,
    /// lowercase.
    pub content_types: Vec<String>,
    /// gzip level, 1..=9. Default 2: zlib-rs's level 2 is zlib's level 1 in size (nginx's default).
    pub gzip_level: u32,
    /// brotli quality, 0..=11. Default 4 (11 is for static files compressed ahead of time).
    pub brotli_level: u32,
    /// zstd level, 1..=19. Default 3.
    pub zstd_level: i32,
}
