//! Fuzzes the splitting of a byte stream of /dev/kmsg records (a FIFO or a
//! file fed to `--kmsg PATH`) into records.
//!
//! Checked: no panic; the same records whatever the cuts of the stream;
//! no record longer than MAX_RECORD; with every record short, nothing is
//! lost or added (the records put together are the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sources::kmsg::source::{RecordSplitter, MAX_RECORD};

fn split(data: &[u8], cut: usize) -> Vec<Vec<u8>> {
    let mut s = RecordSplitter::default();
    let mut out = Vec::new();
    for chunk in data.chunks(cut.max(1)) {
        s.feed(chunk, &mut |r| out.push(r.to_vec()));
    }
    s.finish(&mut |r| out.push(r.to_vec()));
    out
}

fuzz_target!(|input: (u8, &[u8])| {
    let (cut, data) = input;
    let whole = split(data, data.len());
    assert_eq!(whole, split(data, usize::from(cut)));
    assert!(whole.iter().all(|r| r.len() <= MAX_RECORD && !r.is_empty()));
    if data.len() <= MAX_RECORD {
        assert_eq!(whole.concat(), data);
    }
});
