//! Response compression: gzip, brotli and zstd for clients that accept them (`[compression]`,
//! a route's `compress`).
//!
//! Flow: when a request's route compresses, `prepare` negotiates the coding from its
//! `Accept-Encoding` ([`negotiate()`], kept in the pending request as [`Choice`]); routes that do not
//! compress skip all of it. When the response head arrives, [`Response::compression`] decides from
//! its status and fields whether the body is compressed and whether `Vary` is added
//! ([`HeadChange`], written by `write_client_head`), and the body relay streams it through an
//! [`Encoder`] that flushes after every read from the backend, framed chunked toward the client.
//!
//! Files: `negotiate.rs` (`Accept-Encoding`), `head.rs` (the decision and the head), `encoder.rs`
//! (the three encoders behind one type).
//!
//! [`Response::compression`]: super::Response::compression

mod encoder;
mod head;
mod negotiate;

pub use encoder::Encoder;
pub(super) use head::push_compression_fields;
pub use head::HeadChange;
pub use negotiate::negotiate;

use crate::config::Encoding;

/// What a request's route and `Accept-Encoding` allow for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The route does not compress: the response goes as it came (no `Vary` either).
    Off,
    /// The route compresses, but the client takes none of the configured codings: the response is
    /// not compressed, and gets `Vary: Accept-Encoding` when its type is compressible.
    Identity,
    /// Compress with this coding if the response allows it.
    With(Encoding),
}

impl Choice {
    /// The negotiated coding, if any.
    pub fn coding(self) -> Option<Encoding> {
        match self {
            Choice::With(encoding) => Some(encoding),
            Choice::Off | Choice::Identity => None,
        }
    }
}
