//! Fuzzes Loki push bodies (JSON, gzip'd JSON, snappy protobuf) and their
//! ingestion, which take bytes straight from any HTTP client.
//!
//! Input: the first byte picks the path, the rest is the body:
//! 0 JSON, 1 gzip'd JSON as given, 2 snappy protobuf as given, 3 protobuf
//! that this target compresses (so the fuzzer reaches prost and the label
//! parser), 4 JSON that this target gzips.
//!
//! Checked: no panic; refusals are 400, 413 or 415 (429 when the small
//! origin table is full); an accepted body is appended entirely, each line
//! split into pieces of at most the line limit.
#![no_main]

use std::io::Write as _;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use ringtail::ring::{Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::sources::{loki_push as push, IngestConfig, Pipeline};

const MAX: usize = 1 << 16;
/// The line limit pushes are stored under.
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
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let json = Some("application/json");
    let (content_type, encoding, body): (Option<&str>, Option<&str>, Vec<u8>) = match mode % 5 {
        0 => (json, None, rest.to_vec()),
        1 => (json, Some("gzip"), rest.to_vec()),
        2 => (None, None, rest.to_vec()),
        3 => (
            Some("application/x-protobuf"),
            None,
            snap::raw::Encoder::new()
                .compress_vec(rest)
                .expect("snappy"),
        ),
        _ => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(rest).expect("gzip");
            (json, Some("gzip"), gz.finish().expect("gzip"))
        }
    };
    // The whole push, decoded at once (the reference), and the daemon's
    // two-pass streaming ingest of the same body must agree.
    let streams = match push::decode(content_type, encoding, &body, MAX) {
        Ok(s) => s,
        Err(e) => {
            assert!(matches!(e.status.as_u16(), 400 | 413 | 415), "{e}");
            return;
        }
    };
    let prepared = push::prepare(content_type, encoding, &body, MAX, |_| Ok(()))
        .expect("prepare accepts what decode accepted");
    let pipeline = &*PIPELINE;
    let ring = pipeline.ring();
    let pieces: u64 = streams
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|(_, l)| l.len().div_ceil(LINE).max(1) as u64)
        .sum();
    let before = ring.published_seq();
    match push::ingest(pipeline, &prepared) {
        Ok(n) => {
            assert_eq!(n, pieces);
            assert_eq!(ring.published_seq() - before, n);
        }
        Err(e) => assert!(matches!(e.status.as_u16(), 400 | 429), "{e}"),
    }
});
