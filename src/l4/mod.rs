//! The L4 (tcp listener) session and what only it needs.
//!
//! Flow of one connection ([`session::serve`]): read the TLS ClientHello's server name when the
//! listener routes by SNI ([`sni`]), pick the route and a backend and connect with failover
//! (the engine HTTP uses, with a leg that only connects: [`crate::upstream::failover`]), write a
//! PROXY protocol header if the group asks ([`crate::net::proxy_protocol`]), then relay bytes
//! both ways ([`crate::relay`]) and count the connection once when it ends ([`record`]).

pub mod record;
pub mod session;
pub mod sni;
