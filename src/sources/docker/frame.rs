//! Docker's log stream framing: `[u32 big-endian length][protobuf LogEntry]`,
//! repeated, as dockerd writes it into a logging plugin's FIFO and as a
//! plugin answers `ReadLogs` (protocols.md section 4).
//!
//! [`LogEntry`] is Docker's `api/types/plugins/logdriver/entry.proto`,
//! derived with prost on hand-written structs (no `protoc` at build time).
//! Fields a newer daemon adds (such as `attrs = 6`) are skipped by prost.
//!
//! [`FrameDecoder`] is incremental: it is fed whatever a nonblocking read of
//! the FIFO returned, in chunks of any size, and promises, for any way the
//! stream is cut:
//! - the same [`Decoded`] events in the same order whatever the chunking;
//! - a frame longer than the cap (`max_frame_len`, default
//!   [`DEFAULT_MAX_FRAME_LEN`], the cap of Docker's `local` driver and of
//!   Loki's plugin) is skipped by its length without being buffered, reported
//!   once ([`Decoded::Oversized`]) and counted; the next frame is decoded
//!   normally, so the stream stays in sync;
//! - a frame whose bytes are not a `LogEntry` is reported
//!   ([`Decoded::Garbage`]), counted and skipped, again in sync: the length
//!   prefix, not the content, says where the next frame starts;
//! - at end of stream, [`FrameDecoder::finish`] reports a frame cut short
//!   ([`TruncatedFrame`], with how many bytes were pending) instead of
//!   parsing half a frame;
//! - memory is bounded: the decoder holds at most one unfinished frame
//!   (at most `4 + max_frame_len` bytes, allocated as its bytes arrive,
//!   not when its length prefix promises them), and gives a buffer that grew past
//!   [`KEEP_CAPACITY`] back once the frame is done, so an idle FIFO costs a
//!   few dozen bytes.
//!
//! Complete frames inside a chunk are decoded straight from the chunk; only
//! a frame split across reads is copied.
//!
//! Framing cannot survive a lying length prefix: a writer that is not
//! dockerd and puts random bytes on the FIFO makes the decoder skip (at
//! most 4 GiB) wherever those bytes say. dockerd itself never does that.
//!
//! The encoding side ([`encode_frame`], [`ReadLogsEncoder`]) writes the same
//! framing for `ReadLogs` answers.

use prost::Message as _;

use crate::entry::Stream;

/// The largest frame decoded by default, in bytes (the length prefix not
/// included): Docker's `local` driver and Loki's plugin use the same cap.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1_000_000;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// A buffer for a frame split across reads is given back once the frame is
/// done if it grew past this many bytes; smaller ones are kept for reuse.
pub const KEEP_CAPACITY: usize = 64 * 1024;

/// One log message as Docker frames it (`entry.proto`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    #[prost(string, tag = "1")]
    pub source: String,
    /// When dockerd read the line from the container, ns since the Unix
    /// epoch; every piece of a partial line carries the first piece's time.
    #[prost(int64, tag = "2")]
    pub time_nano: i64,
    /// The line without its `\n`; not assumed to be UTF-8.
    #[prost(bytes = "vec", tag = "3")]
    pub line: Vec<u8>,
    /// This is one piece of a line longer than dockerd's 16 KiB buffer (or
    /// the container's last output, which had no `\n`).
    #[prost(bool, tag = "4")]
    pub partial: bool,
    /// Which line and which piece (dockerd 18.06 and newer; older daemons
    /// send `partial` alone and end the line with a non-partial piece).
    #[prost(message, optional, tag = "5")]
    pub partial_log_metadata: Option<PartialLogEntryMetadata>,
}

/// Where a piece sits in its line (`PartialLogEntryMetadata`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartialLogEntryMetadata {
    /// This is the line's final piece.
    #[prost(bool, tag = "1")]
    pub last: bool,
    /// Random, the same for every piece of one line.
    #[prost(string, tag = "2")]
    pub id: String,
    /// 1 for the first piece, then counting up.
    #[prost(int32, tag = "3")]
    pub ordinal: i32,
}

