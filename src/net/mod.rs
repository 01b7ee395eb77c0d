//! The connections a worker reads and writes, below both protocols: [`stream`] makes plain TCP
//! and TLS one pair of read/write halves (client side and upstream side alike), and [`io`] holds
//! the rent-style read and write helpers with deadlines that the HTTP session, the L4 session
//! and the upstream pool share; [`proxy_protocol`] writes the PROXY protocol header that L4
//! sessions and health probes send to backends, and [`proxy_protocol_parse`] reads the one a
//! listener with `accept_proxy_protocol` receives.

pub mod io;
pub mod proxy_protocol;
pub mod proxy_protocol_parse;
pub mod stream;
