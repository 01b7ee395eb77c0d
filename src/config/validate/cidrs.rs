//! Lists of networks (`trusted_proxies`, an access list's `allow` and `deny`): each entry an
//! address or `ADDRESS/PREFIX`, every mistake reported with its index and the fix.

use super::Validator;
use crate::config::error::{quote, KeyPath};
use crate::config::{Cidr, CidrSet};

impl Validator<'_> {
    /// The networks of `raw` (at `path`), or `None` when an entry is not one (each reported).
    pub(super) fn cidr_set(&mut self, raw: &[String], path: &KeyPath) -> Option<CidrSet> {
        let mut cidrs = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, text) in raw.iter().enumerate() {
            match Cidr::parse(text.trim()) {
                Ok(cidr) => cidrs.push(cidr),
                Err(problem) => {
                    ok = false;
                    self.push(
                        path.index(i),
                        quote(text),
                        problem,
                        "write an address (\"192.0.2.10\", \"2001:db8::1\") or a network with \
                         its prefix length (\"10.0.0.0/8\", \"2001:db8::/32\")",
                    );
                }
            }
        }
        ok.then(|| CidrSet::new(cidrs))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_error, one_error, API, LISTENER};

    #[test]
    fn a_network_with_host_bits_names_its_network() {
        let text = format!("{LISTENER}trusted_proxies = [\"10.0.0.0/8\", \"10.1.2.3/16\"]\n{API}");
        assert_error(
            &one_error(&text),
            "listener.http.trusted_proxies[1]",
            "\"10.1.2.3/16\"",
            "the network is 10.1.0.0/16",
            "\"10.0.0.0/8\"",
        );
    }
}