impl LogEntry {
    /// The stream named by `source`, if it is `stdout` or `stderr`.
    pub fn stream(&self) -> Option<Stream> {
        Stream::parse(&self.source)
    }
}

/// What the decoder found in the stream, in stream order.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A well-formed entry (borrowed: the decoder reuses it).
    Entry(&'a LogEntry),
    /// A frame of `len` bytes, over the cap: skipped without reading it
    /// into memory. Reported when its length prefix is read.
    Oversized { len: u32 },
    /// A frame of `len` bytes that is not a `LogEntry`: skipped.
    Garbage { len: u32, error: prost::DecodeError },
}

/// Counts kept by a [`FrameDecoder`] over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Entries decoded.
    pub entries: u64,
    /// Frames over the cap, skipped.
    pub oversized: u64,
    /// Bytes of those frames (their prefixes not counted).
    pub oversized_bytes: u64,
    /// Frames that were not a `LogEntry`, skipped.
    pub garbage: u64,
    /// Streams that ended inside a frame ([`FrameDecoder::finish`]).
    pub truncated: u64,
}

/// The stream ended inside a frame: what was pending is dropped, not
/// parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TruncatedFrame {
    #[error(
        "the log stream ended {have} bytes into a {LEN_PREFIX}-byte frame length; those bytes were dropped"
    )]
    InPrefix { have: usize },
    #[error(
        "the log stream ended {have} bytes into a {len}-byte frame; the unfinished entry was dropped"
    )]
    InFrame { have: usize, len: u32 },
    #[error(
        "the log stream ended {missing} bytes before the end of an oversized {len}-byte frame being skipped"
    )]
    InSkippedFrame { len: u32, missing: u32 },
}

impl TruncatedFrame {
    /// How many bytes of the unfinished frame had arrived (prefix included).
    pub fn pending_bytes(&self) -> usize {
        match *self {
            TruncatedFrame::InPrefix { have } => have,
            TruncatedFrame::InFrame { have, .. } => have,
            TruncatedFrame::InSkippedFrame { len, missing } => {
                LEN_PREFIX + (len - missing) as usize
            }
        }
    }
}

/// The incremental decoder of one stream (see the module docs).
#[derive(Debug)]
pub struct FrameDecoder {
    /// Frames longer than this are skipped.
    max_frame_len: usize,
    /// The start of a frame (prefix included) whose end has not arrived.
    /// Empty between frames.
    carry: Vec<u8>,
    /// Bytes of an oversized frame still to discard.
    skip_left: u32,
    /// Length of the oversized frame being discarded.
    skip_len: u32,
    /// Reused for every entry, so steady decoding does not allocate.
    entry: LogEntry,
    stats: FrameStats,
}

