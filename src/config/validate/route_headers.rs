//! A route's header rules (`[listener.NAME.route.request_headers]` and `response_headers`):
//! names, templates and the variables each direction may use, checked with the fix.
//!
//! Flow: for each direction, `remove` names, then the `set` and `add` tables; each name must be
//! an HTTP token and not a field the proxy writes itself in that direction (framing, the
//! forwarding fields); each value must be a string without control characters, parsed as a
//! [`Template`] whose variables exist in that direction (`{backend}`: responses only) and whose
//! captures the route's `path_regex` has.

use super::templates::TemplateSite;
use super::Validator;
use crate::config::error::quote;
use crate::config::file::{FileHeaderEdits, FileRoute};
use crate::config::key_path::KeyPath;
use crate::config::template::Template;
use crate::config::{HeaderEdits, HeaderRules, Pattern, RouteMatch};

/// Which message the edits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

/// The three kinds of edit, as their keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Remove,
    Set,
    Add,
}

impl Edit {
    fn key(self) -> &'static str {
        match self {
            Edit::Remove => "remove",
            Edit::Set => "set",
            Edit::Add => "add",
        }
    }
}

impl Validator<'_> {
    /// `request_headers`, `response_headers`. `matches` is the route's validated match (`None`
    /// when it had problems of its own: captures are then not checked).
    pub(super) fn header_rules(
        &mut self,
        raw: &FileRoute,
        matches: Option<&RouteMatch>,
        path: &KeyPath,
    ) -> Option<HeaderRules> {
        let captures = matches.map(|m| m.path_regex.as_ref());
        let request = match &raw.request_headers {
            Some(edits) => self.header_edits(
                edits,
                Direction::Request,
                captures,
                &path.key("request_headers"),
            ),
            None => Some(HeaderEdits::default()),
        };
        let response = match &raw.response_headers {
            Some(edits) => self.header_edits(
                edits,
                Direction::Response,
                captures,
                &path.key("response_headers"),
            ),
            None => Some(HeaderEdits::default()),
        };
        let response = response?;
        // Compression writes `Content-Encoding` (or leaves the backend's): a rule writing one
        // too would label a body twice.
        if raw.compress.unwrap_or(self.compress_by_default) {
            let writes =
                |edit: &&(String, Template)| edit.0.eq_ignore_ascii_case("content-encoding");
            if let Some((name, _)) = response.set.iter().chain(&response.add).find(writes) {
                let edit = if response.set.iter().any(|e| writes(&e)) {
                    "set"
                } else {
                    "add"
                };
                self.push(
                    path.key("response_headers").key(edit).key(name),
                    quote(name),
                    "the route compresses its responses, and compression writes \
                     Content-Encoding itself",
                    "remove this rule, or set compress = false on the route",
                );
                return None;
            }
        }
        Some(HeaderRules {
            request: request?,
            response,
        })
    }

    fn header_edits(
        &mut self,
        raw: &FileHeaderEdits,
        direction: Direction,
        captures: Option<Option<&Pattern>>,
        path: &KeyPath,
    ) -> Option<HeaderEdits> {
        let mut ok = true;
        let mut edits = HeaderEdits::default();
        for (i, name) in raw.remove.iter().flatten().enumerate() {
            let at = path.key("remove").index(i);
            if self.field_name(name, direction, Edit::Remove, &at) {
                edits.remove.push(name.to_ascii_lowercase());
            } else {
                ok = false;
            }
        }
        for edit in [Edit::Set, Edit::Add] {
            let table = match edit {
                Edit::Set => &raw.set,
                _ => &raw.add,
            };
            for (name, value) in table.iter().flatten() {
                let at = path.key(edit.key()).key(name);
                let named = self.field_name(name, direction, edit, &at);
                let value = self.field_value(value, direction, captures, &at);
                match (named, value) {
                    (true, Some(value)) => match edit {
                        Edit::Set => edits.set.push((name.clone(), value)),
                        _ => edits.add.push((name.clone(), value)),
                    },
                    _ => ok = false,
                }
            }
        }
        ok &= self.edits_overlap(&edits, path);
        ok.then_some(edits)
    }

    /// A field name: a token, and not one the proxy owns in this direction.
    fn field_name(&mut self, name: &str, direction: Direction, edit: Edit, path: &KeyPath) -> bool {
        if name.is_empty() {
            self.push(
                path.clone(),
                quote(name),
                "empty field name",
                "write a field name such as \"X-Env\"",
            );
            return false;
        }
        if let Some((at, c)) = name.char_indices().find(|(_, c)| !is_tchar(*c)) {
            self.push(
                path.clone(),
                quote(name),
                format!("{c:?} at position {at} cannot be part of a field name"),
                "a field name is letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons), \
                 e.g. \"X-Env\"",
            );
            return false;
        }
        let lower = name.to_ascii_lowercase();
        let owned = match direction {
            Direction::Request => request_owned(&lower, edit),
            Direction::Response => response_owned(&lower),
        };
        if let Some(fix) = owned {
            let message = match direction {
                Direction::Request => "the proxy writes this field of the request itself",
                Direction::Response => "the proxy writes this field of the response itself",
            };
            self.push(path.clone(), quote(name), message, fix);
            return false;
        }
        true
    }

    /// A field value: a string without control characters, parsed as a template whose
    /// variables exist in this direction.
    fn field_value(
        &mut self,
        value: &toml::Value,
        direction: Direction,
        captures: Option<Option<&Pattern>>,
        path: &KeyPath,
    ) -> Option<Template> {
        let toml::Value::String(text) = value else {
            self.push(
                path.clone(),
                value.to_string(),
                "a field value is a string",
                format!("write it quoted: \"{value}\""),
            );
            return None;
        };
        let site = match direction {
            Direction::Request => TemplateSite::RequestHeader,
            Direction::Response => TemplateSite::ResponseHeader,
        };
        self.template(text, site, captures, path)
    }

    /// A name removed and also set, or set twice (the table's keys differ only in case).
    fn edits_overlap(&mut self, edits: &HeaderEdits, path: &KeyPath) -> bool {
        let mut ok = true;
        for (i, (name, _)) in edits.set.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            if edits.remove.contains(&lower) {
                ok = false;
                self.push(
                    path.key("set").key(name),
                    quote(name),
                    "the field is both removed and set",
                    format!(
                        "remove {} from `remove`: `set` already replaces every line of it",
                        quote(name)
                    ),
                );
            }
            if edits.set[..i]
                .iter()
                .any(|(other, _)| other.eq_ignore_ascii_case(name))
            {
                ok = false;
                self.push(
                    path.key("set").key(name),
                    quote(name),
                    "set twice (field names are case-insensitive)",
                    "keep one of the two",
                );
            }
        }
        for (name, _) in &edits.add {
            if edits.remove.contains(&name.to_ascii_lowercase()) {
                ok = false;
                self.push(
                    path.key("add").key(name),
                    quote(name),
                    "the field is both removed and added",
                    format!(
                        "to replace the message's lines with this one, move it from `add` to \
                         `set` and remove {} from `remove`",
                        quote(name)
                    ),
                );
            }
        }
        ok
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Why a request field cannot be edited, as a fix; `None` when it can.
fn request_owned(lower: &str, edit: Edit) -> Option<String> {
    let fix = match lower {
        "host" if edit == Edit::Set => return None,
        "host" => {
            "a request carries exactly one Host: use `set` to send another one upstream \
                   (X-Forwarded-Host keeps the client's)"
        }
        "content-length" | "transfer-encoding" => {
            "the framing sent upstream is the proxy's, from the body it relays: remove this rule"
        }
        "connection" | "keep-alive" | "proxy-connection" | "upgrade" | "te" | "trailer"
        | "expect" => {
            "a hop-by-hop field is between the client and the proxy only; the proxy writes its \
             own toward the backend: remove this rule"
        }
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" => {
            "the proxy writes the forwarding fields from the connection (X-Forwarded-For \
             appends the client's address): remove this rule, or use another name such as \
             \"X-Client\" = \"{client_ip}\""
        }
        "x-request-id" | "traceparent" => {
            "the proxy sends the request's id and trace itself (the client's when valid): \
             remove this rule; {request_id} names the id in other fields"
        }
        "x-client-cert-subject" | "x-client-cert-fingerprint" => {
            "the proxy writes the verified client certificate's fields itself (mTLS: \
             [listener.NAME.tls] client_ca) and drops any a client sends, so backends can trust \
             them: remove this rule"
        }
        _ => return None,
    };
    Some(fix.to_owned())
}

