//! Fuzzes the RFC 6587 TCP framer: arbitrary bytes cut into arbitrary
//! chunks.
//!
//! Input layout: byte 0 picks `max_frame` (1..=64, or 65536 when it is
//! 0xff), byte 1 `max_count` (`max_frame` times 1..=16, or 2^60 when its
//! top bit is set), bytes 2..10 the chunk sizes (cycled); the rest is the
//! stream.
//!
//! Checked: the frames and counters do not depend on the chunking; no
//! frame is longer than `max_frame`; the buffer never holds or reserves
//! more than `max_frame` (or the 20 digits of a count); every frame is a
//! substring of the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sources::syslog::framing::{Frame, Framer, FramerConfig, FramerStats, Framing};

type Frames = Vec<(Vec<u8>, Framing)>;

fn run(stream: &[u8], config: FramerConfig, chunks: &[usize]) -> (Frames, FramerStats) {
    let mut f = Framer::new(config);
    let mut out = Vec::new();
    let mut push = |fr: Frame<'_>| out.push((fr.msg.to_vec(), fr.framing));
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].min(rest.len());
        f.feed(&rest[..n], &mut push);
        rest = &rest[n..];
        assert!(f.buffered() <= config.max_frame.max(20));
        assert!(f.capacity() <= config.max_frame.max(20));
        i += 1;
        if i % 5 == 0 {
            f.release_idle();
        }
    }
    f.finish(&mut push);
    (out, f.stats())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let max_frame = if data[0] == 0xff {
        65536
    } else {
        1 + (data[0] as usize % 64)
    };
    let max_count = if data[1] & 0x80 != 0 {
        1 << 60
    } else {
        max_frame as u64 * (1 + u64::from(data[1] % 16))
    };
    let config = FramerConfig {
        max_frame,
        max_count,
    };
    let chunks: Vec<usize> = data[2..10].iter().map(|&b| 1 + b as usize).collect();
    let stream = &data[10..];

    let chunked = run(stream, config, &chunks);
    let whole = run(stream, config, &[usize::MAX]);
    assert_eq!(chunked, whole, "the frames depend on the chunking");
    assert_eq!(whole.1.frames as usize, whole.0.len());
    for (msg, _) in &whole.0 {
        assert!(msg.len() <= max_frame);
        assert!(
            msg.is_empty() || stream.windows(msg.len()).any(|w| w == &msg[..]),
            "a frame that is not in the stream"
        );
    }
});
