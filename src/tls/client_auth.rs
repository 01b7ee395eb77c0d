//! Client certificates (mTLS) on https listeners: the verifier built from the listener's CA
//! bundle, and what a verified certificate tells the backends.
//!
//! Flow: validation reads `client_ca` ([`super::certs::read_certificates`]) and builds the
//! verifier here ([`client_verifier`]: rustls' webpki verifier, which requires a certificate or,
//! `optional`, lets a client without one through — a client that presents one must still present
//! a valid one). After a handshake the worker renders the leaf's subject once per connection
//! ([`subject`], RFC 4514) and its SHA-256 ([`fingerprint`]); the HTTP session writes them as
//! `X-Client-Cert-Subject` / `X-Client-Cert-Fingerprint` on every request of the connection.

use super::{provider, Problem};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

/// The verifier of client certificates against the CA certificates in `roots` (read from
/// `ca_path`). `required`: a client without a certificate fails the handshake.
pub fn client_verifier(
    roots: Vec<CertificateDer<'static>>,
    required: bool,
    ca_path: &Path,
) -> Result<Arc<dyn ClientCertVerifier>, Problem> {
    let store = super::root_store(
        roots,
        ca_path,
        "point client_ca at the PEM certificate (or bundle) of the CA that issues the clients' \
         certificates",
    )?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| {
        Problem::new(
            format!(
                "cannot verify client certificates with the CAs in {} ({e})",
                ca_path.display()
            ),
            "point client_ca at the PEM certificate (or bundle) of the CA that issues the \
             clients' certificates",
        )
    })
}

/// The subject of a (verified) certificate as an RFC 4514 string: `CN=alice,O=Example,C=FR`
/// (the last RDN first, as the RFC orders them). Every byte a header value must not hold (a
/// control byte) and every non-ASCII byte is escaped as `\XX`, so the string is always a valid
/// field value. `None`: the certificate does not parse (rustls verified it, so never in
/// practice).
pub fn subject(leaf: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let mut out = String::with_capacity(64);
    for (i, rdn) in cert
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(attribute, &mut out);
        }
    }
    Some(out)
}

/// The SHA-256 of the certificate's DER, lowercase hex.
pub fn fingerprint(leaf: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(leaf.as_ref());
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `TYPE=value`: the short names RFC 4514 §3 lists, else the dotted OID with the value's DER
/// in hex (§2.4); a string value escaped (§2.4), any other `#` and its DER in hex.
fn write_attribute(attribute: &AttributeTypeAndValue<'_>, out: &mut String) {
    let oid = attribute.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.6" => Some("C"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    match (short, attribute.as_str()) {
        (Some(short), Ok(text)) => {
            out.push_str(short);
            out.push('=');
            escape_value(text, out);
        }
        (short, _) => {
            out.push_str(short.unwrap_or(&oid));
            out.push('=');
            out.push('#');
            write_der_hex(attribute, out);
        }
    }
}

/// RFC 4514 §2.4: `"+,;<>\` escaped with `\`, a leading `#` or space and a trailing space too;
/// control and non-ASCII bytes as `\XX`.
fn escape_value(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let edge = (i == 0 && (b == b'#' || b == b' ')) || (i + 1 == bytes.len() && b == b' ');
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            _ if edge => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

/// The attribute value's DER (tag, length, contents) in hex.
fn write_der_hex(attribute: &AttributeTypeAndValue<'_>, out: &mut String) {
    let value = attribute.attr_value();
    let header = &value.header;
    let tag = header.tag().0;
    if tag < 31 {
        let class = (header.class() as u8) << 6;
        let constructed = if header.is_constructed() { 0x20 } else { 0 };
        let _ = write!(out, "{:02x}", class | constructed | tag as u8);
        let len = value.data.len();
        if len < 0x80 {
            let _ = write!(out, "{len:02x}");
        } else {
            let octets: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            let _ = write!(out, "{:02x}", 0x80 | octets.len() as u8);
            for b in octets {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    for b in value.data {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

    fn certificate(names: &[(DnType, &str)]) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params
                .distinguished_name
                .push(kind.clone(), DnValue::Utf8String((*value).to_owned()));
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_subject_is_written_last_rdn_first() {
        let der = certificate(&[
            (DnType::CountryName, "FR"),
            (DnType::OrganizationName, "Example"),
            (DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject(&der).unwrap(), "CN=alice,O=Example,C=FR");
    }

    #[test]
    fn special_control_and_non_ascii_bytes_are_escaped() {
        let der = certificate(&[
            (DnType::OrganizationName, " Acme, Inc.+\"x\" "),
            (DnType::CommonName, "#é\r\nX-Admin: 1"),
        ]);
        assert_eq!(
            subject(&der).unwrap(),
            "CN=\\#\\C3\\A9\\0D\\0AX-Admin: 1,O=\\ Acme\\, Inc.\\+\\\"x\\\"\\ "
        );
    }

    #[test]
    fn an_unnamed_attribute_is_its_oid_and_der() {
        let der = certificate(&[(DnType::CustomDnType(vec![2, 5, 4, 5]), "42")]);
        // serialNumber (2.5.4.5) as a UTF8String (tag 0x0c) of two bytes.
        assert_eq!(subject(&der).unwrap(), "2.5.4.5=#0c023432");
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_der() {
        let der = certificate(&[(DnType::CommonName, "alice")]);
        let expected: String = Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fingerprint(&der), expected);
        assert_eq!(fingerprint(&der).len(), 64);
    }
}
