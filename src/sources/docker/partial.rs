//! Joining Docker's partial pieces back into lines, then cutting them by
//! ringtail's own long-line rule.
//!
//! dockerd reads a container's output 16 KiB at a time: a longer line
//! arrives as several [`LogEntry`] pieces with `partial = true`. dockerd
//! 18.06 and newer tag them with [`PartialLogEntryMetadata`] (the same
//! random `id`, ordinals from 1, `last` on the final piece); older daemons
//! send `partial` alone and end the line with a piece that is not partial.
//! stdout and stderr are copied by two goroutines into one FIFO, so pieces
//! of a stdout line may have stderr lines between them.
//!
//! A [`PartialJoiner`] promises:
//! - stdout, stderr (and any other source name, in one slot of its own)
//!   are joined apart, so interleaving never mixes two lines;
//! - the joined line comes out as [`Piece`]s of at most `max_line_len`
//!   bytes (ringtail's `--max-line-len`), cut exactly as
//!   `sources::lines` cuts a long line: with [`LongLines::Split`] every
//!   piece but the last is flagged `partial` and no byte is lost; with
//!   [`LongLines::Truncate`] the first `max_line_len` bytes come out
//!   flagged `truncated` and the rest is dropped and counted. A line that
//!   fits comes out as one unflagged piece, however Docker cut it;
//! - every piece of a line carries the time of the line's first piece
//!   (dockerd gives all pieces the same time anyway);
//! - memory is bounded: at most `max_line_len` bytes held per slot,
//!   whatever the container writes (one endless line included);
//! - a line whose end never came (a new `id` starts on the same stream,
//!   or a complete line arrives) is ended with what arrived and counted in
//!   [`JoinStats::broken_lines`]; a piece whose ordinal is not the next one
//!   (a frame lost before it) is joined anyway and counted in
//!   [`JoinStats::ordinal_gaps`]. [`PartialJoiner::finish`] ends the lines
//!   still open at end of stream: a container's last output without a
//!   `\n` arrives as an unfinished partial line.
//!
//! A piece of exactly `max_line_len` bytes is held until the next byte
//! shows whether the line goes on, so that the final piece of a line is
//! never empty (the same rule as `sources::lines`).

use super::frame::LogEntry;
use crate::entry::{Flags, Stream};
use crate::sources::LongLines;

/// One entry for the ring: at most `max_line_len` bytes of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The container's time for the line (its first piece), ns since the
    /// Unix epoch, as dockerd stamped it.
    pub time_nano: i64,
    /// The stream, and `partial` or `truncated` as ringtail's rule sets it.
    pub flags: Flags,
    pub msg: &'a [u8],
}

/// Counts kept by a [`PartialJoiner`] over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Lines ended; each gave one piece or more (a truncated line counts
    /// once).
    pub lines: u64,
    /// Of those, lines made of several Docker pieces.
    pub joined_lines: u64,
    /// Lines ended without their final piece (see the module docs).
    pub broken_lines: u64,
    /// Pieces whose ordinal was not the one expected.
    pub ordinal_gaps: u64,
    /// Bytes dropped by [`LongLines::Truncate`].
    pub truncated_bytes: u64,
}

/// The line being joined on one stream.
#[derive(Debug, Default)]
struct Slot {
    /// A line has started and not ended.
    open: bool,
    /// Hash of the Docker partial id of the open line; `None` when it came
    /// from a daemon without partial metadata. A hash, not the id, so a
    /// hostile id of a megabyte is not kept.
    id: Option<u64>,
    /// The ordinal the next piece should carry.
    next_ordinal: i32,
    /// Docker pieces seen for the open line.
    pieces: u32,
    /// Time of the open line's first piece.
    time_nano: i64,
    /// Bytes of the open line not yet given out (at most `max_line_len`).
    buf: Vec<u8>,
    /// Truncate mode: the first `max_line_len` bytes went out, the rest of
    /// the line is being dropped.
    dropping: bool,
}

/// Joins the pieces of one FIFO (see the module docs).
#[derive(Debug)]
pub struct PartialJoiner {
    max_line_len: usize,
    long_lines: LongLines,
    /// stdout, stderr, anything else.
    slots: [Slot; 3],
    stats: JoinStats,
}

const STREAMS: [Option<Stream>; 3] = [Some(Stream::Stdout), Some(Stream::Stderr), None];

fn slot_index(stream: Option<Stream>) -> usize {
    match stream {
        Some(Stream::Stdout) => 0,
        Some(Stream::Stderr) => 1,
        None => 2,
    }
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(id)
}

impl PartialJoiner {
    /// A joiner giving pieces of at most `max_line_len` bytes (at least 1).
    pub fn new(max_line_len: usize, long_lines: LongLines) -> PartialJoiner {
        PartialJoiner {
            max_line_len: max_line_len.max(1),
            long_lines,
            slots: Default::default(),
            stats: JoinStats::default(),
        }
    }

