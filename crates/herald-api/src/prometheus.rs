//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! `/metrics` has a fixed, small set of series read from atomics, so a
//! metrics library would add a registry and its locking for nothing.
//!
//! Each family is written whole (`# HELP`, `# TYPE`, its samples), label
//! values are escaped, and a histogram's buckets come from one
//! [`Snapshot`], so they are cumulative and end in `+Inf` equal to
//! `_count`.

use std::fmt::Write;

use herald_core::metrics::Snapshot;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// One label pair; values are escaped when written.
pub type Label<'a> = (&'a str, &'a str);

impl Exposition {
    pub fn new() -> Self {
        Self {
            out: String::with_capacity(8 * 1024),
        }
    }

    pub fn into_text(self) -> String {
        self.out
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[Label<'_>], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter family: `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(&[Label<'_>], u64)]) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.header(name, "counter", help);
        for (labels, v) in samples {
            self.sample(name, labels, v);
        }
    }

    /// A gauge family of whole numbers.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(&[Label<'_>], u64)]) {
        self.header(name, "gauge", help);
        for (labels, v) in samples {
            self.sample(name, labels, v);
        }
    }

    /// A gauge with a fractional value (a time in seconds).
    pub fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A histogram family: one series per label set, each from a snapshot.
    pub fn histogram(&mut self, name: &str, help: &str, series: &[(&[Label<'_>], Snapshot)]) {
        self.header(name, "histogram", help);
        let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
        for (labels, s) in series {
            let with_le = |le: &str, out: &mut Self, n: u64| {
                let mut all: Vec<Label<'_>> = labels.to_vec();
                all.push(("le", le));
                out.sample(&bucket, &all, n);
            };
            for &(bound, n) in &s.buckets {
                with_le(&scaled(bound, s.scale), self, n);
            }
            with_le("+Inf", self, s.count);
            self.sample(&sum, labels, scaled(s.sum, s.scale));
            self.sample(&count, labels, s.count);
        }
    }
}

/// `value / scale` as the shortest decimal that reads back exactly
/// (`5000 / 1e6` is `0.005`, `30 / 1` is `30`).
fn scaled(value: u64, scale: u64) -> String {
    if scale == 1 {
        return value.to_string();
    }
    (value as f64 / scale as f64).to_string()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_written_cumulative_in_exposed_units_with_inf_equal_to_count() {
        let mut e = Exposition::new();
        let snap = Snapshot {
            buckets: vec![(5_000, 1), (250_000, 3)],
            count: 4,
            sum: 1_255_000,
            scale: 1_000_000,
        };
        e.histogram("x_seconds", "How long.", &[(&[("outcome", "success")], snap)]);
        assert_eq!(
            e.into_text(),
            "# HELP x_seconds How long.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{outcome=\"success\",le=\"0.005\"} 1\n\
             x_seconds_bucket{outcome=\"success\",le=\"0.25\"} 3\n\
             x_seconds_bucket{outcome=\"success\",le=\"+Inf\"} 4\n\
             x_seconds_sum{outcome=\"success\"} 1.255\n\
             x_seconds_count{outcome=\"success\"} 4\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.counter("a_total", "Line\\one\ntwo.", &[(&[("k", "q\"b\\n\n")], 7)]);
        assert_eq!(
            e.into_text(),
            "# HELP a_total Line\\\\one\\ntwo.\n# TYPE a_total counter\na_total{k=\"q\\\"b\\\\n\\n\"} 7\n"
        );
    }
}
