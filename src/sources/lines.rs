//! Turning a byte stream into entries: where a line starts and ends.
//!
//! A [`LineSplitter`] owns the read buffer of one source. The caller
//! `read()`s straight into [`LineSplitter::read_buf`], then
//! [`LineSplitter::commit`] finds the lines in the new bytes and returns
//! them as [`Span`]s over that same buffer, ready for one
//! `Ring::append_batch` per chunk. No chunk is copied: only the unfinished
//! last line (the carry, at most `max_line_len` bytes) moves, to the front
//! of the buffer before the next read.
//!
//! Promises, for any way the stream is cut into chunks:
//! - every `\n` ends a line; the `\n` is removed and every other byte is
//!   kept as it is (a `\r` stays, invalid UTF-8 stays);
//! - no entry is longer than `max_line_len`. A longer line becomes, with
//!   [`LongLines::Split`], several entries of `max_line_len` bytes and a
//!   last one with the rest, all but the last flagged `partial` (nothing is
//!   dropped); with [`LongLines::Truncate`], one entry of its first
//!   `max_line_len` bytes flagged `truncated`, the rest dropped up to the
//!   next `\n`;
//! - the bytes after the last `\n` wait for the next chunk, and
//!   [`LineSplitter::finish`] turns them into a last entry at end of file;
//! - the entries are the same whatever the chunking: splitting depends
//!   only on the bytes.
//!
//! An idle source should not hold a 64 KiB buffer: [`LineSplitter::release`]
//! hands the buffer back (to a [`BufferPool`]) and keeps only the carry,
//! in a vector of its exact size.

use std::sync::Mutex;

use super::fd_reader::{Chunk, FdInput};
use super::pipeline::{Limiter, LineLimit, Pipeline};
use super::LongLines;
use crate::entry::Flags;
use crate::ring::{OriginHandle, Span};

/// How many bytes one `read()` asks for (at least; the buffer also has
/// room for the carry).
pub const READ_SIZE: usize = 64 * 1024;

/// A read buffer and the span list that points into it, reusable across
/// sources through a [`BufferPool`]. A pointer-sized handle, so that a
/// splitter without a buffer stays small.
pub struct ReadBuf(Box<ReadBufInner>);

struct ReadBufInner {
    bytes: Box<[u8]>,
    spans: Vec<Span>,
}

impl ReadBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> ReadBuf {
        ReadBuf(Box::new(ReadBufInner {
            bytes: vec![0; len].into_boxed_slice(),
            spans: Vec::new(),
        }))
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
    }
}

/// Free read buffers, so that sources that wake up, read and go idle again
/// neither allocate nor zero 64 KiB each time. Keeps at most `keep`
/// buffers; the rest are freed.
pub struct BufferPool {
    buffer_len: usize,
    keep: usize,
    free: Mutex<Vec<ReadBuf>>,
}

impl BufferPool {
    /// A pool of buffers of `buffer_len` bytes (use
    /// [`LineSplitter::buffer_len`]) keeping at most `keep` free ones.
    pub fn new(buffer_len: usize, keep: usize) -> BufferPool {
        BufferPool {
            buffer_len,
            keep,
            free: Mutex::new(Vec::new()),
        }
    }

    /// A free buffer, or a new one.
    pub fn get(&self) -> ReadBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| ReadBuf::new(self.buffer_len))
    }

    /// Returns a buffer; it is freed if the pool is full or it has the
    /// wrong size.
    pub fn put(&self, mut buf: ReadBuf) {
        if buf.len() != self.buffer_len {
            return;
        }
        // A span list grown by one chunk of empty lines would otherwise be
        // kept at up to 12 bytes per byte of buffer.
        if buf.0.spans.capacity() > 4096 {
            buf.0.spans = Vec::new();
        }
        buf.0.spans.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }

    /// Free buffers held now.
    pub fn cached(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The entries found in one chunk: spans over `buf`, in stream order.
#[derive(Clone, Copy, Debug)]
pub struct Lines<'a> {
    pub buf: &'a [u8],
    pub spans: &'a [Span],
}

impl<'a> Lines<'a> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The first `n` entries only.
    pub fn take(self, n: usize) -> Lines<'a> {
        Lines {
            buf: self.buf,
            spans: &self.spans[..n.min(self.spans.len())],
        }
    }

    /// Each entry's bytes and flags.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Flags)> + 'a {
        let buf = self.buf;
        self.spans.iter().map(move |s| {
            let start = s.start as usize;
            (&buf[start..start + s.len as usize], s.flags)
        })
    }
}

