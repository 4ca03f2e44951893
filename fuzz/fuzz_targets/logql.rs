//! Fuzzes the whole LogQL language: the parser and the evaluator, which
//! read query text straight from HTTP requests (`query`, `match[]`), over
//! a ring of JSON, logfmt, plain and malformed lines, so that every
//! parser, filter, template and aggregation runs on what it accepts.
//!
//! Input: the query text (invalid UTF-8 replaced, as a URL decoder would).
//!
//! Checked: no panic and no unbounded work on any text; a refused query
//! has an error with a position inside the text; an accepted one
//! evaluates over the ring as a range, an instant and a volume query
//! without panicking, and every answer is valid JSON or a 4xx error.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{Ring, RingConfig};
use ringtail::serve::loki::logql;
use ringtail::serve::loki::params::Direction;
use ringtail::serve::loki::index::{self, Selection, VolumeRequest};
use ringtail::serve::loki::query::{self, InstantRequest, RangeRequest};
use ringtail::serve::loki::LokiLimits;

const S: u64 = 1_000_000_000;

static RING: LazyLock<(Arc<Ring>, u64)> = LazyLock::new(|| {
    let ring = Arc::new(Ring::open(&RingConfig::new(256)).expect("ring"));
    let web = ring
        .origin(Origin::new("web").with_label("app", "nginx"))
        .expect("origin");
    let db = ring.origin(Origin::new("db")).expect("origin");
    for i in 0..200u32 {
        let (h, flags) = if i % 3 == 0 {
            (&db, Flags::default().with_stream(Some(Stream::Stderr)).with_level(Some(ringtail::entry::Level::Error)))
        } else {
            (&web, Flags::default().with_stream(Some(Stream::Stdout)))
        };
        let mut line = match i % 5 {
            0 => format!(r#"{{"level":"info","status":{},"latency_ms":{}.5,"req":{{"path":"/x{}"}},"tags":["a"]}}"#, 200 + i % 3 * 100, i, i % 7),
            1 => format!("level=warn status={} took={}ms size={}KB msg=\"line {i}\"", 200 + i % 4, i, i % 9),
            2 => format!("10.0.0.{i} - - \"GET /x{} HTTP/1.1\" {} {}", i % 7, 200 + i % 2, i),
            3 => format!("\u{1b}[31m{{\"_entry\":\"packed {i}\",\"k\":\"v\"}} \u{e9}"),
            _ => format!("line {i} GET /x{} \u{e9}", i % 7),
        }
        .into_bytes();
        if i % 11 == 0 {
            line.push(0xff);
        }
        ring.append(h, flags, &line);
    }
    let now = ringtail::timefmt::now_ns();
    (ring, now)
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ring, now) = &*RING;
    let limits = LokiLimits {
        max_points: 50,
        ..LokiLimits::default()
    };
    match logql::parse(&text) {
        Err(e) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(e.line >= 1 && e.line <= lines.len(), "{e}");
            assert!(e.col >= 1 && e.col <= lines[e.line - 1].chars().count() + 1, "{e}");
            assert!(e.to_string().starts_with("parse error at "));
        }
        Ok(expr) => {
            let check = |r: Result<Vec<u8>, ringtail::serve::loki::LokiError>| match r {
                Ok(body) => {
                    serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
                }
                Err(e) => assert!(e.status.is_client_error(), "{e}"),
            };
            let range = RangeRequest {
                query: text.to_string(),
                start: now - 60 * S,
                end: now + 5 * S,
                step: Some(5 * S),
                limit: 50,
                direction: if data.len() % 2 == 0 {
                    Direction::Backward
                } else {
                    Direction::Forward
                },
            };
            check(query::query_range(ring, &range, &limits));
            let instant = InstantRequest {
                query: text.to_string(),
                time: now + S,
                limit: 50,
                direction: Direction::Backward,
            };
            check(query::query_instant(ring, &instant, &limits));
            if expr.is_log() {
                if let Ok(sel) = Selection::parse([text.as_ref()]) {
                    index::stream_stats(ring, &sel, 0, u64::MAX, &limits).expect("stats");
                }
                let volume = VolumeRequest {
                    query: text.to_string(),
                    start: now - 60 * S,
                    end: now + 5 * S,
                    step: Some(5 * S),
                    limit: 10,
                    target_labels: Vec::new(),
                    by_label_names: data.len() % 3 == 0,
                };
                check(index::volume(ring, &volume, &limits));
            }
        }
    }
    // The selector parser used by `series` and push labels.
    let _ = logql::parse_selector(&text, data.first().is_some_and(|b| b & 1 == 1));
});
