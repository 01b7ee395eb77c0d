//! Client certificates (mTLS) of an https listener: `client_ca` (a PEM bundle, read now, so
//! `check` and a reload report a missing or unusable file, and a reload rereads it) and
//! `client_auth` (`"required"`, the default, or `"optional"`), made into the rustls verifier
//! that enforces them (`tls::client_auth`).

use std::sync::Arc;

use super::Validator;
use crate::config::error::{did_you_mean, quote, KeyPath};
use crate::config::file::FileListenerTls;
use crate::config::ClientAuthConfig;
use crate::tls::{self, certs};

/// `client_auth` as validated, and the verifier that enforces it (both `None`: no client
/// certificate asked for).
pub(super) type ClientAuth = (
    Option<ClientAuthConfig>,
    Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
);

impl Validator<'_> {
    /// `client_ca` and `client_auth`, and the verifier built from the CA bundle: `(None, None)`
    /// when no client certificate is asked for. The bundle is read now, so `check` and a reload
    /// report a missing or unusable file (and a reload rereads it).
    pub(super) fn client_auth(
        &mut self,
        raw: &FileListenerTls,
        path: &KeyPath,
    ) -> Option<ClientAuth> {
        let ca_path = path.key("client_ca");
        let auth_path = path.key("client_auth");
        let required = match raw.client_auth.as_deref() {
            None | Some("required") => true,
            Some("optional") => false,
            Some(other) => {
                self.push(
                    auth_path,
                    quote(other),
                    "not a client certificate mode",
                    format!(
                        "{}write client_auth = \"required\" (a client without a valid \
                         certificate fails the handshake, the default) or \"optional\" (it may \
                         connect without one)",
                        did_you_mean(other, ["required", "optional"])
                    ),
                );
                return None;
            }
        };
        let Some(text) = raw.client_ca.as_deref() else {
            if let Some(mode) = &raw.client_auth {
                self.push(
                    auth_path,
                    quote(mode),
                    "client certificates asked for without the CA that issues them",
                    format!(
                        "add client_ca = \"client-ca.pem\" (a PEM bundle, relative to this \
                         file's directory) to [{path}], or remove client_auth"
                    ),
                );
                return None;
            }
            return Some((None, None));
        };
        let (file, text) = self.pem_path(Some(text), &ca_path, "client_ca", "client-ca.pem")?;
        let roots = certs::read_certificates(&file);
        let roots = self.or_report(roots, &ca_path, &text)?;
        let verifier = tls::client_auth::client_verifier(roots, required, &file);
        let verifier = self.or_report(verifier, &ca_path, &text)?;
        let config = ClientAuthConfig { ca: file, required };
        Some((Some(config), Some(verifier)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::tests::{certificate, https, Files};
    use crate::config::testing::{assert_error, one_error, valid, API};
    use crate::tls::testing::TestCa;

    /// An https listener with a valid certificate and `extra` in its `[tls]` table.
    fn with_client_tls(files: &Files, ca: &TestCa, extra: &str) -> String {
        let leaf = ca.leaf(&["a.test"]);
        let cert = files.write("a.pem", &leaf.cert_pem);
        let key = files.write("a.key", &leaf.key_pem);
        https(&format!(
            "[listener.https.tls]\n{extra}{}",
            certificate(&cert, &key, "")
        ))
    }

    #[test]
    fn a_client_ca_asks_for_certificates_required_by_default() {
        let (ca, files) = (TestCa::new(), Files::new());
        let client_ca = files.write("clients.pem", &TestCa::new().pem());
        let config = valid(&with_client_tls(
            &files,
            &ca,
            &format!("client_ca = \"{client_ca}\"\n"),
        ));
        let tls = config.listeners[0].tls.as_ref().unwrap();
        let auth = tls.client_auth.as_ref().unwrap();
        assert!(auth.required);
        assert_eq!(auth.ca, std::path::PathBuf::from(&client_ca));
        let config = valid(&with_client_tls(
            &files,
            &ca,
            &format!("client_ca = \"{client_ca}\"\nclient_auth = \"optional\"\n"),
        ));
        let auth = config.listeners[0]
            .tls
            .as_ref()
            .unwrap()
            .client_auth
            .clone();
        assert!(!auth.unwrap().required);
        // Without client_ca, nothing is asked.
        let config = valid(&with_client_tls(&files, &ca, ""));
        assert!(config.listeners[0]
            .tls
            .as_ref()
            .unwrap()
            .client_auth
            .is_none());
    }

    #[test]
    fn a_client_ca_relative_to_the_file_is_found() {
        let (ca, files) = (TestCa::new(), Files::new());
        files.write("clients.pem", &TestCa::new().pem());
        let text = with_client_tls(&files, &ca, "client_ca = \"clients.pem\"\n");
        let config_path = files.dir.path().join("lbproxy.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = crate::config::load(Some(&config_path), None).expect("valid");
        let auth = config.listeners[0]
            .tls
            .as_ref()
            .unwrap()
            .client_auth
            .clone();
        assert_eq!(auth.unwrap().ca, files.dir.path().join("clients.pem"));
    }

    #[test]
    fn client_auth_without_client_ca_is_refused() {
        let (ca, files) = (TestCa::new(), Files::new());
        let e = one_error(&with_client_tls(
            &files,
            &ca,
            "client_auth = \"required\"\n",
        ));
        assert_error(
            &e,
            "listener.https.tls.client_auth",
            "\"required\"",
            "without the CA that issues them",
            "add client_ca = \"client-ca.pem\"",
        );
    }

    #[test]
    fn an_unknown_client_auth_mode_suggests_the_closest() {
        let (ca, files) = (TestCa::new(), Files::new());
        let client_ca = files.write("clients.pem", &TestCa::new().pem());
        let e = one_error(&with_client_tls(
            &files,
            &ca,
            &format!("client_ca = \"{client_ca}\"\nclient_auth = \"optinal\"\n"),
        ));
        assert_error(
            &e,
            "listener.https.tls.client_auth",
            "\"optinal\"",
            "not a client certificate mode",
            "did you mean `optional`?",
        );
    }

    #[test]
    fn a_missing_or_certificate_less_client_ca_is_named() {
        let (ca, files) = (TestCa::new(), Files::new());
        let missing = files.missing("nope.pem");
        let e = one_error(&with_client_tls(
            &files,
            &ca,
            &format!("client_ca = \"{missing}\"\n"),
        ));
        assert_eq!(e.key, "listener.https.tls.client_ca", "{e}");
        assert_eq!(e.value, format!("\"{missing}\""), "{e}");
        assert!(e.problem.contains(&missing), "{e}");
        let empty = files.write("empty.pem", "not a certificate\n");
        let e = one_error(&with_client_tls(
            &files,
            &ca,
            &format!("client_ca = \"{empty}\"\n"),
        ));
        assert_error(
            &e,
            "listener.https.tls.client_ca",
            &format!("\"{empty}\""),
            "holds no PEM certificate",
            "PEM form",
        );
    }

    #[test]
    fn client_certificates_on_a_plain_listener_are_refused() {
        let e = one_error(&format!(
            "[listener.web]\naddress = \"127.0.0.1:8080\"\nupstream = \"api\"\n\
             [listener.web.tls]\nclient_ca = \"clients.pem\"\n{API}"
        ));
        assert_error(
            &e,
            "listener.web.tls",
            "",
            "TLS settings on a plain http listener",
            "set protocol = \"https\"",
        );
    }

    #[test]
    fn a_reload_rereads_the_client_ca() {
        let (ca, files) = (TestCa::new(), Files::new());
        let client_ca = files.write("clients.pem", &TestCa::new().pem());
        let text = with_client_tls(&files, &ca, &format!("client_ca = \"{client_ca}\"\n"));
        valid(&text);
        // The same text, loaded again after the file went bad, fails: nothing is cached.
        files.write("clients.pem", "gone\n");
        let e = one_error(&text);
        assert_error(
            &e,
            "listener.https.tls.client_ca",
            &format!("\"{client_ca}\""),
            "holds no PEM certificate",
            "PEM form",
        );
    }
}