/// Splits one source's byte stream into entries; see the module doc.
///
/// Kept small (56 bytes): every idle source holds one.
pub struct LineSplitter {
    /// The read buffer, while the source is being read.
    buf: Option<ReadBuf>,
    /// Holds the carry while `buf` is released; empty otherwise.
    parked: Box<[u8]>,
    /// The carry is `start..end` of `buf`, or of `parked` while the
    /// buffer is released.
    start: u32,
    end: u32,
    max_line_len: u32,
    /// The one span [`finish`](Self::finish) returns, kept here so that it
    /// needs no buffer (allocated at the end of the stream only: an idle
    /// splitter must stay small).
    last: Box<[Span]>,
    /// Flags every entry of this source carries (e.g. its stream).
    flags: Flags,
    long_lines: LongLines,
    /// Truncate mode: the current line was already cut; drop bytes up to
    /// the next `\n`.
    discarding: bool,
    /// [`finish`](Self::finish) was called (an input's end is reported
    /// once).
    finished: bool,
}

impl LineSplitter {
    /// A splitter cutting entries at `max_line_len` bytes (at least 1)
    /// whose entries carry `flags`.
    ///
    /// # Panics
    /// If a buffer for that limit would not fit 32-bit spans (a limit near
    /// 4 GiB; the ring allows at most 16 MiB).
    pub fn new(max_line_len: usize, long_lines: LongLines, flags: Flags) -> LineSplitter {
        let max_line_len = max_line_len.max(1);
        assert!(
            Self::buffer_len(max_line_len) <= u32::MAX as usize,
            "max line length {max_line_len} is too large for 32-bit spans"
        );
        LineSplitter {
            buf: None,
            parked: Box::default(),
            start: 0,
            end: 0,
            max_line_len: max_line_len as u32,
            last: Box::default(),
            flags,
            long_lines,
            discarding: false,
            finished: false,
        }
    }

    /// The buffer size a splitter with this limit reads into: room for the
    /// longest carry plus one full read.
    pub fn buffer_len(max_line_len: usize) -> usize {
        max_line_len.max(1) + READ_SIZE
    }

    pub fn max_line_len(&self) -> usize {
        self.max_line_len as usize
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Bytes of the unfinished last line, held until the next chunk.
    pub fn carry_len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the splitter holds a read buffer now.
    pub fn has_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Gives the splitter a read buffer (e.g. from a [`BufferPool`]) before
    /// [`read_buf`](Self::read_buf). Returns it back if the splitter already
    /// has one or it is too small.
    pub fn attach(&mut self, buf: ReadBuf) -> Option<ReadBuf> {
        if self.buf.is_some() || buf.len() < Self::buffer_len(self.max_line_len()) {
            return Some(buf);
        }
        self.install(buf);
        None
    }

    fn install(&mut self, mut buf: ReadBuf) {
        let (start, end) = (self.start as usize, self.end as usize);
        buf.0.bytes[..end - start].copy_from_slice(&self.parked[start..end]);
        self.parked = Box::default();
        self.end -= self.start;
        self.start = 0;
        self.buf = Some(buf);
    }

    /// Hands the read buffer back, keeping the carry in an allocation of
    /// its size (none when it is empty); call it when the source goes idle.
    pub fn release(&mut self) -> Option<ReadBuf> {
        let buf = self.buf.take()?;
        self.parked = buf.0.bytes[self.start as usize..self.end as usize].into();
        self.end -= self.start;
        self.start = 0;
        Some(buf)
    }

    /// Where to read the next chunk into: at least [`READ_SIZE`] bytes.
    /// Allocates a buffer if the splitter has none, and moves the carry to
    /// the front of it.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.buf.is_none() {
            self.install(ReadBuf::new(Self::buffer_len(self.max_line_len())));
        }
        let buf = &mut self.buf.as_mut().expect("installed above").0;
        if self.start > 0 {
            buf.bytes
                .copy_within(self.start as usize..self.end as usize, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut buf.bytes[self.end as usize..]
    }

    /// Takes in the `n` bytes just read into [`read_buf`](Self::read_buf)
    /// and returns the entries they complete.
    ///
    /// # Panics
    /// If `n` is more than `read_buf` offered.
    pub fn commit(&mut self, n: usize) -> Lines<'_> {
        let max = self.max_line_len as usize;
        let truncate = self.long_lines == LongLines::Truncate;
        let limit = LineLimit {
            max_line_len: max,
            long_lines: self.long_lines,
        };
        let flags = self.flags;
        let buf = &mut self.buf.as_mut().expect("commit() after read_buf()").0;
        let scan_from = self.end as usize;
        let end = scan_from + n;
        assert!(end <= buf.bytes.len(), "committed past the read buffer");
        let spans = &mut buf.spans;
        spans.clear();
        // The carry holds no `\n` (it would have ended a line), so only the
        // new bytes are searched.
        let mut line = self.start as usize;
        for at in memchr::memchr_iter(b'\n', &buf.bytes[scan_from..end]) {
            let nl = scan_from + at;
            if self.discarding {
                self.discarding = false;
            } else if nl - line <= max {
                spans.push(span(line, nl - line, flags));
            } else {
                limit.pieces(line, nl - line, flags, |s| spans.push(s));
            }
            line = nl + 1;
        }
        if self.discarding {
            line = end;
        } else {
            // The unfinished line: pieces beyond the limit can go now, since
            // at least one more byte of the line follows them.
            while end - line > max {
                if truncate {
                    spans.push(span(line, max, flags.with_truncated(true)));
                    self.discarding = true;
                    line = end;
                } else {
                    spans.push(span(line, max, flags.with_partial(true)));
                    line += max;
                }
            }
        }
        self.start = line as u32;
        self.end = end as u32;
        Lines {
            buf: &buf.bytes[..],
            spans: &buf.spans[..],
        }
    }

