//! Unit name patterns as systemd matches them (fnmatch: `*`, `?`, `[…]`): the watcher needs the
//! same answer as ListUnitsByPatterns to tell which group a unit that a signal names belongs to.

/// Whether `name` matches the shell-style `pattern` (`*`, `?`, `[…]`), as systemd matches unit
/// patterns (fnmatch).
pub(super) fn glob(pattern: &str, name: &str) -> bool {
    fn matches(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| matches(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && matches(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(close) = rest.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                    return n.first() == Some(&'[') && matches(rest, &n[1..]);
                };
                let Some(&c) = n.first() else {
                    return false;
                };
                let (negate, set) = match rest[0] {
                    '!' | '^' => (true, &rest[1..close]),
                    _ => (false, &rest[..close]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && matches(&rest[close + 1..], &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && matches(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_systemd_matches_them() {
        assert!(glob("api@*.service", "api@1.service"));
        assert!(glob("api@*.service", "api@12.service"));
        assert!(!glob("api@*.service", "api@1.socket"));
        assert!(!glob("api@*.service", "web@1.service"));
        assert!(glob("api@?.service", "api@7.service"));
        assert!(!glob("api@?.service", "api@17.service"));
        assert!(glob("api@[1-3].service", "api@2.service"));
        assert!(!glob("api@[1-3].service", "api@4.service"));
        assert!(glob("api@[!1-3].service", "api@4.service"));
        assert!(glob("api.service", "api.service"));
    }
}
