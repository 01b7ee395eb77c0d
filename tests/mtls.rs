//! Client certificates (mTLS) end to end: a required certificate refuses clients without one or
//! with one from another CA, a valid one reaches the backend as `X-Client-Cert-Subject` (and its
//! SHA-256 as `X-Client-Cert-Fingerprint`), a client cannot forge those fields, `optional` lets a
//! client without a certificate through without them, and a reload that changes the CA refuses
//! the old certificates at once (even to a client holding a session ticket). Counted in
//! `/metrics`.

mod common;

use common::backend::{RawBackend, Reply};
use common::tls::{provider, Leaf, Pki};
use common::{admin, config, wait_until, Proxy};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A CA issuing client certificates (clientAuth), its PEM written to `dir/NAME.pem`.
struct ClientCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

/// A client's certificate and key.
struct ClientId {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn validity(params: &mut CertificateParams) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + (now - Duration::from_secs(86_400));
    params.not_after = params.not_before + Duration::from_secs(30 * 86_400);
}

impl ClientCa {
    fn new(dir: &std::path::Path, name: &str) -> ClientCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} client CA"));
        validity(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        ClientCa { cert, key, pem }
    }

    /// A client certificate with subject `O=organization, CN=common_name` (in that DER order).
    fn issue(&self, organization: &str, common_name: &str) -> ClientId {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        validity(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        ClientId {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }
}

/// A TLS client of the proxy (trusting `server`'s CA), presenting `id` when given.
fn client(server: &Pki, id: Option<&ClientId>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(server.roots());
    let mut config = match id {
        Some(id) => builder
            .with_client_auth_cert(
                id.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends `request` over TLS and reads the response until the proxy closes. `Err`: the handshake
/// or the exchange failed (the error as rustls or the socket reported it).
fn exchange(
    config: &Arc<ClientConfig>,
    proxy: SocketAddr,
    request: &str,
) -> Result<String, String> {
    let name = ServerName::try_from("proxy.test").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    // In TLS 1.3 a client finishes its handshake before the server has checked its
    // certificate: a refusal arrives as an alert on the first read.
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let response = common::client::read_response(&mut reader, "GET").map_err(|e| e.to_string())?;
    Ok(format!(
        "{} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    ))
}

/// Whether `error` is the refusal of a client certificate: the TLS alert `alert`, or a reset
/// (the proxy closed with the client's request unread, so the reset may overtake the alert;
/// the tests then check the refusal in the failure count).
fn refused(error: &str, alert: &str) -> bool {
    error.contains(alert) || error.contains("reset by peer")
}

fn get(config: &Arc<ClientConfig>, proxy: SocketAddr, extra: &str) -> Result<String, String> {
    exchange(
        config,
        proxy,
        &format!("GET / HTTP/1.1\r\nHost: proxy.test\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// An https listener with `leaf`, asking for client certificates with `tls` keys.
fn mtls_config(leaf: &Leaf, backend: SocketAddr, tls: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\ndrain_timeout = \"5s\"\n\n\
         [listener.https]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\nupstream = \"api\"\n\
         [listener.https.tls]\n{tls}\n\
         [[listener.https.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [upstream.api]\nbackends = [\"{backend}\"]\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// The value of `name{listener="https"}` in `/metrics`.
fn listener_metric(proxy: &Proxy, name: &str) -> f64 {
    let text = admin::get(proxy.admin_addr(), "/metrics", None).text();
    text.lines()
        .find(|line| line.starts_with(&format!("{name}{{")) && line.contains("listener=\"https\""))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for listener https in:\n{text}"))
}

/// The `X-Client-Cert-*` lines of a forwarded head, as received.
fn cert_fields(request: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(request)
        .split("\r\n")
        .filter(|line| line.to_ascii_lowercase().starts_with("x-client-cert"))
        .map(str::to_owned)
        .collect()
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_required_certificate_is_verified_and_its_subject_reaches_the_backend() {
    let server = Pki::new();
    let leaf = server.leaf("proxy", &["proxy.test"]);
    let clients = ClientCa::new(server.dir.path(), "clients");
    let strangers = ClientCa::new(server.dir.path(), "strangers");
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let tls = format!("client_ca = \"{}\"", clients.pem.display());
    let proxy = Proxy::start(&mtls_config(&leaf, backend.addr, &tls));

    let none = get(&client(&server, None), proxy.addr, "").unwrap_err();
    assert!(refused(&none, "CertificateRequired"), "{none}");
    let stranger = strangers.issue("Elsewhere", "mallory");
    let other_ca = get(&client(&server, Some(&stranger)), proxy.addr, "").unwrap_err();
    assert!(refused(&other_ca, "UnknownCA"), "{other_ca}");
    assert!(
        backend.requests().is_empty(),
        "no refused client got through"
    );

    let alice = clients.issue("Example, Inc.", "alice");
    let forged = "X-Client-Cert-Subject: CN=admin\r\nX-Client-Cert-Fingerprint: 00\r\n";
    let served = get(&client(&server, Some(&alice)), proxy.addr, forged).unwrap();
    assert_eq!(served, "200 ok");
    let requests = backend.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        cert_fields(&requests[0]),
        [
            "X-Client-Cert-Subject: CN=alice,O=Example\\, Inc.".to_owned(),
            format!("X-Client-Cert-Fingerprint: {}", sha256_hex(&alice.chain[0])),
        ],
        "{}",
        String::from_utf8_lossy(&requests[0])
    );
    wait_until(Duration::from_secs(10), "certificates counted", || {
        listener_metric(&proxy, "lbproxy_listener_client_certificates_total") == 1.0
            && listener_metric(&proxy, "lbproxy_listener_client_certificate_failures_total") == 2.0
    });
}

#[test]
fn an_optional_certificate_lets_clients_without_one_through_without_the_fields() {
    let server = Pki::new();
    let leaf = server.leaf("proxy", &["proxy.test"]);
    let clients = ClientCa::new(server.dir.path(), "clients");
    let strangers = ClientCa::new(server.dir.path(), "strangers");
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let tls = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        clients.pem.display()
    );
    let proxy = Proxy::start(&mtls_config(&leaf, backend.addr, &tls));

    let forged = "X-Client-Cert-Subject: CN=admin\r\n";
    assert_eq!(
        get(&client(&server, None), proxy.addr, forged).unwrap(),
        "200 ok"
    );
    assert_eq!(cert_fields(&backend.requests()[0]), Vec::<String>::new());
    // A certificate that does not verify is still refused.
    let stranger = strangers.issue("Elsewhere", "mallory");
    let error = get(&client(&server, Some(&stranger)), proxy.addr, "").unwrap_err();
    assert!(refused(&error, "UnknownCA"), "{error}");
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        listener_metric(&proxy, "lbproxy_listener_client_certificate_failures_total") == 1.0
    });
    let bob = clients.issue("Example", "bob");
    assert_eq!(
        get(&client(&server, Some(&bob)), proxy.addr, "").unwrap(),
        "200 ok"
    );
    let requests = backend.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        cert_fields(&requests[1])[0],
        "X-Client-Cert-Subject: CN=bob,O=Example"
    );
}

#[test]
fn a_client_cannot_forge_the_fields_on_a_listener_without_client_certificates() {
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let proxy = Proxy::start(&config("io_uring", &[backend.addr], ""));
    let response = common::client::request(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Cert-Subject: CN=admin\r\n\
          x-client-cert-fingerprint: 00\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(cert_fields(&backend.requests()[0]), Vec::<String>::new());
}

#[test]
fn a_reload_with_another_ca_refuses_the_old_certificates() {
    let server = Pki::new();
    let leaf = server.leaf("proxy", &["proxy.test"]);
    let old = ClientCa::new(server.dir.path(), "old");
    let new = ClientCa::new(server.dir.path(), "new");
    let backend = RawBackend::start(Reply::Fixed(OK.to_vec()));
    let tls = |ca: &ClientCa| format!("client_ca = \"{}\"", ca.pem.display());
    let proxy = Proxy::start(&mtls_config(&leaf, backend.addr, &tls(&old)));

    // One client configuration throughout: it keeps the session tickets it is given.
    let alice = client(&server, Some(&old.issue("Example", "alice")));
    assert_eq!(get(&alice, proxy.addr, "").unwrap(), "200 ok");
    assert_eq!(get(&alice, proxy.addr, "").unwrap(), "200 ok");
    proxy
        .reload(&mtls_config(&leaf, backend.addr, &tls(&new)))
        .expect("reload");
    let error = get(&alice, proxy.addr, "").unwrap_err();
    assert!(refused(&error, "UnknownCA"), "{error}");
    let carol = client(&server, Some(&new.issue("Example", "carol")));
    assert_eq!(get(&carol, proxy.addr, "").unwrap(), "200 ok");
    let requests = backend.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        cert_fields(&requests[2])[0],
        "X-Client-Cert-Subject: CN=carol,O=Example"
    );
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        listener_metric(&proxy, "lbproxy_listener_client_certificate_failures_total") == 1.0
    });
}
