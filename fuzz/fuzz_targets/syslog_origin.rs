//! Fuzzes what a syslog message becomes: parsing, then the entry's origin
//! (source name and labels) built from the parsed fields.
//!
//! Checked: no panic; every label key is one the ring takes; no label value
//! is longer than MAX_LABEL_VALUE; the source name is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sources::syslog::ingest::{build_origin, Sender, MAX_LABEL_VALUE};
use ringtail::sources::syslog::parse::{parse, Hostnames, ParseOptions};

fuzz_target!(|data: &[u8]| {
    for hostnames in [Hostnames::Local, Hostnames::Expected] {
        let options = ParseOptions {
            hostnames,
            time_zone: jiff::tz::TimeZone::UTC,
        };
        let m = parse(data, &options, 1_796_000_000_000_000_000);
        for sender in [Sender::Local(None), Sender::Peer([10, 0, 0, 1].into())] {
            let o = build_origin(&m, sender);
            assert!(!o.source.is_empty());
            for (k, v) in o.labels() {
                assert!(ringtail::filter::valid_label_key(k), "{k:?}");
                assert!(v.len() <= MAX_LABEL_VALUE, "{k}: {} bytes", v.len());
            }
        }
    }
});
