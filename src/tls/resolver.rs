//! Choosing the certificate for a handshake from the client's SNI: an exact name first, then a
//! wildcard one label up (`a.example.com` → `*.example.com`), else the listener's default (also
//! for clients that send no SNI, or an IP address).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct SniResolver {
    /// Lowercase name → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` for a certificate named `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Serves `key` for `name` (lowercase; `*.` only as its first label). A name given twice keeps
    /// the first certificate (validation refuses duplicates).
    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_insert(key),
            None => self.exact.entry(name.to_owned()).or_insert(key),
        };
    }

    /// The certificate for a client that asked for `server_name`.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    /// A distinguishable stand-in: the resolver never looks inside.
    fn key(tag: u8) -> Arc<CertifiedKey> {
        let signing = crate::tls::provider()
            .key_provider
            .load_private_key(test_key())
            .expect("test key");
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![tag])],
            signing,
        ))
    }

    fn test_key() -> rustls::pki_types::PrivateKeyDer<'static> {
        let pair = rcgen::KeyPair::generate().expect("key pair");
        rustls::pki_types::PrivatePkcs8KeyDer::from(pair.serialize_der()).into()
    }

    fn tag(key: &Arc<CertifiedKey>) -> u8 {
        key.cert[0].as_ref()[0]
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut resolver = SniResolver::new(key(0));
        resolver.add("api.example.com", key(1));
        resolver.add("*.example.com", key(2));
        resolver.add("other.test", key(3));
        let pick = |name: Option<&str>| tag(resolver.select(name));
        assert_eq!(pick(Some("api.example.com")), 1);
        assert_eq!(pick(Some("API.Example.COM")), 1, "SNI is case-insensitive");
        assert_eq!(pick(Some("www.example.com")), 2);
        assert_eq!(
            pick(Some("a.b.example.com")),
            0,
            "a wildcard covers one label"
        );
        assert_eq!(pick(Some("example.com")), 0);
        assert_eq!(pick(Some("other.test")), 3);
        assert_eq!(pick(Some("unknown.test")), 0);
        assert_eq!(pick(None), 0);
    }
}
