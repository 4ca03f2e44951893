//! Fuzzes `Filter::from_pairs`, which the HTTP and Loki front ends feed
//! with query parameters straight from the URL.
//!
//! Input: lines of `key=value` (a line without `=` is a key with an empty
//! value); byte strings are taken as UTF-8 with invalid bytes replaced, as
//! a URL decoder would hand them over.
//!
//! Checked: no panic; an accepted filter has since < until and can be
//! applied to entries; an error names a parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::entry::{EntryRef, Flags, Origin, Stream};
use ringtail::filter::{FilterBuilder, FilterError};
use ringtail::ring::Select;

const NOW: u64 = 1_531_041_413_000_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .split('\n')
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    let mut b = FilterBuilder::new().now(NOW);
    let mut result = Ok(());
    for (k, v) in &pairs {
        match b.param(k, v) {
            Ok(true) => {}
            Ok(false) => {
                result = Err(FilterError::Unknown {
                    param: k.to_string(),
                });
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let built = result.and_then(|()| b.build());
    match built {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains('`'), "errors name the parameter: {msg}");
        }
        Ok(f) => {
            if let (Some(s), Some(u)) = (f.since_ns(), f.until_ns()) {
                assert!(s < u);
            }
            // The source name and message come from the input too.
            let origin = Origin::new(pairs[0].1).with_label("app", pairs[0].0);
            let flags = Flags::default().with_stream(Some(Stream::Stdout));
            let e = EntryRef {
                seq: 5,
                time: NOW,
                source_time: ringtail::entry::SourceTime::None,
                origin: &origin,
                flags,
                msg: data,
            };
            let _ = f.origin(&origin) && f.entry(&e);
        }
    }
});
