//! Values that name request properties, written `https://{host}{uri}`, `/v2/{1}` or
//! `{request_id}`: parsed once when the configuration is validated ([`Template::parse`]),
//! expanded per request from a [`TemplateVars`]. `{{` and `}}` are literal braces.

/// A parsed template: literal text and the variables between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// What a template can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `{scheme}`: `http` or `https`, the listener's.
    Scheme,
    /// `{host}`: the request's host, without port.
    Host,
    /// `{path}`: the path as sent, without the query.
    Path,
    /// `{query}`: the query without its `?` (empty when there is none).
    Query,
    /// `{uri}`: the path and, when there is one, `?` and the query.
    Uri,
    /// `{method}`
    Method,
    /// `{client_ip}`: the client's address (without port).
    ClientIp,
    /// `{request_id}`: the request's `X-Request-Id`.
    RequestId,
    /// `{route}`: what the route matches (`api.example.com/v2/`).
    Route,
    /// `{backend}`: the backend's address; response headers only.
    Backend,
    /// `{1}`..: a capture of the route's `path_regex` (or of `rewrite_regex`, in its target).
    Capture(usize),
    /// `{name}` for any other name: a named capture.
    NamedCapture(String),
}

impl Var {
    fn from_name(name: &str) -> Var {
        match name {
            "scheme" => Var::Scheme,
            "host" => Var::Host,
            "path" => Var::Path,
            "query" => Var::Query,
            "uri" => Var::Uri,
            "method" => Var::Method,
            "client_ip" => Var::ClientIp,
            "request_id" => Var::RequestId,
            "route" => Var::Route,
            "backend" => Var::Backend,
            _ => match name.parse() {
                Ok(index) => Var::Capture(index),
                Err(_) => Var::NamedCapture(name.to_owned()),
            },
        }
    }
}

/// Why a template could not be parsed: the text and the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub problem: &'static str,
}

/// The request properties a template is expanded from; `None` expands to nothing.
#[derive(Debug, Default)]
pub struct TemplateVars<'a> {
    pub scheme: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    pub request_id: &'a str,
    pub route: &'a str,
    pub backend: Option<std::net::SocketAddr>,
    pub captures: Option<&'a regex::Captures<'a>>,
}

impl Template {
    /// Parses `text`. A `{` without its `}`, an empty `{}`, or a name that is not
    /// `[A-Za-z0-9_]+` is an error at its offset.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push('}');
                    i += 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        offset: i,
                        problem: "a `}` without its `{` (write `}}` for a literal brace)",
                    })
                }
                b'{' => {
                    let Some(len) = text[i + 1..].find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            problem: "a `{` without its `}` (write `{{` for a literal brace)",
                        });
                    };
                    let name = &text[i + 1..i + 1 + len];
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(TemplateError {
                            offset: i,
                            problem: "a variable name is letters, digits and `_`, as in {host}",
                        });
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(Var::from_name(name)));
                    i += len + 2;
                }
                _ => {
                    let next = text[i..].find(['{', '}']).map_or(text.len(), |at| i + at);
                    literal.push_str(&text[i..next]);
                    i = next;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The variables it names, for validation (`{backend}` where no backend is known yet, a
    /// capture the route's pattern does not have).
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Literal(_) => None,
        })
    }

    /// The template is a plain string, without variables.
    pub fn is_literal(&self) -> bool {
        self.vars().next().is_none()
    }

    /// Appends the expansion to `out`.
    pub fn expand(&self, vars: &TemplateVars<'_>, out: &mut Vec<u8>) {
        use std::io::Write as _;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Part::Var(var) => match var {
                    Var::Scheme => out.extend_from_slice(vars.scheme.as_bytes()),
                    Var::Host => out.extend_from_slice(vars.host.unwrap_or("").as_bytes()),
                    Var::Path => out.extend_from_slice(vars.path.as_bytes()),
                    Var::Query => out.extend_from_slice(vars.query.unwrap_or("").as_bytes()),
                    Var::Uri => {
                        out.extend_from_slice(vars.path.as_bytes());
                        if let Some(query) = vars.query {
                            out.push(b'?');
                            out.extend_from_slice(query.as_bytes());
                        }
                    }
                    Var::Method => out.extend_from_slice(vars.method.as_bytes()),
                    Var::ClientIp => {
                        if let Some(ip) = vars.client_ip {
                            push_ip(out, ip);
                        }
                    }
                    Var::RequestId => out.extend_from_slice(vars.request_id.as_bytes()),
                    Var::Route => out.extend_from_slice(vars.route.as_bytes()),
                    Var::Backend => match vars.backend {
                        Some(std::net::SocketAddr::V4(backend)) => {
                            push_ip(out, std::net::IpAddr::V4(*backend.ip()));
                            out.push(b':');
                            push_decimal(out, u64::from(backend.port()));
                        }
                        Some(backend) => {
                            let _ = write!(out, "{backend}");
                        }
                        None => {}
                    },
                    Var::Capture(index) => {
                        if let Some(m) = vars.captures.and_then(|c| c.get(*index)) {
                            out.extend_from_slice(m.as_str().as_bytes());
                        }
                    }
                    Var::NamedCapture(name) => {
                        if let Some(m) = vars.captures.and_then(|c| c.name(name)) {
                            out.extend_from_slice(m.as_str().as_bytes());
                        }
                    }
                },
            }
        }
    }
}

