//! Fuzzes `POST /api/v1/entries` bodies (`ringtail::sources::http_ingest`),
//! which take bytes straight from any HTTP client: NDJSON objects and text
//! lines, each stored in two passes (check everything, then store in
//! batches).
//!
//! Input: the first byte picks the body kind (even: NDJSON, odd: text with
//! `?source=fuzz`), the rest is the body.
//!
//! Checked: no panic; a refusal stores nothing (all or nothing); an
//! accepted body stores every line, `entries >= lines`, with seqs that
//! match what the ring published; text bodies store exactly one entry per
//! line, blank lines included, when lines fit the limit.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use ringtail::ring::{Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::sources::http_ingest::{ndjson, text, IngestError, IngestQuery};
use ringtail::sources::{IngestConfig, Pipeline};

/// The line limit entries are stored under.
const LINE: usize = 64;

static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let mut config = RingConfig::new(4096);
    config.max_entry_len = 1024;
    config.max_origins = 32;
    let ring = Arc::new(Ring::open(&config).expect("ring"));
    let selflog = SelfLog::new(ring.clone()).expect("self log");
    let ingest = IngestConfig {
        max_line_len: LINE,
        ..IngestConfig::default()
    };
    Pipeline::new(ring, selflog, ingest)
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let pipeline = &*PIPELINE;
    let ring = pipeline.ring();
    let before = ring.published_seq();
    let result = if mode % 2 == 0 {
        ndjson(pipeline, &IngestQuery::default(), body)
    } else {
        let q = IngestQuery {
            source: Some("fuzz".into()),
            ..IngestQuery::default()
        };
        text(pipeline, &q, body)
    };
    let stored = ring.published_seq() - before;
    match result {
        Ok(done) => {
            assert!(done.entries >= done.lines, "{done:?}");
            assert_eq!(stored, done.entries, "{done:?}");
            if let Some((first, last)) = done.seqs {
                assert!(first >= before && last < ring.published_seq() && first <= last);
                assert_eq!(last - first + 1, done.entries);
            } else {
                assert_eq!(done.entries, 0);
            }
            if mode % 2 == 1 {
                // Every line counts, blank ones too (as on the ingest
                // socket); an unterminated last line is a line.
                let newlines = body.iter().filter(|&&b| b == b'\n').count();
                let unterminated = !body.is_empty() && !body.ends_with(b"\n");
                let lines = (newlines + usize::from(unterminated)) as u64;
                let longest = body.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
                if longest < LINE {
                    assert_eq!(done.lines, lines, "{done:?}");
                    assert_eq!(done.entries, lines, "{done:?}");
                }
            }
        }
        Err(IngestError::Invalid(msg)) => {
            assert!(!msg.is_empty());
            assert_eq!(stored, 0, "a refused body stores nothing: {msg}");
        }
        Err(IngestError::Unavailable(msg)) => {
            // The small origin table filled up; what was checked before is
            // not stored either.
            assert_eq!(stored, 0, "{msg}");
        }
    }
});