impl FrameDecoder {
    /// A decoder that skips frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame_len,
            carry: Vec::new(),
            skip_left: 0,
            skip_len: 0,
            entry: LogEntry::default(),
            stats: FrameStats::default(),
        }
    }

    /// The cap this decoder applies.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Bytes of an unfinished frame held now.
    pub fn pending_bytes(&self) -> usize {
        self.carry.len()
    }

    /// Whether the stream is between frames (nothing pending, nothing being
    /// skipped).
    pub fn at_frame_boundary(&self) -> bool {
        self.carry.is_empty() && self.skip_left == 0
    }

    /// Bytes still to come before the stream is between frames again: 0
    /// between frames, else the rest of the prefix or of the frame (being
    /// decoded or skipped).
    pub fn bytes_to_boundary(&self) -> usize {
        if self.skip_left > 0 {
            self.skip_left as usize
        } else if self.carry.is_empty() {
            0
        } else if let Some(prefix) = self.carry.first_chunk::<LEN_PREFIX>() {
            (LEN_PREFIX + u32::from_be_bytes(*prefix) as usize).saturating_sub(self.carry.len())
        } else {
            LEN_PREFIX - self.carry.len()
        }
    }

    /// Decodes what `chunk` completes, calling `on` for each event in
    /// stream order; keeps an unfinished frame for the next call.
    pub fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(Decoded<'_>)) {
        let mut rest = chunk;
        loop {
            if self.skip_left > 0 {
                let n = (self.skip_left as usize).min(rest.len());
                self.skip_left -= n as u32;
                rest = &rest[n..];
                if self.skip_left > 0 {
                    return;
                }
            }
            if !self.carry.is_empty() {
                if !self.continue_carried(&mut rest, &mut on) {
                    return;
                }
                continue;
            }
            // Between frames: decode straight from the chunk.
            let Some(prefix) = rest.first_chunk::<LEN_PREFIX>() else {
                self.carry.extend_from_slice(rest);
                return;
            };
            let len = u32::from_be_bytes(*prefix);
            if len as usize > self.max_frame_len {
                rest = &rest[LEN_PREFIX..];
                self.start_skip(len, &mut on);
                continue;
            }
            let end = LEN_PREFIX + len as usize;
            if rest.len() < end {
                grow_toward(&mut self.carry, rest.len(), end);
                self.carry.extend_from_slice(rest);
                return;
            }
            decode_one(
                &mut self.entry,
                &mut self.stats,
                &rest[LEN_PREFIX..end],
                &mut on,
            );
            rest = &rest[end..];
        }
    }

    /// Moves bytes of `rest` into the carried frame; returns whether the
    /// frame is done (decoded, or found oversized) so the caller goes on.
    fn continue_carried(&mut self, rest: &mut &[u8], on: &mut impl FnMut(Decoded<'_>)) -> bool {
        if self.carry.len() < LEN_PREFIX {
            let n = (LEN_PREFIX - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..n]);
            *rest = &rest[n..];
            if self.carry.len() < LEN_PREFIX {
                return false;
            }
        }
        let prefix = self
            .carry
            .first_chunk::<LEN_PREFIX>()
            .expect("prefix is complete");
        let len = u32::from_be_bytes(*prefix);
        if len as usize > self.max_frame_len {
            self.carry.clear();
            self.start_skip(len, on);
            return true;
        }
        let end = LEN_PREFIX + len as usize;
        let n = (end - self.carry.len()).min(rest.len());
        grow_toward(&mut self.carry, n, end);
        self.carry.extend_from_slice(&rest[..n]);
        *rest = &rest[n..];
        if self.carry.len() < end {
            return false;
        }
        decode_one(
            &mut self.entry,
            &mut self.stats,
            &self.carry[LEN_PREFIX..],
            on,
        );
        self.carry.clear();
        if self.carry.capacity() > KEEP_CAPACITY {
            self.carry = Vec::new();
        }
        true
    }

    fn start_skip(&mut self, len: u32, on: &mut impl FnMut(Decoded<'_>)) {
        self.stats.oversized += 1;
        self.stats.oversized_bytes += u64::from(len);
        self.skip_left = len;
        self.skip_len = len;
        on(Decoded::Oversized { len });
    }

    /// Ends the stream: reports a frame cut short (and forgets it), so the
    /// decoder is ready for a new stream either way.
    pub fn finish(&mut self) -> Result<(), TruncatedFrame> {
        let cut = if self.skip_left > 0 {
            Some(TruncatedFrame::InSkippedFrame {
                len: self.skip_len,
                missing: self.skip_left,
            })
        } else if self.carry.is_empty() {
            None
        } else if self.carry.len() < LEN_PREFIX {
            Some(TruncatedFrame::InPrefix {
                have: self.carry.len(),
            })
        } else {
            let prefix = self.carry.first_chunk::<LEN_PREFIX>().expect("checked");
            Some(TruncatedFrame::InFrame {
                have: self.carry.len(),
                len: u32::from_be_bytes(*prefix),
            })
        };
        self.skip_left = 0;
        self.skip_len = 0;
        self.carry = Vec::new();
        match cut {
            Some(cut) => {
                self.stats.truncated += 1;
                Err(cut)
            }
            None => Ok(()),
        }
    }
}

