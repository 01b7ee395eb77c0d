//! TLS settings: the certificates of https listeners and TLS to upstream backends.
//!
//! The PEM files are read here, during validation, so `lbproxy check` and a reload report a
//! missing, unreadable, malformed or mismatched file (naming it) before anything serves it, and a
//! reload that fails keeps the certificates already serving. Relative paths are resolved against
//! the configuration file's directory.
//!
//! Certificates: the first listed is the default; each is served for its `server_names`, or for
//! the DNS names in the certificate itself. A name served by two certificates, or an explicit
//! name the certificate does not cover, is an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::file::{FileCertificate, FileListenerTls, FileUpstreamTls};
use crate::config::{CertificateConfig, ListenerProtocol, ServerTlsConfig, UpstreamTlsConfig};
use crate::tls::{self, certs, resolver::SniResolver, Problem};

/// A certificate that loaded, with the names it is served for.
struct Loaded {
    config: CertificateConfig,
    key: Arc<CertifiedKey>,
}

impl Validator<'_> {
    /// `Some(None)`: a listener without TLS, as it should be; `None`: a problem was reported.
    pub(super) fn listener_tls(
        &mut self,
        protocol: Option<ListenerProtocol>,
        raw: Option<&FileListenerTls>,
        path: &KeyPath,
    ) -> Option<Option<ServerTlsConfig>> {
        let tls_path = path.key("tls");
        match (protocol, raw) {
            (Some(ListenerProtocol::Https), Some(raw)) if !raw.certificate.is_empty() => {
                self.server_tls(raw, &tls_path).map(Some)
            }
            (Some(ListenerProtocol::Https), _) => {
                if !self.issues.has_failed(&tls_path) {
                    self.push(
                        tls_path.key("certificate"),
                        "",
                        "missing: an https listener needs a certificate",
                        format!(
                            "add [[{tls_path}.certificate]] with cert = \"server.pem\" (the \
                             chain, leaf first) and key = \"server.key\""
                        ),
                    );
                }
                None
            }
            (Some(ListenerProtocol::Tcp), Some(_)) => {
                self.push(
                    tls_path.clone(),
                    "",
                    "TLS settings on a tcp listener, which passes TLS through untouched",
                    format!(
                        "remove [{tls_path}] (the backends terminate TLS; route by the name the \
                         client asks for with sni routes), or set protocol = \"https\" in \
                         [{path}] to terminate TLS here"
                    ),
                );
                None
            }
            // Any other protocol carries no TLS settings of its own.
            (Some(protocol), Some(_)) => {
                self.push(
                    tls_path.clone(),
                    "",
                    format!("TLS settings on a plain {} listener", protocol.scheme()),
                    format!("set protocol = \"https\" in [{path}], or remove [{tls_path}]"),
                );
                None
            }
            _ => Some(None),
        }
    }

    fn server_tls(&mut self, raw: &FileListenerTls, path: &KeyPath) -> Option<ServerTlsConfig> {
        let list_path = path.key("certificate");
        let loaded: Vec<Option<Loaded>> = raw
            .certificate
            .iter()
            .enumerate()
            .map(|(i, certificate)| self.certificate(certificate, i, &list_path.index(i)))
            .collect();
        let loaded: Vec<Loaded> = super::all(loaded)?;
        self.unique_names(&loaded, raw, &list_path)?;

        let mut resolver = SniResolver::new(loaded[0].key.clone());
        for certificate in &loaded {
            for name in &certificate.config.server_names {
                resolver.add(name, certificate.key.clone());
            }
        }
        let (client_auth, client_verifier) = self.client_auth(raw, path)?;
        match tls::server_config(resolver, client_verifier) {
            Ok(rustls) => Some(ServerTlsConfig {
                certificates: loaded.into_iter().map(|l| l.config).collect(),
                client_auth,
                rustls,
            }),
            Err(problem) => {
                self.problem(path.clone(), String::new(), problem);
                None
            }
        }
    }

    /// One `[[…tls.certificate]]`: both files read, the key matched to the chain, the names
    /// settled. `index` 0 is the default certificate.
    fn certificate(
        &mut self,
        raw: &FileCertificate,
        index: usize,
        path: &KeyPath,
    ) -> Option<Loaded> {
        let cert_path = path.key("cert");
        let key_path = path.key("key");
        let cert = self.pem_path(raw.cert.as_deref(), &cert_path, "cert", "server.pem");
        let key = self.pem_path(raw.key.as_deref(), &key_path, "key", "server.key");
        let chain = cert.as_ref().and_then(|(file, text)| {
            let chain = certs::read_certificates(file);
            self.or_report(chain, &cert_path, text)
        });
        let private = key.as_ref().and_then(|(file, text)| {
            let private = certs::read_private_key(file);
            self.or_report(private, &key_path, text)
        });
        let names_path = path.key("server_names");
        let explicit = raw
            .server_names
            .as_ref()
            .map(|names| self.server_names(names, &names_path));
        let ((cert_file, _), (key_file, key_text)) = (cert?, key?);
        let (chain, private) = (chain?, private?);
        let own_names = certs::dns_names(&chain[0]);
        let certified = certs::certified_key(chain, private, &cert_file, &key_file);
        let certified = self.or_report(certified, &key_path, &key_text)?;

        let server_names = match explicit {
            Some(names) => {
                let names = names?;
                let mut ok = true;
                for (i, name) in names.iter().enumerate() {
                    if !own_names.iter().any(|own| covers(own, name)) {
                        ok = false;
                        self.push(
                            names_path.index(i),
                            quote(name),
                            format!(
                                "the certificate in {} does not cover {name} (it covers {})",
                                cert_file.display(),
                                names_or_none(&own_names)
                            ),
                            "list only names the certificate covers, or use a certificate \
                             issued for this name",
                        );
                    }
                }
                ok.then_some(names)?
            }
            None if own_names.is_empty() && index > 0 => {
                self.push(
                    path.clone(),
                    "",
                    format!(
                        "the certificate in {} names no DNS host, so no client could select it",
                        cert_file.display()
                    ),
                    "add server_names = [\"…\"], or list it first to make it the default",
                );
                return None;
            }
            None => own_names,
        };
        Some(Loaded {
            config: CertificateConfig {
                cert: cert_file,
                key: key_file,
                server_names,
            },
            key: Arc::new(certified),
        })
    }

    /// `server_names`: at least one, each a host name or `*.` wildcard, lowercase.
    fn server_names(&mut self, names: &[String], path: &KeyPath) -> Option<Vec<String>> {
        if names.is_empty() {
            self.push(
                path.clone(),
                "[]",
                "no names: the certificate would never be selected",
                "list the names clients ask for, or remove server_names to use the names in \
                 the certificate",
            );
            return None;
        }
        let checked: Vec<Option<String>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| self.host(name, &path.index(i)))
            .collect();
        super::all(checked)
    }

    /// No name is served by two certificates of one listener.
    fn unique_names(
        &mut self,
        loaded: &[Loaded],
        raw: &FileListenerTls,
        path: &KeyPath,
    ) -> Option<()> {
        let mut ok = true;
        for (i, certificate) in loaded.iter().enumerate() {
            for name in &certificate.config.server_names {
                let Some(j) = loaded[..i]
                    .iter()
                    .position(|earlier| earlier.config.server_names.contains(name))
                else {
                    continue;
                };
                ok = false;
                let at = path.index(i);
                let explicit = raw.certificate[i].server_names.is_some();
                self.push(
                    if explicit { at.key("server_names") } else { at },
                    quote(name),
                    format!("{name} is already served by certificate[{j}]"),
                    "give each name to one certificate: set server_names on one of them to \
                     leave it out",
                );
            }
        }
        ok.then_some(())
    }

    pub(super) fn upstream_tls(
        &mut self,
        raw: &FileUpstreamTls,
        path: &KeyPath,
    ) -> Option<UpstreamTlsConfig> {
        let ca_path = path.key("ca");
        let ca = match raw.ca.as_deref() {
            Some(text) => self.pem_path(Some(text), &ca_path, "ca", "ca.pem"),
            None => {
                self.push(
                    ca_path.clone(),
                    "",
                    "missing: TLS to backends needs the CA that signed their certificates",
                    "add ca = \"/etc/lbproxy/backend-ca.pem\" (or \
                     \"/etc/ssl/certs/ca-certificates.crt\" for publicly trusted backends)",
                );
                None
            }
        };
        let server_name = match raw.server_name.as_deref() {
            None => Some(None),
            Some(text) => match ServerName::try_from(text.trim().to_owned()) {
                Ok(name) => Some(Some(name)),
                Err(_) => {
                    self.push(
                        path.key("server_name"),
                        quote(text),
                        "not a DNS name or IP address",
                        "write the name the backends' certificates are issued for, e.g. \
                         \"api.internal\"",
                    );
                    None
                }
            },
        };
        let (file, text) = ca?;
        let roots = certs::read_certificates(&file);
        let roots = self.or_report(roots, &ca_path, &text)?;
        let rustls = tls::client_config(roots, &file);
        let rustls = self.or_report(rustls, &ca_path, &text)?;
        Some(UpstreamTlsConfig {
            ca: file,
            server_name: server_name?,
            rustls,
        })
    }

    /// A file key: required, resolved against the configuration's directory. Returns the resolved
    /// path and the value as written.
    pub(super) fn pem_path(
        &mut self,
        text: Option<&str>,
        path: &KeyPath,
        key: &str,
        example: &str,
    ) -> Option<(PathBuf, String)> {
        match text {
            Some(text) if !text.trim().is_empty() => {
                Some((self.base.join(Path::new(text)), text.to_owned()))
            }
            other => {
                self.push(
                    path.clone(),
                    other.map(quote).unwrap_or_default(),
                    format!("missing: `{key}` names a PEM file"),
                    format!("add {key} = \"{example}\" (relative to this file's directory)"),
                );
                None
            }
        }
    }

    pub(super) fn or_report<T>(
        &mut self,
        result: Result<T, Problem>,
        path: &KeyPath,
        written: &str,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                self.problem(path.clone(), quote(written), problem);
                None
            }
        }
    }

    fn problem(&mut self, path: KeyPath, value: String, problem: Problem) {
        self.push(path, value, problem.problem, problem.fix);
    }
}

