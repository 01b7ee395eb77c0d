//! What one metric is, and the macros that turn the catalog's declarations into code.
//!
//! A [`Family`] is one metric as every reader sees it: its Prometheus name, TYPE and HELP, its
//! field name in the JSON API (if it has one), and how to read its [`Value`] from an aggregate
//! row. A [`Table`] is the families of one scope (listeners, upstream groups, backends, routes)
//! in exposition order, with the labels that tell the scope's rows apart.
//!
//! Flow: [`super::catalog`] lists each scope's metrics once, as a macro that hands its entries to
//! another macro (an "x-macro"). It hands them to `metrics_structs!`, which makes
//! - the worker-local statistics struct: one `Cell` primitive ([`Cells`]) per counted metric, no
//!   lock and no atomic;
//! - its published counterpart (plain `u64`s and the like), with `snapshot` (the worker's tick
//!   copies the cells out) and `merge` (the control side sums the workers);
//!
//! and [`super::tables`] hands them to `metrics_table!`, which makes the scope's [`Table`] over
//! the aggregate rows, from which `/metrics` (`admin/prometheus.rs`) and the JSON API
//! (`admin/api.rs`, and so the dashboard) are produced. The two halves live in two modules so
//! that the structs sit below the snapshot and the aggregate, and the tables above them.
//!
//! The increments themselves stay hand-written methods in [`super::stats`]: what a request
//! counts is behaviour, not declaration.

use super::counters::{
    ClassCounters, ClassCounts, Counter, Gauge, Latency, LatencyCounters, STATUS_CLASSES,
};
use std::collections::BTreeMap;
use std::fmt;

/// The Prometheus TYPE of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A family's value for one row: what its samples (and its JSON fields) are made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// One sample.
    Number(u64),
    /// One sample that is not a whole number (CPU seconds, a Unix time).
    Real(f64),
    /// No sample for this row: the figure is not known (systemd does not account it, the unit
    /// is not running). In JSON: `null`.
    Unknown,
    /// One sample per status class, label `code` ([`STATUS_CLASSES`]). In JSON: the family's
    /// field holds the total, and a `responses` object the count per class.
    Classes(&'a ClassCounts),
    /// One sample per value of `label` (e.g. `state`), in this order.
    Labelled {
        label: &'static str,
        samples: Vec<(&'static str, u64)>,
    },
    /// A latency histogram: `_bucket` (label `le`, cumulative), `_sum` (seconds), `_count`.
    Latency(&'a Latency),
}

/// One metric: everything `/metrics` and the JSON API say about it, and how to read it from a
/// row of type `R` (an aggregate row: [`super::aggregate::BackendRow`], …).
pub struct Family<R: 'static> {
    /// The Prometheus name, `lbproxy_…`.
    pub name: &'static str,
    pub kind: Kind,
    /// The Prometheus HELP text (declared as doc comments: it may start with a space).
    pub help: &'static str,
    /// The field name in the JSON API's view of the row; `None`: not in the JSON API.
    pub json: Option<&'static str>,
    pub value: fn(&R) -> Value<'_>,
}

impl<R> Family<R> {
    /// The HELP text, trimmed.
    pub fn help(&self) -> &'static str {
        self.help.trim()
    }
}

impl<R> fmt::Debug for Family<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

/// The families of one scope, in exposition order.
pub struct Table<R: 'static> {
    /// The labels every sample of the scope carries, in order; the renderer gives their values
    /// per row (e.g. `upstream`, `backend`).
    pub labels: &'static [&'static str],
    pub families: &'static [Family<R>],
}

impl<R> fmt::Debug for Table<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("labels", &self.labels)
            .field("families", &self.families)
            .finish()
    }
}

