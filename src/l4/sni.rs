//! Reading the server name (SNI) out of a TLS ClientHello without terminating TLS, so a tcp
//! listener can route the connection by it and forward the bytes untouched.
//!
//! [`parse`] looks at the bytes a client sent so far and says whether they hold a complete
//! ClientHello (and its SNI, if any), need more bytes, or are not a TLS ClientHello at all. It
//! is sans-io and total: any input, however malformed, gives one of those answers, never a panic
//! or a read past the end (a proptest feeds it garbage, truncations and every fragmentation of
//! real ClientHellos). The caller bounds how much it reads ([`MAX_CLIENT_HELLO`]) and for how
//! long.
//!
//! The ClientHello may span several handshake records (RFC 8446 §5.1 allows fragmenting it);
//! their payloads are joined. Only `host_name` entries of the `server_name` extension count
//! (RFC 6066 §3); a name that is not printable ASCII counts as none.

/// The most a tcp listener reads while looking for the ClientHello: one full TLS record. Real
/// ClientHellos are well under 2 KiB (with post-quantum key shares).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024 + 5;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension number of `server_name`.
const SERVER_NAME: u16 = 0;
/// Largest record payload a peer may send (2^14).
const MAX_RECORD: usize = 16 * 1024;

/// What the bytes so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A complete ClientHello, with the server name it asks for (lowercase), if any.
    Complete(Option<String>),
    /// The start of a ClientHello: more bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello (another protocol, or malformed).
    NotTls,
}

/// Judges `bytes`, the first bytes the client sent (see the module docs).
pub fn parse(bytes: &[u8]) -> Hello {
    // Join the payloads of the leading handshake records until the ClientHello is whole.
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        let Some(header) = rest.get(..5) else {
            return Hello::Incomplete;
        };
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        // A handshake record of TLS 1.0 to 1.3 (ClientHellos say 3.1 for compatibility, some
        // old clients 3.0), neither empty nor over the limit.
        if header[0] != HANDSHAKE || header[1] != 3 || length == 0 || length > MAX_RECORD {
            return Hello::NotTls;
        }
        let Some(payload) = rest.get(5..5 + length) else {
            // Judge what has arrived of this record too: garbage is better refused early.
            let partial = &rest[5..];
            message.extend_from_slice(partial);
            return match message_state(&message) {
                State::NotTls => Hello::NotTls,
                _ => Hello::Incomplete,
            };
        };
        message.extend_from_slice(payload);
        rest = &rest[5 + length..];
        match message_state(&message) {
            State::Whole(body) => return Hello::Complete(server_name(body)),
            State::NotTls => return Hello::NotTls,
            State::Partial => {}
        }
    }
}

enum State<'a> {
    /// The ClientHello's body.
    Whole(&'a [u8]),
    Partial,
    NotTls,
}

/// Whether the joined handshake bytes start with a whole ClientHello.
fn message_state(message: &[u8]) -> State<'_> {
    match message.first() {
        None => return State::Partial,
        Some(&CLIENT_HELLO) => {}
        Some(_) => return State::NotTls,
    }
    let Some(length) = message.get(1..4) else {
        return State::Partial;
    };
    let length =
        usize::from(length[0]) << 16 | usize::from(length[1]) << 8 | usize::from(length[2]);
    if length > MAX_CLIENT_HELLO {
        return State::NotTls;
    }
    match message.get(4..4 + length) {
        Some(body) => State::Whole(body),
        None => State::Partial,
    }
}

/// The first `host_name` of the `server_name` extension of a ClientHello body; `None` when it
/// has none or the body is malformed.
fn server_name(body: &[u8]) -> Option<String> {
    let mut r = Reader(body);
    r.skip(2 + 32)?; // legacy_version, random
    let session_id = r.u8()?;
    r.skip(usize::from(session_id))?;
    let suites = r.u16()?;
    r.skip(usize::from(suites))?;
    let compression = r.u8()?;
    r.skip(usize::from(compression))?;
    let mut extensions = Reader(r.vector()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vector()?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = Reader(Reader(data).vector()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vector()?;
            if name_type == 0 {
                let printable = !name.is_empty() && name.iter().all(u8::is_ascii_graphic);
                return printable.then(|| String::from_utf8_lossy(name).to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

/// A cursor that never reads past its slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(taken)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a 16-bit length prefix.
    fn vector(&mut self) -> Option<&'a [u8]> {
        let length = self.u16()?;
        self.take(usize::from(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// The ClientHello a real rustls client sends for `name` (an IP address: no SNI).
    fn rustls_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// A ClientHello body with these extensions (type, data).
    fn hello_body(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        body
    }

    fn sni_extension(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (SERVER_NAME, data)
    }

    /// The handshake message for `body`, split into records of at most `fragment` bytes.
    fn records(body: &[u8], fragment: usize) -> Vec<u8> {
        let mut message = vec![CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(body);
        let mut out = Vec::new();
        for chunk in message.chunks(fragment.max(1)) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn a_real_client_hello_names_its_server() {
        let hello = rustls_hello("Api.Example.com");
        assert_eq!(
            parse(&hello),
            Hello::Complete(Some("api.example.com".into()))
        );
        for cut in 0..hello.len() {
            assert_eq!(parse(&hello[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        // An IP address is not sent as SNI.
        assert_eq!(parse(&rustls_hello("127.0.0.1")), Hello::Complete(None));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"SSH-2.0-OpenSSH_9.2\r\n"), Hello::NotTls);
        // TLS, but not a ClientHello (a ServerHello), and an alert record.
        assert_eq!(parse(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
        assert_eq!(parse(&[21, 3, 3, 0, 2, 2, 40]), Hello::NotTls);
        assert_eq!(parse(&[]), Hello::Incomplete);
    }

    #[test]
    fn fragmented_hellos_are_joined_and_odd_names_ignored() {
        let body = hello_body(&[(10, vec![0, 2, 0, 29]), sni_extension(b"a.example.com")]);
        for fragment in [1, 2, 3, 7, 50, 1000] {
            assert_eq!(
                parse(&records(&body, fragment)),
                Hello::Complete(Some("a.example.com".into())),
                "fragment {fragment}"
            );
        }
        let no_sni = hello_body(&[(10, vec![0, 2, 0, 29])]);
        assert_eq!(parse(&records(&no_sni, 100)), Hello::Complete(None));
        let binary = hello_body(&[sni_extension(b"a\0b")]);
        assert_eq!(parse(&records(&binary, 100)), Hello::Complete(None));
        // A body cut short inside the extensions: malformed, so no name.
        let mut short = body.clone();
        short.truncate(body.len() - 3);
        assert_eq!(parse(&records(&short, 1000)), Hello::Complete(None));
    }

    proptest! {
        #[test]
        fn never_panics_on_anything(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_almost_tls(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            fragment in 1usize..300,
            cut in 0usize..1000,
        ) {
            let bytes = records(&body, fragment);
            let cut = cut.min(bytes.len());
            let _ = parse(&bytes[..cut]);
            let _ = parse(&bytes);
        }

        #[test]
        fn finds_any_name_however_fragmented(
            name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,4}",
            padding in proptest::collection::vec(any::<u8>(), 0..3000),
            fragment in 1usize..4000,
        ) {
            let body = hello_body(&[(21, padding), sni_extension(name.as_bytes())]);
            let bytes = records(&body, fragment);
            prop_assert_eq!(parse(&bytes), Hello::Complete(Some(name.clone())));
            // Every proper prefix needs more.
            let cut = fragment % bytes.len();
            prop_assert_eq!(parse(&bytes[..cut]), Hello::Incomplete);
        }
    }
}