/// A certificate name (`own`, possibly `*.example.com`) covers `name` (possibly a wildcard too).
fn covers(own: &str, name: &str) -> bool {
    if own == name {
        return true;
    }
    match (own.strip_prefix("*."), name.split_once('.')) {
        (Some(parent), Some((label, rest))) => label != "*" && rest == parent,
        _ => false,
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no DNS name".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::testing::{assert_error, invalid, one_error, valid, API};
    use crate::tls::testing::TestCa;

    /// PEM files in a temporary directory.
    pub(in crate::config::validate) struct Files {
        pub(in crate::config::validate) dir: tempfile::TempDir,
    }

    impl Files {
        pub(in crate::config::validate) fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temporary directory"),
            }
        }

        /// Writes `text` to `name` and returns the absolute path.
        pub(in crate::config::validate) fn write(&self, name: &str, text: &str) -> String {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write PEM");
            path.display().to_string()
        }

        pub(in crate::config::validate) fn missing(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }
    }

    pub(in crate::config::validate) fn https(certificates: &str) -> String {
        format!(
            "[listener.https]\naddress = \"127.0.0.1:8443\"\nprotocol = \"https\"\n\
             upstream = \"api\"\n{certificates}{API}"
        )
    }

    pub(in crate::config::validate) fn certificate(cert: &str, key: &str, extra: &str) -> String {
        format!("[[listener.https.tls.certificate]]\ncert = \"{cert}\"\nkey = \"{key}\"\n{extra}")
    }

    #[test]
    fn certificates_load_and_take_their_names_from_the_certificate() {
        let (ca, files) = (TestCa::new(), Files::new());
        let a = ca.leaf(&["a.test", "*.a.test"]);
        let b = ca.leaf(&["b.test", "www.b.test"]);
        let text = https(&format!(
            "{}{}",
            certificate(
                &files.write("a.pem", &a.cert_pem),
                &files.write("a.key", &a.key_pem),
                ""
            ),
            certificate(
                &files.write("b.pem", &b.cert_pem),
                &files.write("b.key", &b.key_pem),
                "server_names = [\"WWW.b.test\"]\n"
            ),
        ));
        let config = valid(&text);
        let listener = &config.listeners[0];
        assert_eq!(listener.protocol, ListenerProtocol::Https);
        let tls = listener.tls.as_ref().expect("tls");
        let names: Vec<&Vec<String>> = tls.certificates.iter().map(|c| &c.server_names).collect();
        assert_eq!(
            names,
            [
                &vec!["a.test".to_owned(), "*.a.test".to_owned()],
                &vec!["www.b.test".to_owned()]
            ]
        );
        assert_eq!(tls.rustls.alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(
            valid(&text).listeners[0].tls,
            listener.tls,
            "equal by files and names"
        );
    }

    #[test]
    fn unreadable_and_non_pem_files_are_named() {
        let (ca, files) = (TestCa::new(), Files::new());
        let leaf = ca.leaf(&["a.test"]);
        let key = files.write("a.key", &leaf.key_pem);
        let missing = files.missing("nope.pem");
        let e = one_error(&https(&certificate(&missing, &key, "")));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].cert",
            &format!("\"{missing}\""),
            &format!("cannot read {missing}: No such file"),
            "relative to the configuration file's directory",
        );

        let cert = files.write("a.pem", &leaf.cert_pem);
        let errors = invalid(&https(&certificate(&key, &cert, "")));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_error(
            &errors[0],
            "listener.https.tls.certificate[0].cert",
            &format!("\"{key}\""),
            &format!("{key} holds no PEM certificate"),
            "certificate file in PEM form",
        );
        assert_error(
            &errors[1],
            "listener.https.tls.certificate[0].key",
            &format!("\"{cert}\""),
            &format!("{cert} holds no PEM private key"),
            "private key of the certificate",
        );

        let truncated = files.write("cut.pem", &leaf.cert_pem[..leaf.cert_pem.len() - 30]);
        let e = one_error(&https(&certificate(&truncated, &key, "")));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].cert",
            &format!("\"{truncated}\""),
            "is not valid PEM",
            "-----END",
        );
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let (ca, files) = (TestCa::new(), Files::new());
        let (a, b) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test"]));
        let cert = files.write("a.pem", &a.cert_pem);
        let wrong = files.write("b.key", &b.key_pem);
        let e = one_error(&https(&certificate(&cert, &wrong, "")));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].key",
            &format!("\"{wrong}\""),
            &format!("the private key in {wrong} does not belong to the certificate in {cert}"),
            "pair each certificate with its own key",
        );
    }

    #[test]
    fn https_needs_certificates_and_http_takes_none() {
        let e = one_error(&https(""));
        assert_error(
            &e,
            "listener.https.tls.certificate",
            "",
            "an https listener needs a certificate",
            "[[listener.https.tls.certificate]]",
        );
        let e = one_error(&https("[listener.https.tls]\ncertificate = []\n"));
        assert_eq!(e.key, "listener.https.tls.certificate");
        let e = one_error(&format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [[listener.web.tls.certificate]]\ncert = \"a.pem\"\nkey = \"a.key\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.web.tls",
            "",
            "TLS settings on a plain http listener",
            "set protocol = \"https\"",
        );
        let errors = invalid(&https(
            "[[listener.https.tls.certificate]]\nkey = \"/nonexistent/a.key\"\n",
        ));
        assert_eq!(errors.len(), 2, "the key is still read: {errors:#?}");
        assert_error(
            &errors[0],
            "listener.https.tls.certificate[0].cert",
            "",
            "missing: `cert` names a PEM file",
            "cert = \"server.pem\"",
        );
        let e = one_error(&https(
            "[listener.https.tls.certificate]\ncert = \"a.pem\"\n",
        ));
        assert_error(
            &e,
            "listener.https.tls.certificate",
            "{ cert = \"a.pem\" }",
            "must be an array of tables",
            "[[listener.https.tls.certificate]] (double brackets)",
        );
    }

    #[test]
    fn server_names_are_checked_against_the_certificate_and_each_other() {
        let (ca, files) = (TestCa::new(), Files::new());
        let wild = ca.leaf(&["*.a.test"]);
        let (cert, key) = (
            files.write("w.pem", &wild.cert_pem),
            files.write("w.key", &wild.key_pem),
        );
        let named = |names: &str| {
            https(&certificate(
                &cert,
                &key,
                &format!("server_names = {names}\n"),
            ))
        };
        valid(&named("[\"api.a.test\", \"*.a.test\"]"));
        let e = one_error(&named("[\"api.a.test\", \"b.test\"]"));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].server_names[1]",
            "\"b.test\"",
            "does not cover b.test (it covers *.a.test)",
            "issued for this name",
        );
        let e = one_error(&named("[]"));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].server_names",
            "[]",
            "would never be selected",
            "remove server_names",
        );
        let e = one_error(&named("[\"x.a.test:443\"]"));
        assert_error(
            &e,
            "listener.https.tls.certificate[0].server_names[0]",
            "\"x.a.test:443\"",
            "without its port",
            "\"x.a.test\"",
        );

        let twice = https(&format!(
            "{}{}",
            certificate(&cert, &key, ""),
            certificate(&cert, &key, "")
        ));
        let e = one_error(&twice);
        assert_error(
            &e,
            "listener.https.tls.certificate[1]",
            "\"*.a.test\"",
            "*.a.test is already served by certificate[0]",
            "give each name to one certificate",
        );

        let ip_only = ca.leaf(&["127.0.0.1"]);
        let (ip_cert, ip_key) = (
            files.write("ip.pem", &ip_only.cert_pem),
            files.write("ip.key", &ip_only.key_pem),
        );
        valid(&https(&certificate(&ip_cert, &ip_key, "")));
        let e = one_error(&https(&format!(
            "{}{}",
            certificate(&cert, &key, ""),
            certificate(&ip_cert, &ip_key, "")
        )));
        assert_error(
            &e,
            "listener.https.tls.certificate[1]",
            "",
            "names no DNS host, so no client could select it",
            "list it first to make it the default",
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_configuration_file() {
        let (ca, files) = (TestCa::new(), Files::new());
        let leaf = ca.leaf(&["a.test"]);
        files.write("a.pem", &leaf.cert_pem);
        files.write("a.key", &leaf.key_pem);
        let config_path = files.write("lbproxy.toml", &https(&certificate("a.pem", "a.key", "")));
        let config = crate::config::load_with_env(Some(Path::new(&config_path)), None, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let tls = config.listeners[0].tls.as_ref().expect("tls");
        assert_eq!(tls.certificates[0].cert, files.dir.path().join("a.pem"));
    }

    #[test]
    fn upstream_tls_needs_a_ca_and_takes_a_server_name() {
        let (ca, files) = (TestCa::new(), Files::new());
        let ca_file = files.write("ca.pem", &ca.pem());
        let upstream = |tls: &str| {
            format!(
                "[listener.http]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
                 [upstream.api]\nbackends = [\"127.0.0.1:8443\"]\n[upstream.api.tls]\n{tls}"
            )
        };
        let config = valid(&upstream(&format!(
            "ca = \"{ca_file}\"\nserver_name = \"api.internal\"\n"
        )));
        let tls = config.upstreams[0].tls.as_ref().expect("tls");
        assert_eq!(
            tls.server_name,
            Some(ServerName::try_from("api.internal").unwrap().to_owned())
        );
        assert_eq!(tls.rustls.alpn_protocols, [b"http/1.1".to_vec()]);

        let e = one_error(&upstream("server_name = \"api.internal\"\n"));
        assert_error(
            &e,
            "upstream.api.tls.ca",
            "",
            "TLS to backends needs the CA",
            "ca-certificates.crt",
        );
        let e = one_error(&upstream(&format!(
            "ca = \"{ca_file}\"\nserver_name = \"not a name\"\n"
        )));
        assert_error(
            &e,
            "upstream.api.tls.server_name",
            "\"not a name\"",
            "not a DNS name or IP address",
            "api.internal",
        );
        let key_file = files.write("ca.key", &ca.leaf(&["x.test"]).key_pem);
        let e = one_error(&upstream(&format!("ca = \"{key_file}\"\n")));
        assert_error(
            &e,
            "upstream.api.tls.ca",
            &format!("\"{key_file}\""),
            "holds no PEM certificate",
            "PEM form",
        );
        let e = one_error(&upstream(&format!("ca = \"{ca_file}\"\nsni = \"a\"\n")));
        assert_error(
            &e,
            "upstream.api.tls.sni",
            "\"a\"",
            "unknown key `sni`",
            "server_name",
        );
    }

    #[test]
    fn the_handshake_timeout() {
        let (ca, files) = (TestCa::new(), Files::new());
        let leaf = ca.leaf(&["a.test"]);
        let tls = certificate(
            &files.write("a.pem", &leaf.cert_pem),
            &files.write("a.key", &leaf.key_pem),
            "",
        );
        let config = valid(&https(&tls));
        assert_eq!(
            config.timeouts.tls_handshake,
            std::time::Duration::from_secs(10)
        );
        let e = one_error(&format!(
            "{}[timeouts]\ntls_handshake = \"0s\"\n",
            https(&tls)
        ));
        assert_error(
            &e,
            "timeouts.tls_handshake",
            "\"0s\"",
            "greater than zero",
            "the default is \"10s\"",
        );
    }
}
