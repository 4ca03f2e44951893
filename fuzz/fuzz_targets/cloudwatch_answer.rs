//! Fuzzes the reading of CloudWatch Logs answers: PutLogEvents results
//! (`rejectedLogEventsInfo`) and error bodies, which come from whatever
//! answers at the endpoint.
//!
//! Input: the first two bytes are the request's event count, the third
//! picks the HTTP status, the rest is the body.
//!
//! Checked: no panic; refused events never exceed the request's events;
//! every answer classifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sinks::cloudwatch::api::{classify_answer, parse_error, parse_put_answer};
use ringtail::sinks::http::HttpAnswer;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let events = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let status = [200u16, 400, 403, 429, 500, 503][usize::from(data[2]) % 6];
    let body = &data[3..];
    if let Ok(r) = parse_put_answer(body, events) {
        assert!(r.total() <= events as u64);
    }
    let text = String::from_utf8_lossy(body);
    let _ = parse_error(status, Some(&text), body);
    let answer = HttpAnswer {
        status,
        headers: http::HeaderMap::new(),
        body: body.to_vec(),
        body_truncated: false,
    };
    let _ = classify_answer(&answer, events);
});
