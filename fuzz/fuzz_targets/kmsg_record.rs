//! Fuzzes the /dev/kmsg record parser and the `\xNN` unescaper.
//!
//! Checked: no panic; unescaping never grows its input and borrows when
//! there is no valid escape; a parsed record keeps at most MAX_FIELDS
//! fields, each key borrowed from the input.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use ringtail::sources::kmsg::record::{parse_record, unescape, MAX_FIELDS};

fuzz_target!(|data: &[u8]| {
    let u = unescape(data);
    assert!(u.len() <= data.len());
    if let Cow::Owned(v) = &u {
        assert!(v.len() < data.len(), "an owned result unescaped something");
    }
    if let Ok(r) = parse_record(data) {
        assert!(r.fields.len() <= MAX_FIELDS);
        assert!(r.text.len() <= data.len());
        let range = data.as_ptr_range();
        for (k, v) in &r.fields {
            assert!(range.contains(&k.as_ptr()));
            assert!(!k.is_empty() && v.len() <= data.len());
        }
        assert!(r.priority.code() <= 0x7ff);
    }
});