/// The template as it would be written (`https://{host}{uri}`), for `check` and logs.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Part::Var(var) => {
                    let name = match var {
                        Var::Scheme => "scheme",
                        Var::Host => "host",
                        Var::Path => "path",
                        Var::Query => "query",
                        Var::Uri => "uri",
                        Var::Method => "method",
                        Var::ClientIp => "client_ip",
                        Var::RequestId => "request_id",
                        Var::Route => "route",
                        Var::Backend => "backend",
                        Var::Capture(index) => {
                            write!(f, "{{{index}}}")?;
                            continue;
                        }
                        Var::NamedCapture(name) => name,
                    };
                    write!(f, "{{{name}}}")?;
                }
            }
        }
        Ok(())
    }
}

/// Appends `ip` as text: an IPv4 address digit by digit (a rule naming `{client_ip}` or
/// `{backend}` writes one per request, and `fmt` costs several times more: bench/profile.sh
/// --route headers), IPv6 through `fmt`.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    use std::io::Write as _;
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        ip => {
            let _ = write!(out, "{ip}");
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, vars: &TemplateVars<'_>) -> String {
        let mut out = Vec::new();
        Template::parse(text).unwrap().expand(vars, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn variables_and_literal_braces_expand() {
        let vars = TemplateVars {
            scheme: "http",
            host: Some("example.com"),
            path: "/a",
            query: Some("x=1"),
            request_id: "r1",
            ..TemplateVars::default()
        };
        assert_eq!(
            expand("https://{host}{uri}", &vars),
            "https://example.com/a?x=1"
        );
        assert_eq!(expand("{{id}} {request_id}", &vars), "{id} r1");
        assert_eq!(expand("{path}{query}", &vars), "/ax=1");
    }

    #[test]
    fn addresses_are_written_as_fmt_would() {
        for (ip, backend) in [
            ("10.0.0.1", "10.20.30.40:8080"),
            ("0.0.0.0", "255.255.255.255:0"),
            ("::1", "[2001:db8::1]:443"),
        ] {
            let vars = TemplateVars {
                client_ip: Some(ip.parse().unwrap()),
                backend: Some(backend.parse().unwrap()),
                ..TemplateVars::default()
            };
            assert_eq!(
                expand("{client_ip} {backend}", &vars),
                format!("{ip} {backend}")
            );
        }
    }

    #[test]
    fn captures_by_number_and_name() {
        let re = regex::Regex::new("^/users/(?P<id>[0-9]+)/(.*)$").unwrap();
        let caps = re.captures("/users/42/posts").unwrap();
        let vars = TemplateVars {
            captures: Some(&caps),
            ..TemplateVars::default()
        };
        assert_eq!(expand("/u/{id}/{2}/{9}", &vars), "/u/42/posts/");
    }

    #[test]
    fn a_template_displays_as_written() {
        for text in ["https://{host}{uri}", "{{x}} /{1}/{id}?r={route}", ""] {
            assert_eq!(Template::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn mistakes_name_their_offset() {
        assert_eq!(Template::parse("/a/{host").unwrap_err().offset, 3);
        assert_eq!(Template::parse("/a/}").unwrap_err().offset, 3);
        assert_eq!(Template::parse("x{}").unwrap_err().offset, 1);
        assert_eq!(Template::parse("x{a-b}").unwrap_err().offset, 1);
    }
}