    /// At end of file: the carry as a last entry (none if it is empty).
    /// The carry is then empty, so a second call returns nothing.
    pub fn finish(&mut self) -> Lines<'_> {
        self.finished = true;
        let (start, len) = (self.start as usize, self.carry_len());
        self.start = self.end;
        self.discarding = false;
        self.last = Box::new([span(start, len, self.flags)]);
        let buf = match &self.buf {
            Some(buf) => &buf.0.bytes[..],
            None => &self.parked[..],
        };
        let spans = if len > 0 { &self.last[..] } else { &[][..] };
        Lines { buf, spans }
    }
}

fn span(start: usize, len: usize, flags: Flags) -> Span {
    Span::new(start as u32, len as u32, flags)
}

/// A line-split byte stream as an [`FdInput`]: what the fds handed over on
/// memlogd's socket are. Every line becomes an entry of one origin, after
/// the source's rate limit.
pub struct LineInput {
    origin: OriginHandle,
    splitter: LineSplitter,
    limiter: Option<Box<Limiter>>,
}

impl LineInput {
    /// Lines of `origin`, under `pipeline`'s line limit and rate limit.
    pub fn new(pipeline: &Pipeline, origin: OriginHandle, flags: Flags) -> LineInput {
        let limit = pipeline.line_limit();
        LineInput {
            origin,
            splitter: LineSplitter::new(limit.max_line_len, limit.long_lines, flags),
            // Boxed: most sources have no limit, and an idle source's
            // future must stay small.
            limiter: pipeline.limiter().map(Box::new),
        }
    }
}

impl FdInput for LineInput {
    fn name(&self) -> &str {
        &self.origin.origin().source
    }

    fn read_buf(&mut self, pool: &BufferPool) -> &mut [u8] {
        if !self.splitter.has_buffer() {
            if let Some(unused) = self.splitter.attach(pool.get()) {
                pool.put(unused);
            }
        }
        self.splitter.read_buf()
    }

