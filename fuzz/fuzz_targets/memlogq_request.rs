//! Fuzzes the query socket's JSON request parser, the only code that reads
//! a client's free-form bytes.
//!
//! Checked: it never panics, whatever the bytes; an accepted request's
//! filter can be applied to entries; a request that parses as the wire
//! struct and is accepted is accepted again, the same, after a round trip
//! through the client's serialisation; errors render as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::entry::{EntryRef, Flags, Origin, Stream};
use ringtail::ring::Select;
use ringtail::serve::memlogq::{parse_request_at, JsonRequest};

/// A fixed "now" (2018-07-08), so relative times are reproducible.
const NOW: u64 = 1_531_041_413_000_000_000;

fuzz_target!(|data: &[u8]| {
    match parse_request_at(data, NOW) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(req) => {
            let origin = Origin::new("web.out").with_label("app", "nginx");
            for (i, msg) in [&b"error code=42"[..], b"", b"\xff\xfe ok"]
                .iter()
                .enumerate()
            {
                let e = EntryRef {
                    seq: i as u64 + 1,
                    time: NOW - 1_000_000_000 * i as u64,
                    source_time: ringtail::entry::SourceTime::None,
                    origin: &origin,
                    flags: Flags::default().with_stream(Some(Stream::Stderr)),
                    msg,
                };
                let _ = req.filter.origin(&origin) && req.filter.entry(&e);
            }
            if let Ok(wire) = serde_json::from_slice::<JsonRequest>(data) {
                let again = serde_json::to_vec(&wire).expect("a request serialises");
                let back =
                    parse_request_at(&again, NOW).expect("a re-serialised request is accepted");
                assert_eq!(back.mode, req.mode);
                assert_eq!(back.format, req.format);
                assert_eq!(back.limit, req.limit);
                assert_eq!(back.tail, req.tail);
                assert_eq!(back.since_seq, req.since_seq);
                assert_eq!(back.filter.since_ns(), req.filter.since_ns());
                assert_eq!(back.filter.until_ns(), req.filter.until_ns());
            }
        }
    }
});