impl<R> Table<R> {
    /// The JSON API fields of `row`, in table order: `(name, value)`; a [`Value::Classes`] family
    /// gives its total under its own name and the per-class counts under `responses`.
    pub fn json_fields(&self, row: &R) -> Vec<(&'static str, serde_json::Value)> {
        let mut fields = Vec::new();
        for family in self.families {
            let Some(name) = family.json else { continue };
            match (family.value)(row) {
                Value::Number(n) => fields.push((name, n.into())),
                Value::Real(x) => fields.push((name, x.into())),
                Value::Unknown => fields.push((name, serde_json::Value::Null)),
                Value::Classes(counts) => {
                    fields.push((name, counts.total().into()));
                    // Sorted by class name, as the API always had them.
                    let by_class: BTreeMap<&str, u64> =
                        STATUS_CLASSES.iter().copied().zip(counts.0).collect();
                    fields.push(("responses", serde_json::json!(by_class)));
                }
                // The catalog gives these no JSON name (its tests say so).
                Value::Labelled { .. } | Value::Latency(_) => {}
            }
        }
        fields
    }
}

/// A worker-local counting primitive a scope's statistics are made of: what it publishes on
/// the tick, how published values of several workers add up, and how they read as a [`Value`].
pub trait Cells: Default {
    type Published: Copy + Default + fmt::Debug + PartialEq + Eq;
    /// The Prometheus TYPE of a family made of it.
    const KIND: Kind;
    fn publish(&self) -> Self::Published;
    fn merge(sum: &mut Self::Published, other: &Self::Published);
    fn value(published: &Self::Published) -> Value<'_>;
}

impl Cells for Counter {
    type Published = u64;
    const KIND: Kind = Kind::Counter;
    fn publish(&self) -> u64 {
        self.get()
    }
    fn merge(sum: &mut u64, other: &u64) {
        *sum += other;
    }
    fn value(published: &u64) -> Value<'_> {
        Value::Number(*published)
    }
}

/// Gauges add up over workers too (connections open on each, requests in flight on each).
impl Cells for Gauge {
    type Published = u64;
    const KIND: Kind = Kind::Gauge;
    fn publish(&self) -> u64 {
        self.get()
    }
    fn merge(sum: &mut u64, other: &u64) {
        *sum += other;
    }
    fn value(published: &u64) -> Value<'_> {
        Value::Number(*published)
    }
}

impl Cells for ClassCounters {
    type Published = ClassCounts;
    const KIND: Kind = Kind::Counter;
    fn publish(&self) -> ClassCounts {
        self.snapshot()
    }
    fn merge(sum: &mut ClassCounts, other: &ClassCounts) {
        sum.merge(other);
    }
    fn value(published: &ClassCounts) -> Value<'_> {
        Value::Classes(published)
    }
}

impl Cells for LatencyCounters {
    type Published = Latency;
    const KIND: Kind = Kind::Histogram;
    fn publish(&self) -> Latency {
        self.snapshot()
    }
    fn merge(sum: &mut Latency, other: &Latency) {
        sum.merge(other);
    }
    fn value(published: &Latency) -> Value<'_> {
        Value::Latency(published)
    }
}

