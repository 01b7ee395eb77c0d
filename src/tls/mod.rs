//! TLS with rustls (ring provider): https listeners terminate TLS, upstream groups may speak TLS
//! to their backends.
//!
//! Flow: configuration validation reads the PEM files ([`certs`]) and builds the rustls
//! configurations here ([`server_config`], [`client_config`]), so `lbproxy check` and a reload
//! report a bad file before anything serves it; the validated [`crate::config::Config`] carries
//! them (`Arc`, shared by every worker). A worker takes them from its configuration generation
//! for each new connection and runs the handshake ([`stream::handshake`]) with a deadline; the
//! resulting halves ([`stream::TlsReader`], [`stream::TlsWriter`]) are what the proxy reads and
//! writes.
//!
//! Settings: TLS 1.2 and 1.3 with rustls' default cipher suites and key exchange groups (all
//! AEAD, all forward secret: within Mozilla's "intermediate" profile), ALPN `http/1.1`, the
//! client's cipher suite order, no 0-RTT. Certificates are chosen by SNI ([`resolver`]).
//!
//! Session resumption: stateless tickets for TLS 1.3 and 1.2 from one process-wide ticketer
//! (random keys rotated every 6 hours, kept across reloads, so any worker and any configuration
//! generation resumes a session another one made), plus rustls' stateful session-ID cache for
//! TLS 1.2 clients without ticket support. Both sit behind locks shared by the workers; they are
//! touched once per handshake, never per request. A listener that asks for client certificates
//! ([`client_auth`]) has ticket keys of its own configuration instead: a resumed session is not
//! verified again, so tickets must not cross listeners or a reload of its CA.

pub mod certs;
pub mod client_auth;
pub mod resolver;
pub mod stream;
#[cfg(test)]
pub(crate) mod testing;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ProducesTickets;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The one protocol lbproxy speaks inside TLS (h2 comes later).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Something about a TLS file or setting that cannot be used: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub problem: String,
    pub fix: String,
}

impl Problem {
    pub fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// rustls' ring provider with its default (safe) suites and groups.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Ticket keys of one configuration only (a listener asking for client certificates).
fn own_ticketer() -> Result<Arc<dyn ProducesTickets>, Problem> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| {
        Problem::new(
            format!("cannot create the TLS session ticket keys ({e})"),
            "this needs the system's random number generator (getrandom)",
        )
    })
}

/// The process-wide session ticket encrypter (see the module docs).
fn ticketer() -> Result<Arc<dyn ProducesTickets>, Problem> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(ticketer) = TICKETER.get() {
        return Ok(ticketer.clone());
    }
    let made = rustls::crypto::ring::Ticketer::new().map_err(|e| {
        Problem::new(
            format!("cannot create the TLS session ticket keys ({e})"),
            "this needs the system's random number generator (getrandom)",
        )
    })?;
    Ok(TICKETER.get_or_init(|| made).clone())
}

/// The server configuration of an https listener, certificates chosen by `resolver`, client
/// certificates checked by `client_verifier` (`None`: none asked for).
pub fn server_config(
    resolver: resolver::SniResolver,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, Problem> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(internal)?;
    let asks_certificates = client_verifier.is_some();
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    // A resumed session is not verified again: rustls trusts the client certificate stored in
    // its ticket. With client certificates, the listener's configuration gets its own ticket
    // keys, so a ticket from another listener (or from before a reload that changed the CA)
    // cannot resume here: such a client makes a full handshake and is verified.
    config.ticketer = if asks_certificates {
        own_ticketer()?
    } else {
        ticketer()?
    };
    Ok(Arc::new(config))
}

/// The CA certificates of `roots` (read from `ca_path`) that can anchor a chain; an error with
/// `fix` when none can.
pub(crate) fn root_store(
    roots: Vec<CertificateDer<'static>>,
    ca_path: &Path,
    fix: &str,
) -> Result<RootCertStore, Problem> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots);
    if added == 0 {
        return Err(Problem::new(
            format!(
                "none of the certificates in {} can be used as a CA certificate",
                ca_path.display()
            ),
            fix,
        ));
    }
    Ok(store)
}

/// The client configuration for TLS to backends: servers are verified against the CA
/// certificates in `roots` (read from `ca_path`).
pub fn client_config(
    roots: Vec<CertificateDer<'static>>,
    ca_path: &Path,
) -> Result<Arc<ClientConfig>, Problem> {
    let store = root_store(
        roots,
        ca_path,
        "point ca at the PEM certificate of the CA that signed the backends' certificates \
         (or a bundle such as /etc/ssl/certs/ca-certificates.crt)",
    )?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(internal)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

fn internal(e: rustls::Error) -> Problem {
    Problem::new(
        format!("the TLS library refused its default settings ({e})"),
        "this is a bug in lbproxy; please report it",
    )
}
