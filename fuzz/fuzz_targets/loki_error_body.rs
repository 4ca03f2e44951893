//! Fuzzes the reading of Loki's error answers (a 400's body lists ignored
//! entries), which come from whatever answers at the push URL.
//!
//! Input: bytes taken as the body (lossily UTF-8, as the forwarder does),
//! with the batch's line count from the first two bytes.
//!
//! Checked: no panic; counts never exceed the batch's lines; a body with
//! no known reason counts the whole batch as refused; every status
//! classifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sinks::loki::answer::{classify_status, count_rejections, parse_error_body, BatchShape};

struct Shape(u64);

impl BatchShape for Shape {
    fn lines(&self) -> u64 {
        self.0
    }
    fn stream_lines(&self, labels: &str) -> Option<u64> {
        (labels.len() % 3 == 0).then_some(self.0 / 2)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let lines = u64::from(u16::from_le_bytes([data[0], data[1]]));
    let body = &data[2..];
    let text = String::from_utf8_lossy(body);
    let groups = parse_error_body(&text);
    assert!(groups.len() <= text.len() + 1);
    let counts = count_rejections(&text, &Shape(lines));
    assert!(counts.total() <= lines, "{} > {lines}", counts.total());
    let _ = counts.to_string();
    for status in [200, 400, 413, 422, 429, 500] {
        let _ = classify_status(status, None, body, &Shape(lines));
    }
});