/// The structs of one scope, from the catalog's entries (see [`super::catalog`]):
///
/// ```text
/// backend_metrics!(metrics_structs! {
///     /// doc of the worker-local struct
///     pub struct BackendStats {
///         /// fields that are not metrics, with their initial value
///         recent: RefCell<Histogram<u32>> = RefCell::new(latency_histogram()),
///     }
///     /// doc of the published struct
///     pub struct BackendCounts;
/// });
/// ```
///
/// Each `count` entry becomes a field of its `Cells` type in the worker-local struct and a field
/// of the published type in the published struct (copied by `snapshot`, summed by `merge`),
/// documented by the entry's doc comment. `show` entries are the table's only.
macro_rules! metrics_structs {
    (
        $(#[$stats_meta:meta])*
        pub struct $Stats:ident { $($extra:tt)* }
        $(#[$counts_meta:meta])*
        pub struct $Counts:ident;
        $($entries:tt)*
    ) => {
        $crate::metrics::family::metrics_structs!(@munch
            { [$(#[$stats_meta])*] $Stats { $($extra)* } [$(#[$counts_meta])*] $Counts }
            []
            $($entries)*
        );
    };

    // A counted entry: keep it.
    (@munch $header:tt [$($cells:tt)*]
        $(#[doc = $doc:literal])+
        count $field:ident: $Cell:ty = $name:literal $(, json $json:literal)?;
        $($rest:tt)*
    ) => {
        $crate::metrics::family::metrics_structs!(@munch $header
            [$($cells)* { [$($doc)+] $field $Cell }]
            $($rest)*
        );
    };

    // An entry worked out from the aggregate row: nothing to count.
    (@munch $header:tt [$($cells:tt)*]
        $(#[doc = $doc:literal])+
        show $field:ident: $Cell:ty = $name:literal, from $value:expr;
        $($rest:tt)*
    ) => {
        $crate::metrics::family::metrics_structs!(@munch $header [$($cells)*] $($rest)*);
    };

    // Every entry read.
    (@munch
        {
            [$(#[$stats_meta:meta])*] $Stats:ident {
                $( $(#[$extra_meta:meta])* $extra:ident: $Extra:ty = $init:expr ),* $(,)?
            }
            [$(#[$counts_meta:meta])*] $Counts:ident
        }
        [$({ [$($doc:literal)+] $field:ident $Cell:ty })*]
    ) => {
        $(#[$stats_meta])*
        #[derive(Debug)]
        pub struct $Stats {
            $( $(#[doc = $doc])+ pub(super) $field: $Cell, )*
            $( $(#[$extra_meta])* pub(super) $extra: $Extra, )*
        }

        impl Default for $Stats {
            fn default() -> Self {
                Self {
                    $( $field: <$Cell>::default(), )*
                    $( $extra: $init, )*
                }
            }
        }

        impl $Stats {
            /// The counters as of now: what the worker's tick publishes.
            pub fn snapshot(&self) -> $Counts {
                use $crate::metrics::family::Cells;
                $Counts {
                    $( $field: <$Cell as Cells>::publish(&self.$field), )*
                }
            }
        }

        $(#[$counts_meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $Counts {
            $(
                $(#[doc = $doc])+
                pub $field: <$Cell as $crate::metrics::family::Cells>::Published,
            )*
        }

        impl $Counts {
            /// Adds another worker's counts to these.
            pub fn merge(&mut self, other: &$Counts) {
                use $crate::metrics::family::Cells;
                $( <$Cell as Cells>::merge(&mut self.$field, &other.$field); )*
            }
        }
    };
}

/// The family table of one scope, from the catalog's entries (see [`super::tables`]):
///
/// ```text
/// backend_metrics!(metrics_table! {
///     /// doc of the table
///     pub const BACKENDS: Table<BackendRow> labelled ["upstream", "backend"];
/// });
/// ```
///
/// One family per entry, in entry order: the doc comment is its HELP text. A `count` entry's
/// TYPE comes from its `Cells` type and its value from the row's `counts`; a `show` entry's
/// TYPE from the type it names, and its value from its closure over the row.
macro_rules! metrics_table {
    (
        $(#[$table_meta:meta])*
        pub const $TABLE:ident: Table<$Row:ty> labelled [$($label:literal),* $(,)?];
        $(
            $(#[doc = $doc:literal])+
            $how:ident $field:ident: $Cell:ty = $name:literal
                $(, json $json:literal)? $(, from $value:expr)?;
        )*
    ) => {
        $(#[$table_meta])*
        pub const $TABLE: $crate::metrics::family::Table<$Row> = $crate::metrics::family::Table {
            labels: &[$($label),*],
            families: &[
                $(
                    $crate::metrics::family::Family::<$Row> {
                        name: $name,
                        kind: <$Cell as $crate::metrics::family::Cells>::KIND,
                        help: concat!($($doc),+),
                        json: $crate::metrics::family::metrics_table!(@json $($json)?),
                        value: $crate::metrics::family::metrics_table!(
                            @value $how $field $Cell, [$($value)?]
                        ),
                    },
                )*
            ],
        };
    };

    (@json) => { None };
    (@json $json:literal) => { Some($json) };
    (@value count $field:ident $Cell:ty, []) => {
        |row| <$Cell as $crate::metrics::family::Cells>::value(&row.counts.$field)
    };
    (@value show $field:ident $Cell:ty, [$value:expr]) => { $value };
}

pub(crate) use {metrics_structs, metrics_table};
