//! The LogQL conformance suite: every case of
//! `tests/logql_conformance/cases.txt` over the lines of
//! `tests/logql_conformance/fixtures.log`, compared with the answer Loki
//! gives (each case names where that answer comes from). Runs the real
//! query path (`query_range`, `query_instant`: parse, evaluate, render
//! JSON) over a real ring.

use std::collections::BTreeMap;

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{Read, ReadBatch, ReadStatus, Ring, RingConfig};
use ringtail::serve::loki::params::Direction;
use ringtail::serve::loki::query::{query_instant, query_range, InstantRequest, RangeRequest};
use ringtail::serve::loki::LokiLimits;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/logql_conformance");
const S: u64 = 1_000_000_000;

fn unescape(line: &str) -> String {
    line.replace("\\x1b", "\u{1b}")
}

/// The ring with every fixture line, and the times of the first and last.
fn ring() -> (Ring, u64, u64) {
    let ring = Ring::open(&RingConfig::new(1024)).unwrap();
    let text = std::fs::read_to_string(format!("{DIR}/fixtures.log")).unwrap();
    let mut handles = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (source, msg) = line.split_once('\t').expect("source<TAB>line");
        let h = handles.entry(source.to_string()).or_insert_with(|| {
            ring.origin(Origin::new(source).with_label("job", "conformance"))
                .unwrap()
        });
        ring.append(h, Flags::default(), unescape(msg).as_bytes());
    }
    let mut times = Vec::new();
    let mut batch = ReadBatch::new();
    let mut c = ring.snapshot().cursor(ringtail::ring::All);
    while c.read(&mut batch, 1000) == ReadStatus::More {
        for r in batch.iter() {
            if let Read::Entry(e) = r {
                times.push(e.time);
            }
        }
    }
    let (first, last) = (times[0], *times.last().unwrap());
    (ring, first, last)
}

/// `{a="1", b="2"}` from a JSON object, keys sorted.
fn labels(v: &Value) -> String {
    let map: BTreeMap<&String, &Value> = v.as_object().unwrap().iter().collect();
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                serde_json::to_string(v.as_str().unwrap()).unwrap()
            )
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

struct Case {
    name: String,
    kind: String,
    query: String,
    expected: Vec<String>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{DIR}/cases.txt")).unwrap();
    let mut out: Vec<Case> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            out.push(Case {
                name: name.to_string(),
                kind: String::new(),
                query: String::new(),
                expected: Vec::new(),
            });
            continue;
        }
        let Some(case) = out.last_mut() else { continue };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if case.query.is_empty() {
            let (kind, query) = line.split_once(": ").expect("kind: query");
            assert!(
                matches!(kind, "logs" | "vector" | "error"),
                "{}: {kind}",
                case.name
            );
            case.kind = kind.to_string();
            case.query = query.to_string();
        } else {
            case.expected.push(unescape(line));
        }
    }
    out
}

fn answer(ring: &Ring, first: u64, last: u64, case: &Case) -> Result<Vec<String>, String> {
    let limits = LokiLimits::default();
    match case.kind.as_str() {
        "logs" => {
            let req = RangeRequest {
                query: case.query.clone(),
                start: first - S,
                end: last + S,
                step: None,
                limit: 1000,
                direction: Direction::Forward,
            };
            let body = query_range(ring, &req, &limits).map_err(|e| e.msg)?;
            let v: Value = serde_json::from_slice(&body).unwrap();
            let mut entries: Vec<(u64, String)> = Vec::new();
            for s in v["data"]["result"].as_array().unwrap() {
                for e in s["values"].as_array().unwrap() {
                    let t: u64 = e[0].as_str().unwrap().parse().unwrap();
                    entries.push((
                        t,
                        format!("{} {}", labels(&s["stream"]), e[1].as_str().unwrap()),
                    ));
                }
            }
            entries.sort_by_key(|(t, _)| *t);
            Ok(entries.into_iter().map(|(_, l)| l).collect())
        }
        _ => {
            let req = InstantRequest {
                query: case.query.clone(),
                time: last + S,
                limit: 100,
                direction: Direction::Backward,
            };
            let body = query_instant(ring, &req, &limits).map_err(|e| e.msg)?;
            let v: Value = serde_json::from_slice(&body).unwrap();
            Ok(v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        labels(&s["metric"]),
                        s["value"][1].as_str().unwrap()
                    )
                })
                .collect())
        }
    }
}

#[test]
fn loki_answers() {
    let (ring, first, last) = ring();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = answer(&ring, first, last, case);
        let ok = match (&got, case.kind.as_str()) {
            (Err(msg), "error") => msg.contains(&case.expected[0]),
            (Ok(lines), "logs" | "vector") => *lines == case.expected,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "### {}\n{}: {}\nwant:\n  {}\ngot:\n  {}",
                case.name,
                case.kind,
                case.query,
                case.expected.join("\n  "),
                match &got {
                    Ok(lines) => lines.join("\n  "),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Loki:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
