//! Fuzzes the HTTP API's query-string parsing
//! (`ringtail::serve::http::params`): what `GET /api/v1/entries`,
//! `GET /api/v1/follow` and `POST /api/v1/entries` do with the raw query
//! of a URL.
//!
//! Input: the query string (what follows `?`). A URL's query is ASCII, but
//! the parser takes any `&str`, so invalid UTF-8 is replaced and fed too,
//! and percent-escapes may decode to any bytes.
//!
//! Checked: no panic; an error's text names what was wrong (a parameter
//! in backticks, or the header); an accepted request is consistent: a
//! limit is at least 1, `after < before - 1`, since < until, and the
//! filter can be applied to an entry built from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::entry::{EntryRef, Flags, Origin, Stream};
use ringtail::ring::Select;
use ringtail::serve::http::params::{parse_entries, parse_follow, parse_ingest};

const NOW: u64 = 1_531_041_413_000_000_000;

fn named(msg: &str) {
    assert!(msg.contains('`'), "errors name the parameter: {msg}");
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let origin = Origin::new(query.get(..8).unwrap_or("src")).with_label("app", "x");
    let entry = EntryRef {
        seq: 5,
        time: NOW,
        source_time: ringtail::entry::SourceTime::None,
        origin: &origin,
        flags: Flags::default().with_stream(Some(Stream::Stderr)),
        msg: data,
    };
    match parse_entries(&query, NOW) {
        Err(e) => named(&e.to_string()),
        Ok(q) => {
            assert!(q.limit.is_none_or(|l| l >= 1));
            if let (Some(a), Some(b)) = (q.after, q.before) {
                assert!(a.saturating_add(1) < b);
            }
            if let (Some(s), Some(u)) = (q.filter.since_ns(), q.filter.until_ns()) {
                assert!(s < u);
            }
            let _ = q.filter.origin(&origin) && q.filter.entry(&entry);
        }
    }
    match parse_follow(&query, NOW) {
        Err(e) => named(&e.to_string()),
        Ok(q) => {
            assert!(q.limit.is_none_or(|l| l >= 1));
            assert!(q.filter.until_ns().is_none(), "a follow has no end time");
            let _ = q.filter.origin(&origin) && q.filter.entry(&entry);
        }
    }
    match parse_ingest(&query) {
        Err(e) => named(&e.to_string()),
        Ok(q) => {
            assert!(q.level.is_none_or(|l| l.severity() <= 7));
            for (k, _) in &q.labels {
                assert!(!k.is_empty());
            }
        }
    }
});
