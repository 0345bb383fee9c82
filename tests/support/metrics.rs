//! Scraping `/metrics` (the Prometheus text exposition) and `/readyz` on the admin listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use super::*;

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The Prometheus text exposition as samples, and its `# TYPE` lines as (family, type).
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
    pub types: Vec<(String, String)>,
}

pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim().to_owned(), value);
        rest = after[end..].trim_start_matches(',').trim();
    }
    out
}

pub fn parse_exposition(text: &str) -> Exposition {
    let mut samples = Vec::new();
    let mut types = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("# TYPE name kind");
            types.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Exposition {
        text: text.to_owned(),
        samples,
        types,
    }
}

impl Exposition {
    /// The value of the series with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut hits = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want);
        let hit = hits.next().map(|s| s.value);
        assert!(hits.next().is_none(), "{name}{want:?} appears twice");
        hit
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

pub async fn scrape(admin: SocketAddr) -> Exposition {
    let a = plain_get(admin, "/metrics").await.expect("GET /metrics");
    assert_eq!(a.status, StatusCode::OK);
    parse_exposition(&String::from_utf8_lossy(&a.body))
}

pub async fn readyz(admin: SocketAddr) -> (u16, Value) {
    let a = plain_get(admin, "/readyz").await.expect("GET /readyz");
    assert_eq!(a.header("content-type"), Some("application/json"));
    (a.status.as_u16(), a.json())
}

pub async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(admin).await;
        if status == 200 {
            assert_eq!(body, json!({"status": "ready"}));
            return;
        }
        assert!(Instant::now() < deadline, "/readyz: {status} {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