    fn commit(&mut self, n: usize) -> Option<Chunk<'_>> {
        let lines = self.splitter.commit(n);
        Some(Chunk {
            origin: &self.origin,
            limiter: self.limiter.as_deref_mut(),
            buf: lines.buf,
            spans: lines.spans,
        })
    }

    fn finish(&mut self, pipeline: &Pipeline) -> Option<Chunk<'_>> {
        if self.splitter.finished() {
            // After the last lines: what the rate limit suppressed in the
            // last window.
            if let Some(limiter) = &mut self.limiter {
                limiter.report(pipeline.selflog(), &self.origin.origin().source);
            }
            return None;
        }
        let lines = self.splitter.finish();
        Some(Chunk {
            origin: &self.origin,
            limiter: self.limiter.as_deref_mut(),
            buf: lines.buf,
            spans: lines.spans,
        })
    }

    fn release(&mut self, pool: &BufferPool) {
        if let Some(buf) = self.splitter.release() {
            pool.put(buf);
        }
    }

    fn timer(&self) -> Option<std::time::Instant> {
        self.limiter.as_ref().and_then(|l| l.due())
    }

    fn on_timer(&mut self, pipeline: &Pipeline) {
        if let Some(limiter) = &mut self.limiter {
            limiter.report(pipeline.selflog(), &self.origin.origin().source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Stream;

    type Out = Vec<(Vec<u8>, Flags)>;

    /// Feeds `input` in chunks of the given sizes (cycled), releasing the
    /// buffer after the chunks marked in `release_every` (0: never).
    fn feed(s: &mut LineSplitter, input: &[u8], chunks: &[usize], release_every: usize) -> Out {
        let mut out = Vec::new();
        let mut rest = input;
        let mut i = 0;
        while !rest.is_empty() {
            let want = chunks[i % chunks.len()].max(1);
            let buf = s.read_buf();
            assert!(buf.len() >= READ_SIZE);
            let n = want.min(buf.len()).min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            let lines = s.commit(n);
            out.extend(lines.iter().map(|(m, f)| (m.to_vec(), f)));
            i += 1;
            if release_every > 0 && i % release_every == 0 {
                assert!(s.release().is_some());
            }
        }
        out.extend(s.finish().iter().map(|(m, f)| (m.to_vec(), f)));
        out
    }

    fn split(input: &[u8], max: usize, mode: LongLines) -> Out {
        feed(
            &mut LineSplitter::new(max, mode, Flags::default()),
            input,
            &[usize::MAX],
            0,
        )
    }

    /// The specification, written the slow and obvious way.
    fn model(input: &[u8], max: usize, mode: LongLines) -> Out {
        let mut segments: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let tail = segments.pop().expect("split yields at least one piece");
        if !tail.is_empty() {
            segments.push(tail);
        }
        let plain = Flags::default();
        let mut out = Vec::new();
        for seg in segments {
            if seg.len() <= max {
                out.push((seg.to_vec(), plain));
            } else if mode == LongLines::Truncate {
                out.push((seg[..max].to_vec(), plain.with_truncated(true)));
            } else {
                let pieces: Vec<&[u8]> = seg.chunks(max).collect();
                for (i, p) in pieces.iter().enumerate() {
                    out.push((p.to_vec(), plain.with_partial(i + 1 < pieces.len())));
                }
            }
        }
        out
    }

    fn texts(out: &Out) -> Vec<(String, bool, bool)> {
        out.iter()
            .map(|(m, f)| {
                (
                    String::from_utf8_lossy(m).into_owned(),
                    f.partial(),
                    f.truncated(),
                )
            })
            .collect()
    }

    fn t(s: &str) -> (String, bool, bool) {
        (s.to_string(), false, false)
    }

    fn p(s: &str) -> (String, bool, bool) {
        (s.to_string(), true, false)
    }

    fn tr(s: &str) -> (String, bool, bool) {
        (s.to_string(), false, true)
    }

    #[test]
    fn an_idle_splitter_is_small() {
        assert!(std::mem::size_of::<LineSplitter>() <= 56);
    }

    #[test]
    fn lines_keep_every_byte_but_the_newline() {
        let out = split(b"a\r\n\nb\xff\xfe c\n", 1024, LongLines::Split);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0, b"a\r");
        assert_eq!(out[1].0, b"");
        assert_eq!(out[2].0, b"b\xff\xfe c");
    }

    #[test]
    fn unterminated_tail_is_an_entry_at_eof_only() {
        let mut s = LineSplitter::new(1024, LongLines::Split, Flags::default());
        let buf = s.read_buf();
        buf[..9].copy_from_slice(b"one\ntwo t");
        assert_eq!(s.commit(9).len(), 1);
        assert_eq!(s.carry_len(), 5);
        let buf = s.read_buf();
        buf[..4].copy_from_slice(b"ail\n");
        let lines = s.commit(4);
        assert_eq!(lines.iter().next().map(|(m, _)| m), Some(&b"two tail"[..]));
        let buf = s.read_buf();
        buf[..3].copy_from_slice(b"end");
        assert!(s.commit(3).is_empty());
        let fin = s.finish();
        assert_eq!(
            fin.iter().map(|(m, _)| m.to_vec()).collect::<Vec<_>>(),
            vec![b"end".to_vec()]
        );
        assert!(s.finish().is_empty(), "the carry is given once");
    }

    #[test]
    fn long_lines_split_at_the_limit_and_flag_all_but_the_last_piece() {
        let got = texts(&split(
            b"abcd\nabcde\nabcdefgh\nabcdefghi",
            4,
            LongLines::Split,
        ));
        assert_eq!(
            got,
            vec![
                t("abcd"),
                p("abcd"),
                t("e"),
                p("abcd"),
                t("efgh"),
                p("abcd"),
                p("efgh"),
                t("i")
            ]
        );
    }

    #[test]
    fn long_lines_truncate_keeps_the_head_and_drops_the_rest_of_the_line() {
        let got = texts(&split(
            b"abcd\nabcdefgh\nxy\nabcdefghij",
            4,
            LongLines::Truncate,
        ));
        assert_eq!(got, vec![t("abcd"), tr("abcd"), t("xy"), tr("abcd")]);
        // The dropped rest spans chunks and is still dropped.
        let mut s = LineSplitter::new(4, LongLines::Truncate, Flags::default());
        let got = texts(&feed(&mut s, b"abcdefghijklmnop\nok\n", &[3], 0));
        assert_eq!(got, vec![tr("abcd"), t("ok")]);
    }

    #[test]
    fn source_flags_are_on_every_entry() {
        let flags = Flags::default().with_stream(Some(Stream::Stderr));
        let mut s = LineSplitter::new(2, LongLines::Split, flags);
        let out = feed(&mut s, b"abc\nd", &[100], 0);
        assert!(out.iter().all(|(_, f)| f.stream() == Some(Stream::Stderr)));
        assert!(out[0].1.partial() && !out[1].1.partial() && !out[2].1.partial());
    }

    #[test]
    fn a_full_read_without_newline_comes_out_in_pieces() {
        let input = vec![b'z'; 3 * READ_SIZE + 10];
        let mut s = LineSplitter::new(1024, LongLines::Split, Flags::default());
        let out = feed(&mut s, &input, &[READ_SIZE], 0);
        assert_eq!(out, model(&input, 1024, LongLines::Split));
        assert!(out.iter().all(|(m, _)| m.len() <= 1024));
        assert_eq!(out.iter().map(|(m, _)| m.len()).sum::<usize>(), input.len());
    }

    #[test]
    fn release_parks_the_carry_and_attach_restores_it() {
        let pool = BufferPool::new(LineSplitter::buffer_len(16), 2);
        let mut s = LineSplitter::new(16, LongLines::Split, Flags::default());
        assert!(!s.has_buffer());
        assert!(s.attach(pool.get()).is_none());
        let buf = s.read_buf();
        buf[..7].copy_from_slice(b"x\nhalf ");
        assert_eq!(s.commit(7).len(), 1);
        pool.put(s.release().expect("had a buffer"));
        assert!(!s.has_buffer());
        assert_eq!(s.carry_len(), 5);
        assert_eq!(pool.cached(), 1);
        assert!(s.attach(pool.get()).is_none());
        assert_eq!(pool.cached(), 0);
        let buf = s.read_buf();
        buf[..5].copy_from_slice(b"line\n");
        let lines = s.commit(5);
        assert_eq!(lines.iter().next().map(|(m, _)| m), Some(&b"half line"[..]));
        // A wrong-sized buffer is refused and not pooled.
        let small = ReadBuf::new(10);
        assert!(s.attach(small).is_some());
        pool.put(ReadBuf::new(10));
        assert_eq!(pool.cached(), 0);
        // The pool keeps at most `keep` buffers.
        for _ in 0..5 {
            pool.put(ReadBuf::new(LineSplitter::buffer_len(16)));
        }
        assert_eq!(pool.cached(), 2);
    }

    #[test]
    fn finish_without_a_buffer_returns_the_parked_carry() {
        let mut s = LineSplitter::new(8, LongLines::Split, Flags::default());
        let buf = s.read_buf();
        buf[..4].copy_from_slice(b"tail");
        assert!(s.commit(4).is_empty());
        s.release();
        let fin = s.finish();
        assert_eq!(
            fin.iter().map(|(m, _)| m.to_vec()).collect::<Vec<_>>(),
            vec![b"tail".to_vec()]
        );
    }

    /// A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn any_chunking_gives_the_model_entries() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for case in 0..600 {
            let len = rng.below(if case % 10 == 0 { 200_000 } else { 400 });
            // Vary the newline density from none to mostly newlines.
            let density = [0, 2, 10, 50, 500][case % 5];
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    if density > 0 && rng.below(density) == 0 {
                        b'\n'
                    } else {
                        b"ab\r\xff"[rng.below(4)]
                    }
                })
                .collect();
            let max = 1 + rng.below(if case % 3 == 0 { 3 } else { 40 });
            for mode in [LongLines::Split, LongLines::Truncate] {
                let want = model(&input, max, mode);
                let whole = feed(
                    &mut LineSplitter::new(max, mode, Flags::default()),
                    &input,
                    &[usize::MAX],
                    0,
                );
                assert_eq!(whole, want, "case {case}: one chunk, max {max}, {mode:?}");
                let chunks: Vec<usize> = (0..1 + rng.below(8))
                    .map(|_| 1 + rng.below(max * 3))
                    .collect();
                let release_every = rng.below(4);
                let mut s = LineSplitter::new(max, mode, Flags::default());
                let got = feed(&mut s, &input, &chunks, release_every);
                assert_eq!(
                    got, want,
                    "case {case}: chunks {chunks:?}, release every {release_every}, max {max}, {mode:?}"
                );
            }
        }
    }

    #[test]
    fn split_mode_reproduces_the_input() {
        let mut rng = XorShift(42);
        for _ in 0..200 {
            let input: Vec<u8> = (0..rng.below(3000))
                .map(|_| b"x\n\xc3"[rng.below(3)])
                .collect();
            let max = 1 + rng.below(50);
            let mut s = LineSplitter::new(max, LongLines::Split, Flags::default());
            let out = feed(&mut s, &input, &[1 + rng.below(700)], 0);
            let mut joined = Vec::new();
            for (m, f) in &out {
                assert!(m.len() <= max);
                joined.extend_from_slice(m);
                if !f.partial() {
                    joined.push(b'\n');
                }
            }
            // The last entry had no newline unless the input ended with one.
            if !input.ends_with(b"\n") && !out.is_empty() {
                joined.pop();
            }
            assert_eq!(joined, input);
        }
    }
}

