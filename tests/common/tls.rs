//! TLS for tests: a throwaway PKI written to PEM files (a CA with keyCertSign, leaves with
//! CA:FALSE, serverAuth and their names as SANs), a rustls client that records the certificate it
//! was shown, https listener configurations, and a TLS backend (rustls on std sockets) that
//! records the SNI and the requests it gets.

use super::backend::complete_request_len;
use super::client::{self, Response};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA and the files of the certificates it issued, in a temporary directory.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    pub dir: tempfile::TempDir,
}

/// A leaf certificate written out: its files and its DER form.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
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
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + (now - Duration::from_secs(86_400));
    // Within the 366 days Mozilla's profiles allow.
    params.not_after = params.not_before + Duration::from_secs(90 * 86_400);
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "lbproxy test CA");
        validity(&mut params);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            ca,
            ca_key,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(pki.ca_path(), pki.ca.pem()).unwrap();
        pki
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for `names` (DNS names or IP addresses), written as `file.pem` and
    /// `file.key` (replacing earlier files of that name).
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(std::string::ToString::to_string).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.is_ca = IsCa::NoCa;
        params.custom_extensions.push(not_a_ca());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        validity(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
            der: cert.der().clone(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    /// A client that trusts this CA, offers `http/1.1`, records the server certificate it is
    /// shown, and keeps sessions for resumption. `versions`: e.g. only TLS 1.2.
    pub fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsClient {
        self.make_client(versions, true)
    }

    /// Like [`Pki::client`], but every handshake is a full one (so a certificate is shown).
    pub fn client_without_resumption(&self) -> TlsClient {
        self.make_client(rustls::DEFAULT_VERSIONS, false)
    }

    fn make_client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        resume: bool,
    ) -> TlsClient {
        let verifier = Arc::new(Recording {
            inner: WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()), provider())
                .build()
                .unwrap(),
            seen: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        TlsClient {
            config: Arc::new(config),
            verifier,
        }
    }
}

/// The certificate a handshake was shown, whether or not it was then accepted.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    verifier: Arc<Recording>,
}

impl TlsClient {
    /// Connects to `addr` asking for `server_name` (an IP address sends no SNI) and completes the
    /// handshake.
    pub fn connect(&self, addr: SocketAddr, server_name: &str) -> Result<TlsConn, rustls::Error> {
        *self.verifier.seen.lock().unwrap() = None;
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let conn = ClientConnection::new(self.config.clone(), name)?;
        let tcp = TcpStream::connect(addr).expect("connect to proxy");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| {
                e.into_inner()
                    .and_then(|inner| inner.downcast::<rustls::Error>().ok())
                    .map_or(rustls::Error::General("I/O error".into()), |e| *e)
            })?;
        }
        Ok(TlsConn {
            reader: BufReader::new(stream),
        })
    }

    /// The certificate the last handshake was shown.
    pub fn seen(&self) -> Option<CertificateDer<'static>> {
        self.verifier.seen.lock().unwrap().clone()
    }
}

/// A client connection over TLS, read like [`client::Conn`].
pub struct TlsConn {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    pub fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).expect("write request");
        stream.flush().unwrap();
    }

    pub fn read_response(&mut self, method: &str) -> std::io::Result<Response> {
        client::read_response(&mut self.reader, method)
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response("GET").expect("response")
    }

    pub fn tls(&self) -> &ClientConnection {
        &self.reader.get_ref().conn
    }

    pub fn into_stream(self) -> StreamOwned<ClientConnection, TcpStream> {
        assert!(self.reader.buffer().is_empty(), "unread bytes");
        self.reader.into_inner()
    }
}

/// `[listener.https]` (the first listener, so `Proxy::addr` is its address) with these
/// certificates (the first is the default) in front of `backends`, on `driver`.
pub fn https_config(driver: &str, certs: &[&Leaf], backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let mut text = format!(
        "[runtime]\nworkers = 2\ndriver = \"{driver}\"\ndrain_timeout = \"5s\"\n\n\
         [listener.https]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\nupstream = \"api\"\n"
    );
    for leaf in certs {
        text.push_str(&format!(
            "[[listener.https.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ));
    }
    text.push_str(&format!(
        "\n[upstream.api]\nbackends = [{}]\n\n{extra}\n",
        list.join(", ")
    ));
    text
}

/// A TLS backend: answers every request `200` with a fixed body, keeps connections alive, and
/// records the connections, the SNI of each and the requests.
pub struct TlsBackend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
}

#[derive(Default)]
struct BackendState {
    connections: AtomicUsize,
    server_names: Mutex<Vec<Option<String>>>,
    requests: Mutex<Vec<Vec<u8>>>,
    stop: AtomicBool,
}

impl TlsBackend {
    pub fn start(leaf: &Leaf) -> TlsBackend {
        use rustls::pki_types::pem::PemObject;
        let chain = vec![leaf.der.clone()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState::default());
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let (state, config) = (accept_state.clone(), config.clone());
                std::thread::spawn(move || serve_tls(tcp, config, &state));
            }
        });
        TlsBackend { addr, state }
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn server_names(&self) -> Vec<Option<String>> {
        self.state.server_names.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>, state: &BackendState) {
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut named = false;
    loop {
        match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if !named {
            named = true;
            let name = stream.conn.server_name().map(str::to_owned);
            state.server_names.lock().unwrap().push(name);
        }
        while let Some(len) = complete_request_len(&buf) {
            let request: Vec<u8> = buf.drain(..len).collect();
            state.requests.lock().unwrap().push(request);
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntls";
            if stream
                .write_all(reply)
                .and_then(|_| stream.flush())
                .is_err()
            {
                return;
            }
        }
    }
}

/// `curl` with the test CA, `name` resolved to 127.0.0.1. Returns (exit status, stdout, stderr).
pub fn curl(
    ca: &Path,
    name: &str,
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let port = addr.port();
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl is needed by this test: tests/run.sh installs it (apt-get install curl)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
