//! The family tables `/metrics` and the JSON API are rendered from: one per scope, made from
//! the entries of [`super::catalog`] by `metrics_table!`, over the aggregate rows of
//! [`super::aggregate`] (the sum of every worker's snapshot). Routes count one thing, so their
//! table is written out here.
//!
//! Flow: `admin/prometheus.rs` renders each table's families in order for the rows it is given
//! (with the values of the table's labels); `admin/api.rs` flattens [`Table::json_fields`] of a
//! row into the row's JSON view.

use super::aggregate::{BackendRow, ListenerRow, RouteRow, UpstreamRow};
use super::catalog::{backend_metrics, listener_metrics, upstream_metrics};
use super::counters::{ClassCounters, Counter, Gauge, LatencyCounters};
use super::family::{metrics_table, Family, Kind, Table, Value};
use super::state::{BackendState, CircuitState};

listener_metrics!(metrics_table! {
    /// Every listener family, in exposition order.
    pub const LISTENERS: Table<ListenerRow> labelled ["listener"];
});

/// The route family.
pub const ROUTES: Table<RouteRow> = Table {
    labels: &["listener", "route", "upstream"],
    families: &[Family {
        name: "lbproxy_route_requests_total",
        kind: Kind::Counter,
        help: "Requests a route matched, by status class; route is what it matches (host, \
               path prefix and conditions). A redirect route (upstream \"-\") counts each \
               redirect it answered as a 3xx.",
        json: None,
        value: |r| Value::Classes(&r.responses),
    }],
};

upstream_metrics!(metrics_table! {
    /// Every upstream group family, in exposition order.
    pub const UPSTREAMS: Table<UpstreamRow> labelled ["upstream"];
});

backend_metrics!(metrics_table! {
    /// Every backend family, in exposition order.
    pub const BACKENDS: Table<BackendRow> labelled ["upstream", "backend"];
});

#[cfg(test)]
mod tests {
    use super::super::stats::BackendCounts;
    use super::*;
    use std::collections::BTreeSet;

    fn check<R>(table: &Table<R>, names: &mut BTreeSet<&'static str>) {
        for family in table.families {
            assert!(family.name.starts_with("lbproxy_"), "{}", family.name);
            assert!(names.insert(family.name), "{} twice", family.name);
            let help = family.help();
            assert!(!help.is_empty() && !help.contains("  "), "{help:?}");
            assert!(!help.contains(['\n', '\\']), "{help:?}");
            assert!(
                family.json.is_none() || family.kind != Kind::Histogram,
                "a histogram has no JSON field: {}",
                family.name
            );
            match family.kind {
                Kind::Counter => assert!(
                    family.name.ends_with("_total"),
                    "a counter's name ends in _total: {}",
                    family.name
                ),
                Kind::Gauge => assert!(!family.name.ends_with("_total"), "{}", family.name),
                Kind::Histogram => assert!(family.name.ends_with("_seconds"), "{}", family.name),
            }
        }
    }

    #[test]
    fn names_are_unique_and_help_is_one_clean_line() {
        let mut names = BTreeSet::new();
        check(&LISTENERS, &mut names);
        check(&ROUTES, &mut names);
        check(&UPSTREAMS, &mut names);
        check(&BACKENDS, &mut names);
        assert!(names.contains("lbproxy_backend_protocol_errors_total"));
    }

    #[test]
    fn json_fields_are_named_once_per_view() {
        let backend = BackendRow::up_for_tests(
            "127.0.0.1:1".parse().unwrap(),
            BackendCounts {
                protocol_errors: 3,
                ..BackendCounts::default()
            },
        );
        let fields = BACKENDS.json_fields(&backend);
        let names: Vec<&str> = fields.iter().map(|f| f.0).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        assert!(
            fields.contains(&("protocol_errors_total", 3.into())),
            "{fields:?}"
        );
        assert!(names.contains(&"responses"), "{names:?}");
    }
}