#[cfg(test)]
mod measure {
    use super::*;
    use std::time::Instant;

    /// On-CPU time of this thread, in ns (from the scheduler's own
    /// accounting, so that a busy machine does not inflate the figure).
    fn thread_cpu_ns() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        stat.split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }

    /// Lines per second through `read_buf`/`commit` for 100-byte lines in
    /// full 64 KiB reads (the copy into the buffer stands in for `read()`).
    /// `cargo test --release --lib measure_split_rate -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_split_rate() {
        const REPEAT: usize = 320;
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        // 1 MiB, read 320 times: cache-resident like the pipe buffers a
        // real read() copies from.
        let stream: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
        let lines = stream.len() / 100;
        let mut s = LineSplitter::new(1024, LongLines::Split, Flags::default());
        let mut found = 0usize;
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        for _ in 0..REPEAT {
            for chunk in stream.chunks(READ_SIZE) {
                let buf = s.read_buf();
                buf[..chunk.len()].copy_from_slice(chunk);
                found += s.commit(chunk.len()).len();
            }
        }
        let cpu = (thread_cpu_ns() - cpu_start) as f64 / 1e9;
        let wall = start.elapsed().as_secs_f64();
        assert_eq!(found, lines * REPEAT);
        println!(
            "splitter, 100-byte lines in 64 KiB reads: {:.1} M lines/s of CPU time \
             ({:.2} ns/line, {:.2} GB/s); wall clock {:.1} M lines/s",
            found as f64 / cpu / 1e6,
            cpu * 1e9 / found as f64,
            (stream.len() * REPEAT) as f64 / cpu / 1e9,
            found as f64 / wall / 1e6,
        );
    }
}