/// Why a response field cannot be edited, as a fix; `None` when it can.
fn response_owned(lower: &str) -> Option<String> {
    let fix = match lower {
        "content-length" | "transfer-encoding" => {
            "the framing sent to the client is the proxy's, from the body it relays: remove \
             this rule"
        }
        "connection" | "keep-alive" | "upgrade" => {
            "whether the client connection stays open (or switches protocol) is the proxy's \
             call: remove this rule"
        }
        _ => return None,
    };
    Some(fix.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, invalid, one_error, valid, API};
    use crate::config::TemplateVars;

    /// A file with one route carrying `rules` (TOML lines after the route's own keys).
    fn route(rules: &str) -> String {
        format!(
            "[listener.http]\naddress = \"127.0.0.1:8080\"\n[[listener.http.route]]\n\
             path_prefix = \"/\"\nupstream = \"api\"\n{rules}{API}"
        )
    }

    #[test]
    fn rules_are_parsed_in_order() {
        let config = valid(&route(
            "request_headers = { remove = [\"X-Debug\"], set = { \"X-Env\" = \"prod\" }, \
             add = { \"X-Client\" = \"{client_ip}\" } }\n\
             response_headers = { remove = [\"Server\", \"X-Powered-By\"], \
             set = { \"Host\" = \"h\" }, add = { \"X-Backend\" = \"{backend}\" } }\n",
        ));
        let rules = &config.listeners[0].routes[0].headers;
        assert_eq!(rules.request.remove, ["x-debug"]);
        assert_eq!(rules.request.set[0].0, "X-Env");
        assert_eq!(rules.request.add[0].0, "X-Client");
        assert_eq!(rules.response.remove, ["server", "x-powered-by"]);
        let mut out = Vec::new();
        let vars = TemplateVars {
            backend: Some("10.0.0.1:80".parse().unwrap()),
            ..TemplateVars::default()
        };
        rules.response.add[0].1.expand(&vars, &mut out);
        assert_eq!(out, b"10.0.0.1:80");
        let none = valid(&route(""));
        assert!(none.listeners[0].routes[0].headers.is_empty());
    }

    #[test]
    fn names_must_be_tokens() {
        let e = one_error(&route("request_headers = { remove = [\"X Debug\"] }\n"));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.remove[0]",
            "\"X Debug\"",
            "' ' at position 1",
            "no spaces or colons",
        );
        let e = one_error(&route(
            "response_headers = { set = { \"X-A:\" = \"1\" } }\n",
        ));
        assert_error(
            &e,
            "listener.http.route[0].response_headers.set.\"X-A:\"",
            "\"X-A:\"",
            "':' at position 3",
            "e.g. \"X-Env\"",
        );
        let e = one_error(&route("request_headers = { add = { \"\" = \"1\" } }\n"));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.add.\"\"",
            "\"\"",
            "empty",
            "X-Env",
        );
    }

    #[test]
    fn values_are_strings_without_control_characters() {
        let e = one_error(&route("request_headers = { set = { \"X-N\" = 5 } }\n"));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.set.X-N",
            "5",
            "a string",
            "\"5\"",
        );
        let e = one_error(&route(
            "request_headers = { set = { \"X-N\" = \"a\\r\\nEvil: 1\" } }\n",
        ));
        assert_eq!(
            e.key, "listener.http.route[0].request_headers.set.X-N",
            "{e}"
        );
        assert!(e.problem.contains("'\\r' at offset 1"), "{e}");
        assert!(e.fix.contains("one line"), "{e}");
        let e = one_error(&route(
            "response_headers = { add = { \"X-N\" = \"a\\u0000\" } }\n",
        ));
        assert!(e.problem.contains("'\\0' at offset 1"), "{e}");
        valid(&route(
            "request_headers = { set = { \"X-N\" = \"a\\tb\" } }\n",
        ));
    }

    #[test]
    fn template_errors_name_the_offset() {
        let e = one_error(&route(
            "request_headers = { set = { \"X-Id\" = \"id-{request_id\" } }\n",
        ));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.set.X-Id",
            "\"id-{request_id\"",
            "at offset 3",
            "{{ and }}",
        );
    }

    #[test]
    fn fields_the_proxy_owns_are_refused_with_a_fix() {
        for (name, fix) in [
            ("Content-Length", "framing"),
            ("Transfer-Encoding", "framing"),
            ("Connection", "hop-by-hop"),
            ("Upgrade", "hop-by-hop"),
            ("TE", "hop-by-hop"),
            ("X-Forwarded-For", "forwarding fields"),
            ("X-Forwarded-Proto", "forwarding fields"),
            ("x-forwarded-host", "forwarding fields"),
            ("X-Request-Id", "{request_id}"),
            ("traceparent", "trace"),
            ("X-Client-Cert-Subject", "client certificate"),
            ("x-client-cert-fingerprint", "client certificate"),
        ] {
            for edit in ["set", "add"] {
                let e = one_error(&route(&format!(
                    "request_headers = {{ {edit} = {{ \"{name}\" = \"1\" }} }}\n"
                )));
                assert!(
                    e.problem.contains("writes this field of the request"),
                    "{e}"
                );
                assert!(e.fix.contains(fix), "{name}: {e}");
            }
            let e = one_error(&route(&format!(
                "request_headers = {{ remove = [\"{name}\"] }}\n"
            )));
            assert!(e.fix.contains(fix), "{name}: {e}");
        }
        for name in ["Content-Length", "Transfer-Encoding", "Connection"] {
            let e = one_error(&route(&format!(
                "response_headers = {{ add = {{ \"{name}\" = \"1\" }} }}\n"
            )));
            assert!(e.problem.contains("of the response itself"), "{e}");
            assert!(e.fix.contains("remove this rule"), "{e}");
        }
        // The response's X-Request-Id and the request's Host (set only) may be edited.
        valid(&route(
            "response_headers = { set = { \"X-Request-Id\" = \"{request_id}\" } }\n\
             request_headers = { set = { \"Host\" = \"internal.example\" } }\n",
        ));
        let e = one_error(&route("request_headers = { remove = [\"Host\"] }\n"));
        assert!(e.fix.contains("use `set`"), "{e}");
    }

    #[test]
    fn backend_is_for_responses_only() {
        let e = one_error(&route(
            "request_headers = { add = { \"X-B\" = \"{backend}\" } }\n",
        ));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.add.X-B",
            "\"{backend}\"",
            "not known yet",
            "use {backend} in response_headers",
        );
    }

    #[test]
    fn captures_need_the_route_s_path_regex() {
        let e = one_error(&route(
            "request_headers = { add = { \"X-U\" = \"{1}\" } }\n",
        ));
        assert_error(
            &e,
            "listener.http.route[0].request_headers.add.X-U",
            "\"{1}\"",
            "no path_regex",
            "add path_regex",
        );
        let e = one_error(&route(
            "request_headers = { add = { \"X-U\" = \"{clientip}\" } }\n",
        ));
        assert!(e.problem.contains("unknown variable {clientip}"), "{e}");
        assert!(e.fix.contains("did you mean"), "{e}");
    }

    #[test]
    fn both_removed_and_set_is_a_mistake() {
        let errors = invalid(&route(
            "request_headers = { remove = [\"x-a\", \"X-B\"], set = { \"X-A\" = \"1\" }, \
             add = { \"x-b\" = \"2\" } }\n",
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.problem.contains("both removed and set")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.fix.contains("move it from `add` to `set`")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_compressing_route_leaves_content_encoding_to_compression() {
        let e = one_error(&route(
            "compress = true\nresponse_headers = { set = { \"Content-Encoding\" = \"gzip\" } }\n",
        ));
        assert_error(
            &e,
            "listener.http.route[0].response_headers.set.Content-Encoding",
            "\"Content-Encoding\"",
            "compression writes Content-Encoding itself",
            "compress = false",
        );
        valid(&route(
            "compress = false\nresponse_headers = { set = { \"Content-Encoding\" = \"gzip\" } }\n",
        ));
    }
}
