//! Reading PEM files: certificate chains, private keys and CA bundles, each failure said as a
//! [`Problem`] that names the file and what to do.

use super::{provider, Problem};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;

/// Every certificate in a PEM file, in file order (for a chain: the leaf first).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let text = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(Problem::new(
            format!(
                "{} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)",
                path.display()
            ),
            "point it at the certificate file in PEM form (a DER file converts with \
             `openssl x509 -inform der -in FILE -out FILE.pem`)",
        )),
        Err(e) => Err(malformed(path, &e)),
    }
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Problem> {
    let text = read(path)?;
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(Problem::new(
            format!(
                "{} holds no PEM private key (no -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block)",
                path.display()
            ),
            "point it at the private key of the certificate, unencrypted, in PEM form",
        )),
        Err(e) => Err(malformed(path, &e)),
    }
}

/// A chain and its key, checked to belong together.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, Problem> {
    webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
        Problem::new(
            format!(
                "the first certificate in {} cannot be parsed ({e})",
                cert_path.display()
            ),
            "the file must start with the server's own certificate, followed by its \
             intermediates",
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Problem::new(
            format!(
                "the private key in {} does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
            "pair each certificate with its own key (compare `openssl x509 -pubkey -noout -in \
             CERT` with `openssl pkey -pubout -in KEY`)",
        ),
        other => Problem::new(
            format!(
                "the private key in {} cannot be used ({other})",
                key_path.display()
            ),
            "use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key, unencrypted",
        ),
    })
}

/// The DNS names a certificate covers (its subject alternative names), lowercase; wildcards as
/// `*.example.com`.
pub fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(leaf)
        .map(|cert| {
            cert.valid_dns_names()
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<Vec<u8>, Problem> {
    std::fs::read(path).map_err(|e| {
        Problem::new(
            format!("cannot read {}: {e}", path.display()),
            "check the path and its permissions (a relative path is relative to the \
             configuration file's directory)",
        )
    })
}

fn malformed(path: &Path, error: &pem::Error) -> Problem {
    Problem::new(
        format!("{} is not valid PEM ({error})", path.display()),
        "check that the file is complete and was not edited by hand (each -----BEGIN …----- \
         needs its -----END …----- line)",
    )
}
