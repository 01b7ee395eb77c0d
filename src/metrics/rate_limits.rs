//! Request rate limits, counted per limit: requests allowed, limited (answered 429) and those a
//! `dry_run` limit would have refused; the keys each limit remembers and the live keys it forgot
//! because its table was full.
//!
//! A worker keeps these beside its limits' tables (`policy/rate_limit.rs`) and publishes one
//! [`RateLimitCounts`] per configured limit on its tick; the control side sums them over the
//! workers by name and `/metrics` shows them as `lbproxy_rate_limit_*{limit}`.

/// One limit's figures on one worker, or summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitCounts {
    /// The limit's name (`[rate_limit.NAME]`).
    pub name: String,
    pub allowed: u64,
    pub limited: u64,
    /// Over the limit, but the limit is `dry_run`: served.
    pub dry_run: u64,
    /// Keys remembered now (a gauge).
    pub keys: u64,
    /// Live keys forgotten because the table was full.
    pub evictions: u64,
}

impl RateLimitCounts {
    /// Adds another worker's figures for the same limit.
    pub fn merge(&mut self, other: &RateLimitCounts) {
        self.allowed += other.allowed;
        self.limited += other.limited;
        self.dry_run += other.dry_run;
        self.keys += other.keys;
        self.evictions += other.evictions;
    }
}

/// Adds a worker's rows to `total`, matched by name (a limit the first workers did not list
/// is appended: a worker may not have committed a reload yet).
pub fn merge_rows(total: &mut Vec<RateLimitCounts>, rows: &[RateLimitCounts]) {
    for row in rows {
        match total.iter_mut().find(|t| t.name == row.name) {
            Some(t) => t.merge(row),
            None => total.push(row.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, n: u64) -> RateLimitCounts {
        RateLimitCounts {
            name: name.into(),
            allowed: n,
            limited: 2 * n,
            dry_run: 3 * n,
            keys: 4 * n,
            evictions: 5 * n,
        }
    }

    #[test]
    fn rows_sum_by_name() {
        let mut total = Vec::new();
        merge_rows(&mut total, &[row("a", 1), row("b", 10)]);
        merge_rows(&mut total, &[row("b", 100), row("c", 1000)]);
        assert_eq!(total, [row("a", 1), row("b", 110), row("c", 1000)]);
    }
}