    pub fn stats(&self) -> &JoinStats {
        &self.stats
    }

    /// Bytes held for lines not yet ended.
    pub fn pending_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.buf.len()).sum()
    }

    /// Takes one decoded entry; calls `emit` for every piece it completes.
    pub fn push(&mut self, entry: &LogEntry, mut emit: impl FnMut(Piece<'_>)) {
        let stream = entry.stream();
        let i = slot_index(stream);
        match &entry.partial_log_metadata {
            Some(meta) => {
                let id = id_hash(&meta.id);
                let slot = &self.slots[i];
                if slot.open && slot.id != Some(id) {
                    self.end_broken(i, &mut emit);
                }
                let slot = &mut self.slots[i];
                if slot.open {
                    if meta.ordinal != slot.next_ordinal {
                        self.stats.ordinal_gaps += 1;
                    }
                } else {
                    if meta.ordinal != 1 {
                        self.stats.ordinal_gaps += 1;
                    }
                    slot.start(Some(id), entry.time_nano);
                }
                let slot = &mut self.slots[i];
                slot.next_ordinal = meta.ordinal.wrapping_add(1);
                slot.pieces += 1;
                self.add(i, &entry.line, meta.last, &mut emit);
            }
            None if entry.partial => {
                if self.slots[i].open && self.slots[i].id.is_some() {
                    self.end_broken(i, &mut emit);
                }
                let slot = &mut self.slots[i];
                if !slot.open {
                    slot.start(None, entry.time_nano);
                }
                slot.pieces += 1;
                self.add(i, &entry.line, false, &mut emit);
            }
            None => {
                let slot = &mut self.slots[i];
                if slot.open && slot.id.is_some() {
                    self.end_broken(i, &mut emit);
                }
                // An old daemon's final piece ends its open line; otherwise
                // this is a whole line.
                let slot = &mut self.slots[i];
                if !slot.open {
                    slot.start(None, entry.time_nano);
                }
                slot.pieces += 1;
                self.add(i, &entry.line, true, &mut emit);
            }
        }
    }

    /// Ends every open line (end of stream); their ends are not coming.
    pub fn finish(&mut self, mut emit: impl FnMut(Piece<'_>)) {
        for i in 0..self.slots.len() {
            if self.slots[i].open {
                self.add(i, &[], true, &mut emit);
            }
        }
    }

    /// Ends the open line of slot `i` that lost its final piece.
    fn end_broken(&mut self, i: usize, emit: &mut impl FnMut(Piece<'_>)) {
        self.stats.broken_lines += 1;
        self.add(i, &[], true, emit);
    }

    /// Adds bytes to the open line of slot `i`, giving out every full piece
    /// that more bytes follow, and the rest when `ends_line`.
    fn add(
        &mut self,
        i: usize,
        mut bytes: &[u8],
        ends_line: bool,
        emit: &mut impl FnMut(Piece<'_>),
    ) {
        let max = self.max_line_len;
        let stream_flags = Flags::default().with_stream(STREAMS[i]);
        let slot = &mut self.slots[i];
        loop {
            if slot.dropping {
                self.stats.truncated_bytes += bytes.len() as u64;
                break;
            }
            let room = max - slot.buf.len();
            if bytes.len() <= room {
                if ends_line {
                    let msg = if slot.buf.is_empty() {
                        bytes
                    } else {
                        slot.buf.extend_from_slice(bytes);
                        &slot.buf
                    };
                    emit(Piece {
                        time_nano: slot.time_nano,
                        flags: stream_flags,
                        msg,
                    });
                } else {
                    slot.buf.extend_from_slice(bytes);
                }
                break;
            }
            // A full piece, and at least one byte after it.
            let msg = if slot.buf.is_empty() {
                &bytes[..max]
            } else {
                slot.buf.extend_from_slice(&bytes[..room]);
                &slot.buf
            };
            let (flags, rest) = match self.long_lines {
                LongLines::Split => (stream_flags.with_partial(true), &bytes[room..]),
                LongLines::Truncate => {
                    slot.dropping = true;
                    (stream_flags.with_truncated(true), &bytes[room..])
                }
            };
            emit(Piece {
                time_nano: slot.time_nano,
                flags,
                msg,
            });
            slot.buf.clear();
            bytes = rest;
        }
        if ends_line {
            self.stats.lines += 1;
            if slot.pieces > 1 {
                self.stats.joined_lines += 1;
            }
            slot.end();
        }
    }
}

impl Slot {
    fn start(&mut self, id: Option<u64>, time_nano: i64) {
        self.open = true;
        self.id = id;
        self.next_ordinal = 1;
        self.pieces = 0;
        self.time_nano = time_nano;
        self.dropping = false;
    }

    fn end(&mut self) {
        self.open = false;
        self.id = None;
        self.dropping = false;
        self.buf.clear();
        // A slot keeps at most one piece's worth; a very large limit does
        // not stay allocated on an idle FIFO.
        if self.buf.capacity() > super::frame::KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::docker::frame::PartialLogEntryMetadata;

    fn whole(source: &str, t: i64, line: &[u8]) -> LogEntry {
        LogEntry {
            source: source.into(),
            time_nano: t,
            line: line.to_vec(),
            ..Default::default()
        }
    }

    fn piece(source: &str, t: i64, line: &[u8], id: &str, ordinal: i32, last: bool) -> LogEntry {
        LogEntry {
            source: source.into(),
            time_nano: t,
            line: line.to_vec(),
            partial: true,
            partial_log_metadata: Some(PartialLogEntryMetadata {
                last,
                id: id.into(),
                ordinal,
            }),
        }
    }

    fn old_piece(source: &str, t: i64, line: &[u8]) -> LogEntry {
        LogEntry {
            partial: true,
            ..whole(source, t, line)
        }
    }

    type Out = Vec<(i64, Option<Stream>, bool, bool, Vec<u8>)>;

    fn run(j: &mut PartialJoiner, entries: &[LogEntry], finish: bool) -> Out {
        let mut out = Vec::new();
        let mut push = |p: Piece<'_>| {
            out.push((
                p.time_nano,
                p.flags.stream(),
                p.flags.partial(),
                p.flags.truncated(),
                p.msg.to_vec(),
            ))
        };
        for e in entries {
            j.push(e, &mut push);
            assert!(j.pending_bytes() <= 3 * j.max_line_len);
        }
        if finish {
            j.finish(&mut push);
        }
        out
    }

    const OUT: Option<Stream> = Some(Stream::Stdout);
    const ERR: Option<Stream> = Some(Stream::Stderr);

    #[test]
    fn short_lines_pass_through() {
        let mut j = PartialJoiner::new(1024, LongLines::Split);
        let got = run(
            &mut j,
            &[
                whole("stdout", 1, b"hi"),
                whole("stderr", 2, b"err"),
                whole("stdout", 3, b""),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (1, OUT, false, false, b"hi".to_vec()),
                (2, ERR, false, false, b"err".to_vec()),
                (3, OUT, false, false, b"".to_vec()),
            ]
        );
        assert_eq!(j.stats().lines, 3);
        assert_eq!(j.stats().joined_lines, 0);
    }

    #[test]
    fn docker_pieces_join_into_one_line_with_interleaved_stderr() {
        let mut j = PartialJoiner::new(1 << 20, LongLines::Split);
        let got = run(
            &mut j,
            &[
                piece("stdout", 10, b"aaa", "id1", 1, false),
                whole("stderr", 11, b"between"),
                piece("stdout", 10, b"bbb", "id1", 2, false),
                piece("stdout", 10, b"ccc", "id1", 3, true),
                whole("stdout", 12, b"next"),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (11, ERR, false, false, b"between".to_vec()),
                (10, OUT, false, false, b"aaabbbccc".to_vec()),
                (12, OUT, false, false, b"next".to_vec()),
            ]
        );
        assert_eq!(j.stats().joined_lines, 1);
        assert_eq!(j.stats().broken_lines, 0);
        assert_eq!(j.stats().ordinal_gaps, 0);
    }

    #[test]
    fn a_line_over_the_limit_is_split_like_ringtail_splits() {
        let mut j = PartialJoiner::new(4, LongLines::Split);
        let got = run(
            &mut j,
            &[
                piece("stdout", 1, b"abcde", "x", 1, false),
                piece("stdout", 1, b"fgh", "x", 2, false),
                // The final piece is empty: the line was a multiple of 16 KiB.
                piece("stdout", 1, b"", "x", 3, true),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (1, OUT, true, false, b"abcd".to_vec()),
                (1, OUT, false, false, b"efgh".to_vec()),
            ]
        );
    }

    #[test]
    fn truncate_mode_keeps_the_head_and_counts_the_rest() {
        let mut j = PartialJoiner::new(4, LongLines::Truncate);
        let got = run(
            &mut j,
            &[
                piece("stdout", 1, b"abc", "x", 1, false),
                piece("stdout", 1, b"defgh", "x", 2, true),
                whole("stdout", 2, b"ok"),
                whole("stdout", 3, b"toolong"),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (1, OUT, false, true, b"abcd".to_vec()),
                (2, OUT, false, false, b"ok".to_vec()),
                (3, OUT, false, true, b"tool".to_vec()),
            ]
        );
        assert_eq!(j.stats().truncated_bytes, 4 + 3);
        assert_eq!(j.stats().lines, 3);
    }

    #[test]
    fn old_daemons_end_the_line_with_a_non_partial_piece() {
        let mut j = PartialJoiner::new(100, LongLines::Split);
        let got = run(
            &mut j,
            &[
                old_piece("stdout", 5, b"one "),
                old_piece("stderr", 6, b"e1 "),
                old_piece("stdout", 7, b"two "),
                whole("stdout", 8, b"three"),
                whole("stderr", 9, b"e2"),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (5, OUT, false, false, b"one two three".to_vec()),
                (6, ERR, false, false, b"e1 e2".to_vec()),
            ]
        );
    }

    #[test]
    fn lost_ends_and_gaps_are_counted_not_hidden() {
        let mut j = PartialJoiner::new(100, LongLines::Split);
        let got = run(
            &mut j,
            &[
                piece("stdout", 1, b"a1", "a", 1, false),
                // A new id before "a" ended: "a" lost its last piece.
                piece("stdout", 2, b"b1", "b", 1, false),
                // Ordinal 2 is missing.
                piece("stdout", 2, b"b3", "b", 3, false),
                // A whole line while "b" is open.
                whole("stdout", 3, b"w"),
                // Starting at ordinal 2: the first piece is missing.
                piece("stdout", 4, b"c2", "c", 2, false),
            ],
            true,
        );
        assert_eq!(
            got,
            vec![
                (1, OUT, false, false, b"a1".to_vec()),
                (2, OUT, false, false, b"b1b3".to_vec()),
                (3, OUT, false, false, b"w".to_vec()),
                (4, OUT, false, false, b"c2".to_vec()),
            ]
        );
        assert_eq!(j.stats().broken_lines, 2);
        assert_eq!(j.stats().ordinal_gaps, 2);
        assert_eq!(j.pending_bytes(), 0);
    }

    #[test]
    fn unfinished_last_output_comes_out_at_finish() {
        let mut j = PartialJoiner::new(3, LongLines::Split);
        let got = run(
            &mut j,
            &[piece("stderr", 9, b"abcdefg", "z", 1, false)],
            false,
        );
        assert_eq!(
            got,
            vec![
                (9, ERR, true, false, b"abc".to_vec()),
                (9, ERR, true, false, b"def".to_vec()),
            ]
        );
        assert_eq!(j.pending_bytes(), 1);
        let got = run(&mut j, &[], true);
        assert_eq!(got, vec![(9, ERR, false, false, b"g".to_vec())]);
    }

    #[test]
    fn other_sources_have_their_own_slot() {
        let mut j = PartialJoiner::new(100, LongLines::Split);
        let got = run(
            &mut j,
            &[
                piece("tty", 1, b"x", "i", 1, false),
                whole("stdout", 2, b"y"),
                piece("tty", 1, b"z", "i", 2, true),
            ],
            false,
        );
        assert_eq!(
            got,
            vec![
                (2, OUT, false, false, b"y".to_vec()),
                (1, None, false, false, b"xz".to_vec()),
            ]
        );
    }

    /// Split mode gives back every byte: the pieces of each stream, joined
    /// at the partial flags, are the lines that went in, for many limits.
    #[test]
    fn split_mode_loses_nothing() {
        let lines: Vec<Vec<u8>> = (0..40)
            .map(|i| (0..i * 3).map(|k| b'a' + (k % 26) as u8).collect())
            .collect();
        for max in [1, 2, 3, 7, 16, 1000] {
            for cut in [1, 2, 5, 16] {
                let mut entries = Vec::new();
                for (n, l) in lines.iter().enumerate() {
                    let chunks: Vec<&[u8]> = if l.is_empty() {
                        vec![&l[..]]
                    } else {
                        l.chunks(cut).collect()
                    };
                    let id = format!("id{n}");
                    for (k, c) in chunks.iter().enumerate() {
                        let last = k + 1 == chunks.len();
                        entries.push(if chunks.len() == 1 {
                            whole("stdout", n as i64, c)
                        } else {
                            piece("stdout", n as i64, c, &id, k as i32 + 1, last)
                        });
                    }
                }
                let mut j = PartialJoiner::new(max, LongLines::Split);
                let got = run(&mut j, &entries, true);
                let mut joined: Vec<Vec<u8>> = vec![Vec::new()];
                for (t, _, partial, truncated, msg) in got {
                    assert!(msg.len() <= max);
                    assert!(!truncated);
                    assert_eq!(t, joined.len() as i64 - 1);
                    joined.last_mut().unwrap().extend_from_slice(&msg);
                    if !partial {
                        joined.push(Vec::new());
                    }
                }
                joined.pop();
                assert_eq!(joined, lines, "max {max}, cut {cut}");
            }
        }
    }
}
