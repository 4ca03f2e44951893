//! Fuzzes the line splitter: arbitrary bytes, cut into arbitrary chunks,
//! with a line-length limit taken from the input.
//!
//! Input layout: byte 0 picks the limit (1..=64, or 1024 when it is 0xff),
//! byte 1 the long-line mode (low bit) and how often the read buffer is
//! released between chunks, bytes 2..10 the chunk sizes (cycled); the rest
//! is the stream.
//!
//! Checked: no entry is longer than the limit; in split mode the entries,
//! with `\n` put back after every non-partial one that ended a line,
//! give back the stream exactly; the entries do not depend on the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::entry::Flags;
use ringtail::sources::lines::LineSplitter;
use ringtail::sources::LongLines;

fn run(
    stream: &[u8],
    max: usize,
    mode: LongLines,
    chunks: &[usize],
    release_every: usize,
) -> Vec<(Vec<u8>, Flags, bool)> {
    let mut s = LineSplitter::new(max, mode, Flags::default());
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let buf = s.read_buf();
        let n = chunks[i % chunks.len()].min(buf.len()).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        out.extend(s.commit(n).iter().map(|(m, f)| (m.to_vec(), f, false)));
        i += 1;
        if release_every > 0 && i % release_every == 0 {
            s.release();
        }
    }
    // The final entry at end of file did not end with a newline.
    out.extend(s.finish().iter().map(|(m, f)| (m.to_vec(), f, true)));
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let max = if data[0] == 0xff {
        1024
    } else {
        1 + (data[0] as usize % 64)
    };
    let mode = if data[1] & 1 == 0 {
        LongLines::Split
    } else {
        LongLines::Truncate
    };
    let release_every = ((data[1] >> 1) % 4) as usize;
    let chunks: Vec<usize> = data[2..10].iter().map(|&b| 1 + b as usize).collect();
    let stream = &data[10..];

    let chunked = run(stream, max, mode, &chunks, release_every);
    let whole = run(stream, max, mode, &[usize::MAX], 0);
    assert_eq!(chunked, whole, "the entries depend on the chunking");

    for (msg, flags, _) in &chunked {
        assert!(
            msg.len() <= max,
            "an entry of {} bytes exceeds the limit {max}",
            msg.len()
        );
        assert!(!(flags.partial() && flags.truncated()));
    }
    if mode == LongLines::Split {
        let mut joined = Vec::with_capacity(stream.len());
        for (msg, flags, at_eof) in &chunked {
            assert!(!flags.truncated(), "split mode never truncates");
            joined.extend_from_slice(msg);
            if !flags.partial() && !at_eof {
                joined.push(b'\n');
            }
        }
        assert_eq!(joined, stream, "split mode lost or changed bytes");
    } else {
        // Truncate mode: one entry per line, its first `max` bytes.
        let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        assert_eq!(
            chunked.len(),
            lines.len(),
            "truncate mode gives one entry per line"
        );
        for ((msg, flags, _), line) in chunked.iter().zip(&lines) {
            assert_eq!(&msg[..], &line[..line.len().min(max)]);
            assert_eq!(flags.truncated(), line.len() > max);
        }
    }
});
