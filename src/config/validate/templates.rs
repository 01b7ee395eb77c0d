//! The templates of a route — a redirect's `Location`, a rewrite's replacement, header rule
//! values — checked in one place: control characters, syntax (the offset of a mistake), and the
//! variables each place may name (captures of the route's pattern, `{backend}` only where a
//! backend has answered).

use super::Validator;
use crate::config::error::{did_you_mean, quote};
use crate::config::key_path::KeyPath;
use crate::config::{Pattern, Template, Var};

/// The variables a template may name besides captures, for "did you mean".
const VARIABLES: [&str; 10] = [
    "scheme",
    "host",
    "path",
    "query",
    "uri",
    "method",
    "client_ip",
    "request_id",
    "route",
    "backend",
];

/// Where a template is expanded, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TemplateSite {
    /// A redirect's `Location` or a rewritten target: one line, no backend chosen.
    Target,
    /// A request header value: tabs allowed, no backend chosen yet.
    RequestHeader,
    /// A response header value: tabs allowed, `{backend}` is the one that answered.
    ResponseHeader,
}

impl Validator<'_> {
    /// Parses and checks `text` for `site`. `captures`: `Some(pattern)` when the captures it may
    /// name are known (`Some(None)`: the route has no pattern, so it may name none); `None` when
    /// they are not (the pattern itself was wrong, and is reported already).
    pub(super) fn template(
        &mut self,
        text: &str,
        site: TemplateSite,
        captures: Option<Option<&Pattern>>,
        path: &KeyPath,
    ) -> Option<Template> {
        let tab_allowed = site != TemplateSite::Target;
        if let Some((at, c)) = text
            .char_indices()
            .find(|&(_, c)| c.is_control() && !(tab_allowed && c == '\t'))
        {
            let fix = match site {
                TemplateSite::Target => "remove it; percent-encode what the target needs (%0A)",
                _ => "a field value is one line: remove the line break or control character",
            };
            self.push(
                path.clone(),
                quote(text),
                format!("control character {c:?} at offset {at}"),
                fix,
            );
            return None;
        }
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(e) => {
                self.push(
                    path.clone(),
                    quote(text),
                    format!("error at offset {}: {}", e.offset, e.problem),
                    format!(
                        "variables are written {}, or a capture {{1}} / {{name}}; {{{{ and }}}} \
                         are literal braces",
                        VARIABLES.map(|v| format!("{{{v}}}")).join(", ")
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        for var in template.vars() {
            if let Some((problem, fix)) = var_problem(var, site, captures) {
                self.push(path.clone(), quote(text), problem, fix);
                ok = false;
            }
        }
        ok.then_some(template)
    }
}

/// What is wrong with naming `var` at `site`, with the fix.
pub(super) fn var_problem(
    var: &Var,
    site: TemplateSite,
    captures: Option<Option<&Pattern>>,
) -> Option<(String, String)> {
    let no_regex = || {
        Some((
            "a capture, but the route has no path_regex".to_owned(),
            "add path_regex = \"^/users/(?P<id>[0-9]+)\" to the route, or use a request \
             variable such as {path}"
                .to_owned(),
        ))
    };
    match var {
        Var::Backend if site == TemplateSite::Target => Some((
            "{backend} names the backend, and none is chosen for this".to_owned(),
            "remove {backend}; it is only known in response_headers".to_owned(),
        )),
        Var::Backend if site == TemplateSite::RequestHeader => Some((
            "{backend} is not known yet when the request head is built".to_owned(),
            "use {backend} in response_headers: the backend is chosen (and may change on a \
             retry) after the request head is built, as in HAProxy and nginx"
                .to_owned(),
        )),
        Var::Capture(index) => match captures {
            Some(None) => no_regex(),
            Some(Some(pattern)) if *index >= pattern.0.captures_len() => Some((
                format!(
                    "{{{index}}}: the pattern {} has {} capture group(s)",
                    quote(pattern.as_str()),
                    pattern.0.captures_len() - 1
                ),
                "use a capture the pattern has ({1} is the first, {0} the whole match), or add a \
                 group to it"
                    .to_owned(),
            )),
            _ => None,
        },
        Var::NamedCapture(name) => match captures {
            Some(None) => Some((
                format!("unknown variable {{{name}}}"),
                format!(
                    "{}the variables are {}; a name of a path_regex group needs the route's \
                     path_regex",
                    did_you_mean(name, VARIABLES),
                    VARIABLES.map(|v| format!("{{{v}}}")).join(" ")
                ),
            )),
            Some(Some(pattern)) if !pattern.0.capture_names().flatten().any(|n| n == name) => {
                let groups = pattern.0.capture_names().flatten();
                Some((
                    format!(
                        "unknown variable {{{name}}}: not a variable nor a group of the pattern {}",
                        quote(pattern.as_str())
                    ),
                    format!(
                        "{}name a group (?P<{name}>…) in the pattern, or use one of {}",
                        did_you_mean(name, VARIABLES.iter().copied().chain(groups)),
                        VARIABLES.map(|v| format!("{{{v}}}")).join(" ")
                    ),
                ))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{var_problem, TemplateSite};
    use crate::config::{Pattern, Template};

    #[test]
    fn captures_must_be_groups_of_the_pattern() {
        let pattern = Pattern(regex::Regex::new("^/users/(?P<id>[0-9]+)/(.*)$").unwrap());
        let problems = |text: &str, site| -> Vec<String> {
            Template::parse(text)
                .unwrap()
                .vars()
                .filter_map(|var| var_problem(var, site, Some(Some(&pattern))))
                .map(|(problem, fix)| format!("{problem} / {fix}"))
                .collect()
        };
        assert!(problems("{1}-{2}-{id}-{0}", TemplateSite::Target).is_empty());
        let three = problems("{3}", TemplateSite::RequestHeader);
        assert!(three[0].contains("has 2 capture group(s)"), "{three:?}");
        let unknown = problems("{ids}", TemplateSite::Target);
        assert!(unknown[0].contains("unknown variable {ids}"), "{unknown:?}");
        assert!(unknown[0].contains("(?P<ids>"), "{unknown:?}");
        assert!(problems("{backend}", TemplateSite::ResponseHeader).is_empty());
        assert_eq!(problems("{backend}", TemplateSite::Target).len(), 1);
        assert_eq!(problems("{backend}", TemplateSite::RequestHeader).len(), 1);
        // Unknown captures are not judged when the route's match had problems of its own.
        let template = Template::parse("{9}").unwrap();
        let var = template.vars().next().unwrap();
        assert_eq!(var_problem(var, TemplateSite::Target, None), None);
    }
}
