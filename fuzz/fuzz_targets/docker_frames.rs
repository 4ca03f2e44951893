//! Fuzzes Docker's FIFO framing and the partial joiner: a stream cut into
//! arbitrary chunks, then the decoded entries joined into lines.
//!
//! Input layout: byte 0 picks the frame cap (bits 0-5: 0..=63 bytes, or
//! the default cap when 63) and the mode (bit 7): raw bytes, or a script of
//! records that builds a stream of real frames mixed with garbage and
//! oversized frames, so both the decoder's every branch and its answers
//! can be checked. Byte 1 picks the line limit (1..=64) and the long-line
//! mode (bit 7); bytes 2..10 are the chunk sizes (cycled); the rest is the
//! stream or the script.
//!
//! Checked: the events do not depend on the chunking; at most one frame is
//! held (`4 + cap` bytes); counts add up; every decoded entry re-encodes
//! and decodes to itself; with a script, the events are exactly the ones
//! the script made; the joiner's pieces are within the limit, it holds at
//! most one limit per stream, and in split mode gives back every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sources::docker::frame::{
    encode_frame, Decoded, FrameDecoder, LogEntry, PartialLogEntryMetadata, DEFAULT_MAX_FRAME_LEN,
    LEN_PREFIX,
};
use ringtail::sources::docker::partial::PartialJoiner;
use ringtail::sources::LongLines;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Entry(LogEntry),
    Oversized(u32),
    Garbage(u32),
}

fn decode(
    stream: &[u8],
    cap: usize,
    chunks: &[usize],
) -> (Vec<Ev>, Result<(), usize>, FrameDecoder) {
    let mut d = FrameDecoder::new(cap);
    let mut evs = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].min(rest.len());
        d.feed(&rest[..n], |ev| {
            evs.push(match ev {
                Decoded::Entry(e) => Ev::Entry(e.clone()),
                Decoded::Oversized { len } => Ev::Oversized(len),
                Decoded::Garbage { len, .. } => Ev::Garbage(len),
            })
        });
        assert!(
            d.pending_bytes() <= LEN_PREFIX + cap,
            "more than one frame held"
        );
        rest = &rest[n..];
        i += 1;
    }
    let end = d.finish().map_err(|e| e.pending_bytes());
    (evs, end, d)
}

/// Builds a stream from a script; returns it and the events it must give.
fn script(data: &[u8], cap: usize) -> (Vec<u8>, Vec<Ev>) {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut it = data.chunks(4);
    while let Some(rec) = it.next() {
        let kind = rec[0];
        let len = rec.get(1).copied().unwrap_or(0) as usize;
        let body: Vec<u8> = it.next().map(|c| c.to_vec()).unwrap_or_default();
        let mut line = body.repeat(len / body.len().max(1) + 1);
        line.truncate(len);
        match kind % 5 {
            0..=2 => {
                let source = if kind & 8 == 0 { "stdout" } else { "stderr" };
                let meta = (kind % 5 == 2).then(|| PartialLogEntryMetadata {
                    last: kind & 16 != 0,
                    id: if kind & 32 == 0 {
                        "a".into()
                    } else {
                        "b".into()
                    },
                    ordinal: i32::from(rec.get(2).copied().unwrap_or(1)),
                });
                let e = LogEntry {
                    source: source.into(),
                    time_nano: i64::from(rec.get(3).copied().unwrap_or(0)) << 40,
                    line,
                    partial: kind % 5 != 0,
                    partial_log_metadata: meta,
                };
                let start = stream.len();
                encode_frame(&mut stream, &e);
                let flen = (stream.len() - start - LEN_PREFIX) as u32;
                want.push(if flen as usize > cap {
                    Ev::Oversized(flen)
                } else {
                    Ev::Entry(e)
                });
            }
            3 => {
                // Not a LogEntry: a field with wire type 7.
                let mut g = vec![0x0f];
                g.extend_from_slice(&line);
                stream.extend_from_slice(&(g.len() as u32).to_be_bytes());
                stream.extend_from_slice(&g);
                want.push(if g.len() > cap {
                    Ev::Oversized(g.len() as u32)
                } else {
                    Ev::Garbage(g.len() as u32)
                });
            }
            _ => {
                // Over any small cap.
                let n = 64 + len;
                stream.extend_from_slice(&(n as u32).to_be_bytes());
                stream.extend(std::iter::repeat_n(0xffu8, n));
                want.push(if n > cap {
                    Ev::Oversized(n as u32)
                } else {
                    Ev::Garbage(n as u32)
                });
            }
        }
    }
    (stream, want)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let cap = match data[0] & 63 {
        63 => DEFAULT_MAX_FRAME_LEN,
        c => c as usize,
    };
    let scripted = data[0] & 128 != 0;
    let max_line = 1 + (data[1] & 63) as usize;
    let mode = if data[1] & 128 == 0 {
        LongLines::Split
    } else {
        LongLines::Truncate
    };
    let chunks: Vec<usize> = data[2..10].iter().map(|&b| 1 + b as usize).collect();
    let (stream, want) = if scripted {
        let (s, w) = script(&data[10..], cap);
        (s, Some(w))
    } else {
        (data[10..].to_vec(), None)
    };

    let (chunked, end, d) = decode(&stream, cap, &chunks);
    let (whole, whole_end, _) = decode(&stream, cap, &[usize::MAX]);
    assert_eq!(chunked, whole, "the events depend on the chunking");
    assert_eq!(end, whole_end);
    if let Some(want) = want {
        assert_eq!(
            chunked, want,
            "the script's frames were not decoded as made"
        );
        assert_eq!(end, Ok(()));
    }
    let s = d.stats();
    assert_eq!(
        (s.entries + s.oversized + s.garbage) as usize,
        chunked.len(),
        "counts do not add up"
    );

    let mut entries = Vec::new();
    for ev in &chunked {
        if let Ev::Entry(e) = ev {
            let mut frame = Vec::new();
            encode_frame(&mut frame, e);
            let (again, end, _) = decode(&frame, frame.len(), &[usize::MAX]);
            assert_eq!(again, [ev.clone()], "re-encoding changed an entry");
            assert_eq!(end, Ok(()));
            entries.push(e.clone());
        }
    }

    let mut joiner = PartialJoiner::new(max_line, mode);
    let mut out_bytes = 0usize;
    let mut pieces = 0usize;
    for e in &entries {
        joiner.push(e, |p| {
            assert!(p.msg.len() <= max_line, "a piece over the limit");
            assert!(!(p.flags.partial() && p.flags.truncated()));
            out_bytes += p.msg.len();
            pieces += 1;
        });
        assert!(
            joiner.pending_bytes() <= 3 * max_line,
            "the joiner holds too much"
        );
    }
    joiner.finish(|p| {
        assert!(p.msg.len() <= max_line);
        out_bytes += p.msg.len();
        pieces += 1;
    });
    assert_eq!(joiner.pending_bytes(), 0);
    let in_bytes: usize = entries.iter().map(|e| e.line.len()).sum();
    let js = joiner.stats();
    match mode {
        LongLines::Split => assert_eq!(out_bytes, in_bytes, "split mode lost bytes"),
        LongLines::Truncate => {
            assert_eq!(
                out_bytes as u64 + js.truncated_bytes,
                in_bytes as u64,
                "bytes unaccounted for"
            )
        }
    }
    assert!(pieces as u64 >= js.lines, "a line gave no piece");
});
