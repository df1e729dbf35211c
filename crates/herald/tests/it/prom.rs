//! Reading `/metrics` as Prometheus would: a strict parser of the text
//! format for the assertions (every sample in a declared family, no series
//! twice, histograms whole), and Prometheus' own `promtool` for the
//! verdict on the format and on docs/alerts.yml. Under `CI=true` promtool
//! must be there (`.ci/run` installs Debian's `prometheus`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::harness::Server;

/// One scrape, parsed.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    /// Family name -> its `# TYPE`.
    pub families: BTreeMap<String, String>,
    /// `name{labels}` exactly as written -> value.
    pub samples: BTreeMap<String, f64>,
    /// Every sample's metric name (`x_bucket` for a histogram's buckets).
    pub names: BTreeSet<String>,
}

pub async fn scrape(server: &Server) -> Scrape {
    let resp = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    parse(resp.text().await.expect("the metrics body"))
}

/// Parses the text format, panicking on anything Prometheus would reject
/// or that would make our assertions ambiguous.
pub fn parse(text: String) -> Scrape {
    let mut families = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut samples = BTreeMap::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP for {name} twice");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unexpected type {kind} for {name}"
            );
            assert!(helped.contains(name), "{name} has no HELP");
            assert!(
                families.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE for {name} twice"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(families.contains_key(family), "{name} has no TYPE before it");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "series {series} twice"
        );
        names.insert(name.to_owned());
    }
    Scrape {
        text,
        families,
        samples,
        names,
    }
}

/// A histogram's series for one label set (`labels` as written, e.g.
/// `outcome="success"`, or empty).
#[derive(Debug)]
pub struct Hist {
    /// `(le, cumulative count)`, in order, ending with `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Scrape {
    pub fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{}", self.text))
    }

    /// The value of a whole-number series.
    pub fn int(&self, series: &str) -> u64 {
        let v = self.value(series);
        assert!(v >= 0.0 && v.fract() == 0.0, "{series} is {v}");
        v as u64
    }

    pub fn histogram(&self, name: &str, labels: &str) -> Hist {
        assert_eq!(self.families.get(name).map(String::as_str), Some("histogram"), "{name}");
        let prefix = if labels.is_empty() {
            format!("{name}_bucket{{le=\"")
        } else {
            format!("{name}_bucket{{{labels},le=\"")
        };
        // In exposition order: the text lists buckets by ascending bound.
        let buckets: Vec<(f64, f64)> = self
            .text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, value.parse().unwrap())
            })
            .collect();
        let braced = |suffix: &str| {
            if labels.is_empty() {
                format!("{name}_{suffix}")
            } else {
                format!("{name}_{suffix}{{{labels}}}")
            }
        };
        let h = Hist {
            sum: self.value(&braced("sum")),
            count: self.value(&braced("count")),
            buckets,
        };
        assert!(h.buckets.len() >= 2, "{name}{{{labels}}} has no buckets: {h:?}");
        assert!(
            h.buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{{{labels}}}: bounds must ascend and counts never fall: {h:?}"
        );
        assert_eq!(
            h.buckets.last().unwrap().0,
            f64::INFINITY,
            "{name}: the last bucket is +Inf"
        );
        assert_eq!(h.buckets.last().unwrap().1, h.count, "{name}: +Inf is the count");
        h
    }
}

/// promtool, if it is installed; under `CI=true` it must be.
pub fn promtool() -> Option<PathBuf> {
    let path = std::env::var("HERALD_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(PathBuf::from(path));
    }
    let why = format!("needs promtool ({path}; Debian's `prometheus` package, which .ci/run installs)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but this test cannot run: it {why}");
    }
    eprintln!("skipped: the promtool check {why}");
    None
}

/// `promtool check metrics` on a scrape: the format and Prometheus' lint
/// rules (counters end in `_total`, HELP present, units in names).
pub fn promtool_check_metrics(promtool: &PathBuf, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's docs/ directory.
pub fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// Every `herald_…` metric name in `text`.
pub fn herald_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("herald_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "herald_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}
