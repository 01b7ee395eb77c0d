//! The HTTP/1.1 session of http and https listeners.
//!
//! Flow of one client connection ([`session::serve`]): read a request head with the sans-io
//! [`crate::http`] codec, route it, and hand it to [`exchange`], which picks a backend and
//! connects with failover (the engine TCP uses too: [`crate::upstream::failover`]), streams the
//! request body up and the response back ([`body`]; compressed by `body/compressed.rs` when the route and the response allow), retries what is safe to retry, and returns
//! the upstream connection to the pool when both sides ended cleanly; a `101 Switching Protocols` turns the connection into the
//! byte relay ([`body::tunnel`], [`crate::relay`]). Each request is counted once when it ends
//! ([`record`]). A redirect route is answered by the proxy ([`redirect`]); a route that rewrites
//! the path has its upstream target built by [`rewrite`]. A request an access list refuses is
//! answered (403) or reset by [`deny`]; one over a rate limit gets [`refuse`]'s 429. These
//! answers of the proxy's own are counted and logged by [`answered`]. A route's header rules name
//! request properties gathered by [`rule_vars`], only for a route that has rules.

pub mod answered;
pub mod body;
pub mod client;
pub mod deny;
pub mod exchange;
pub mod record;
pub mod redirect;
pub mod refuse;
pub mod rewrite;
pub mod rule_vars;
pub mod session;
