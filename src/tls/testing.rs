//! A throwaway PKI for unit tests: a CA (keyCertSign) and leaf certificates it signs
//! (CA:FALSE, serverAuth, the given names as SANs, valid from yesterday for 90 days).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, PEM.
pub struct TestLeaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// basicConstraints CA:FALSE, critical, as DER wants it: an empty SEQUENCE (rcgen's
/// `IsCa::ExplicitNoCa` writes the default `cA FALSE` out, which strict parsers such as Python's
/// cryptography, and so sslyze, refuse).
fn not_a_ca() -> rcgen::CustomExtension {
    let mut extension = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    extension.set_criticality(true);
    extension
}

fn validity(params: &mut CertificateParams) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let yesterday = now - Duration::from_secs(86_400);
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + yesterday;
    params.not_after = params.not_before + Duration::from_secs(90 * 86_400);
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "lbproxy unit test CA");
        validity(&mut params);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn leaf(&self, names: &[&str]) -> TestLeaf {
        let names: Vec<String> = names.iter().map(std::string::ToString::to_string).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.is_ca = IsCa::NoCa;
        params.custom_extensions.push(not_a_ca());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        TestLeaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