/// Makes room for `more` bytes in the buffer of a frame of `end` bytes:
/// doubling, so a frame arriving in many reads is copied O(1) times per
/// byte, but never past `end`, and only as bytes arrive, so a length prefix
/// that promises a megabyte costs nothing until the megabyte comes.
fn grow_toward(carry: &mut Vec<u8>, more: usize, end: usize) {
    let need = carry.len() + more;
    if need > carry.capacity() {
        let target = need.max((carry.capacity() * 2).min(end));
        carry.reserve_exact(target - carry.len());
    }
}

/// Decodes one frame body into the reused entry and reports it.
fn decode_one(
    entry: &mut LogEntry,
    stats: &mut FrameStats,
    body: &[u8],
    on: &mut impl FnMut(Decoded<'_>),
) {
    entry.clear();
    match entry.merge(body) {
        Ok(()) => {
            stats.entries += 1;
            on(Decoded::Entry(entry));
        }
        Err(error) => {
            stats.garbage += 1;
            on(Decoded::Garbage {
                len: body.len() as u32,
                error,
            });
        }
    }
}

/// Appends `entry` as one frame.
pub fn encode_frame(out: &mut Vec<u8>, entry: &LogEntry) {
    let len = entry.encoded_len();
    out.reserve(LEN_PREFIX + len);
    // Entries come from the ring (at most its entry size) or from a
    // decoded frame, so the length always fits the u32 prefix.
    out.extend_from_slice(&(len as u32).to_be_bytes());
    entry.encode(out).expect("a Vec grows to take any message");
}

/// Writes `ReadLogs` answers: one frame per line, without partial metadata
/// (dockerd drops it and prints `line` verbatim, so the `\n` a terminal
/// expects is part of the line). Reuses one entry so that answering a
/// million lines does not allocate per line.
#[derive(Debug, Default)]
pub struct ReadLogsEncoder {
    scratch: LogEntry,
}

impl ReadLogsEncoder {
    pub fn new() -> ReadLogsEncoder {
        ReadLogsEncoder::default()
    }

    /// Appends one frame holding `line`, plus `\n` when `newline` (for the
    /// last piece of a line; a piece of a longer line goes without, so
    /// dockerd prints the pieces as one line).
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        stream: Option<Stream>,
        time_nano: i64,
        line: &[u8],
        newline: bool,
    ) {
        let e = &mut self.scratch;
        e.source.clear();
        e.source.push_str(stream.map_or("", Stream::as_str));
        e.time_nano = time_nano;
        e.line.clear();
        e.line.extend_from_slice(line);
        if newline {
            e.line.push(b'\n');
        }
        encode_frame(out, e);
        if e.line.capacity() > KEEP_CAPACITY {
            e.line = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, t: i64, line: &[u8]) -> LogEntry {
        LogEntry {
            source: source.into(),
            time_nano: t,
            line: line.to_vec(),
            ..Default::default()
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Entry(LogEntry),
        Oversized(u32),
        Garbage(u32),
    }

    fn decode_chunked(stream: &[u8], max: usize, chunk: usize) -> (Vec<Ev>, FrameDecoder) {
        let mut d = FrameDecoder::new(max);
        let mut evs = Vec::new();
        for c in stream.chunks(chunk.max(1)) {
            d.feed(c, |ev| {
                evs.push(match ev {
                    Decoded::Entry(e) => Ev::Entry(e.clone()),
                    Decoded::Oversized { len } => Ev::Oversized(len),
                    Decoded::Garbage { len, .. } => Ev::Garbage(len),
                })
            });
            assert!(d.pending_bytes() <= LEN_PREFIX + max);
        }
        (evs, d)
    }

    #[test]
    fn known_bytes_match_dockers_encoding() {
        // What dockerd's gogo-protobuf encoder writes for
        // {source:"stdout", time_nano:1, line:"hi"}.
        let mut out = Vec::new();
        encode_frame(&mut out, &entry("stdout", 1, b"hi"));
        assert_eq!(
            out,
            b"\x00\x00\x00\x0e\x0a\x06stdout\x10\x01\x1a\x02hi".to_vec()
        );
    }

    #[test]
    fn every_chunking_gives_the_same_entries() {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for i in 0..50i64 {
            let mut e = entry(
                if i % 3 == 0 { "stderr" } else { "stdout" },
                1_700_000_000_000_000_000 + i,
                format!("line {i} {}", "x".repeat(i as usize * 7)).as_bytes(),
            );
            if i % 5 == 0 {
                e.partial = true;
                e.partial_log_metadata = Some(PartialLogEntryMetadata {
                    last: i % 10 == 0,
                    id: "abc".into(),
                    ordinal: i as i32,
                });
            }
            encode_frame(&mut stream, &e);
            want.push(Ev::Entry(e));
        }
        for chunk in [1, 2, 3, 4, 5, 7, 64, 1000, usize::MAX] {
            let (got, mut d) = decode_chunked(&stream, DEFAULT_MAX_FRAME_LEN, chunk);
            assert_eq!(got, want, "chunk size {chunk}");
            assert_eq!(d.finish(), Ok(()));
            assert_eq!(d.stats().entries, 50);
        }
    }

    #[test]
    fn oversized_frames_are_skipped_in_sync() {
        let mut stream = Vec::new();
        encode_frame(&mut stream, &entry("stdout", 1, b"before"));
        encode_frame(&mut stream, &entry("stdout", 2, &[b'x'; 300]));
        encode_frame(&mut stream, &entry("stderr", 3, b"after"));
        let big_len = LogEntry::encoded_len(&entry("stdout", 2, &[b'x'; 300])) as u32;
        for chunk in [1, 3, 4, 5, 17, 100, usize::MAX] {
            let (got, mut d) = decode_chunked(&stream, 100, chunk);
            assert_eq!(
                got,
                vec![
                    Ev::Entry(entry("stdout", 1, b"before")),
                    Ev::Oversized(big_len),
                    Ev::Entry(entry("stderr", 3, b"after")),
                ],
                "chunk size {chunk}"
            );
            assert_eq!(d.finish(), Ok(()));
            assert_eq!(d.stats().oversized, 1);
            assert_eq!(d.stats().oversized_bytes, u64::from(big_len));
            // Skipping never buffered the big frame.
            assert!(d.carry.capacity() <= KEEP_CAPACITY);
        }
    }

    #[test]
    fn garbage_frames_are_skipped_in_sync() {
        let mut stream = Vec::new();
        encode_frame(&mut stream, &entry("stdout", 1, b"a"));
        // A field with wire type 7, which does not exist.
        stream.extend_from_slice(&[0, 0, 0, 2, 0x0f, 0x00]);
        // A string field that is not UTF-8.
        stream.extend_from_slice(&[0, 0, 0, 3, 0x0a, 0x01, 0xff]);
        // A length-delimited field that runs past the frame.
        stream.extend_from_slice(&[0, 0, 0, 2, 0x1a, 0x09]);
        encode_frame(&mut stream, &entry("stdout", 2, b"b"));
        for chunk in [1, 2, 6, usize::MAX] {
            let (got, mut d) = decode_chunked(&stream, 1000, chunk);
            assert_eq!(
                got,
                vec![
                    Ev::Entry(entry("stdout", 1, b"a")),
                    Ev::Garbage(2),
                    Ev::Garbage(3),
                    Ev::Garbage(2),
                    Ev::Entry(entry("stdout", 2, b"b")),
                ]
            );
            assert_eq!(d.finish(), Ok(()));
            assert_eq!(d.stats().garbage, 3);
        }
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut body = Vec::new();
        entry("stdout", 7, b"x").encode(&mut body).unwrap();
        // attrs = 6 (a LogAttr message), as newer daemons may send, and an
        // unknown varint field 99.
        body.extend_from_slice(&[0x32, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
        body.extend_from_slice(&[0x98, 0x06, 0x01]);
        let mut stream = (body.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&body);
        let (got, _) = decode_chunked(&stream, 1000, usize::MAX);
        assert_eq!(got, vec![Ev::Entry(entry("stdout", 7, b"x"))]);
    }

    #[test]
    fn a_cut_stream_is_reported_not_parsed() {
        let mut one = Vec::new();
        encode_frame(&mut one, &entry("stdout", 1, b"hello"));
        for cut in 1..one.len() {
            let (got, mut d) = decode_chunked(&one[..cut], 1000, 1);
            assert!(got.is_empty(), "cut at {cut}: {got:?}");
            let err = d.finish().unwrap_err();
            assert_eq!(err.pending_bytes(), cut);
            if cut < LEN_PREFIX {
                assert_eq!(err, TruncatedFrame::InPrefix { have: cut });
            } else {
                assert_eq!(
                    err,
                    TruncatedFrame::InFrame {
                        have: cut,
                        len: (one.len() - LEN_PREFIX) as u32
                    }
                );
            }
            assert!(err.to_string().contains("dropped"));
            assert_eq!(d.stats().truncated, 1);
            // Ready for a fresh stream.
            assert!(d.at_frame_boundary());
            assert_eq!(d.finish(), Ok(()));
        }
        // Inside an oversized frame being skipped.
        let mut d = FrameDecoder::new(2);
        d.feed(&[0, 0, 0, 10, 1, 2, 3], |_| {});
        assert_eq!(
            d.finish(),
            Err(TruncatedFrame::InSkippedFrame {
                len: 10,
                missing: 7
            })
        );
    }

    #[test]
    fn zero_length_frame_is_an_empty_entry() {
        let (got, _) = decode_chunked(&[0, 0, 0, 0], 10, 1);
        assert_eq!(got, vec![Ev::Entry(LogEntry::default())]);
    }

    #[test]
    fn a_big_carried_frame_gives_its_buffer_back() {
        let mut stream = Vec::new();
        encode_frame(&mut stream, &entry("stdout", 1, &vec![b'y'; 200_000]));
        let (got, d) = decode_chunked(&stream, DEFAULT_MAX_FRAME_LEN, 65536);
        assert_eq!(got.len(), 1);
        assert_eq!(d.carry.capacity(), 0);
    }

    #[test]
    fn a_promised_frame_costs_only_what_arrived() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut stream = 900_000u32.to_be_bytes().to_vec();
        stream.extend_from_slice(&[0x1a; 60]);
        for c in stream.chunks(7) {
            d.feed(c, |_| panic!("nothing is complete"));
        }
        assert_eq!(d.pending_bytes(), 64);
        assert!(d.carry.capacity() < 1024, "{}", d.carry.capacity());
        // Then the frame arrives in reads of 64 KiB: the buffer doubles up
        // to the frame's size, never past it.
        let mut body = vec![0u8; 900_000 - 60];
        body[..2].copy_from_slice(&[0x08, 0x01]);
        for c in body.chunks(65536) {
            d.feed(c, |_| {});
            assert!(d.carry.capacity() <= LEN_PREFIX + 900_000);
        }
        assert!(d.at_frame_boundary());
    }

    #[test]
    fn read_logs_encoder_appends_the_newline() {
        let mut enc = ReadLogsEncoder::new();
        let mut out = Vec::new();
        enc.encode(&mut out, Some(Stream::Stderr), 5, b"oops", true);
        enc.encode(&mut out, Some(Stream::Stdout), 6, b"piece", false);
        let (got, _) = decode_chunked(&out, 1000, usize::MAX);
        assert_eq!(
            got,
            vec![
                Ev::Entry(entry("stderr", 5, b"oops\n")),
                Ev::Entry(entry("stdout", 6, b"piece")),
            ]
        );
    }
}
