//! RFC 6587 framing of a syslog TCP stream, in bounded memory.
//!
//! A [`Framer`] belongs to one connection. The reader hands it whatever
//! `read()` returned, in any cuts; it calls back once per complete frame.
//! A frame that lies wholly inside one chunk is passed as a slice of that
//! chunk (no copy); only a frame cut by a chunk boundary is gathered in
//! the framer's buffer, which never holds more than
//! [`FramerConfig::max_frame`] bytes.
//!
//! How each frame is framed is decided by its first byte, as rsyslog
//! does:
//! - `1`-`9`: octet counting, `LEN SP MSG`; the frame is the `LEN` bytes
//!   after the space.
//! - LF or NUL at a frame start: an empty frame, skipped (some senders end
//!   octet-counted frames with an LF as well).
//! - anything else: non-transparent framing; the frame ends at the next
//!   LF or NUL (rsyslog accepts NUL as well), which is not part of it.
//!
//! Promises, for any input and any way it is cut into chunks:
//! - the same frames, in the same order, and the same [`FramerStats`];
//! - no frame is longer than `max_frame`;
//! - a frame longer than `max_frame` is skipped *in sync*: by its count,
//!   or up to its terminator, so the next frame is read correctly, and it
//!   is counted in [`FramerStats::oversized`]; skipping costs no memory,
//!   so an unterminated 100 MB frame costs at most `max_frame` bytes;
//! - [`Framer::buffered`] never exceeds `max_frame`, nor the buffer's
//!   capacity `max_frame` (plus the digits of a count, at most 20 bytes).
//!
//! # A bad count
//!
//! rsyslog (`runtime/tcps_sess.c`, `processDataRcvd`) reads digits at a
//! frame start (saturating above 200,000,000) and then:
//! - takes any byte after the digits as the delimiter, logging "delimiter
//!   is not SP" but still trusting the count;
//! - on a count of 0 ("invalid octet count") or one above its
//!   `maxFrameSize` (200,000 by default: "frame too large, change to octet
//!   stuffing") switches that frame to LF framing, with the digits kept as
//!   the start of the message;
//! - truncates (or splits, per `discardTruncatedMsg`) a counted frame
//!   longer than its maximum message size.
//!
//! This framer does the same fallback with one difference:
//! - a count above [`FramerConfig::max_count`] (a length prefix of 2^63,
//!   or 25 digits) is not believed: the frame falls back to LF framing
//!   with the digits as the start of its message, as rsyslog does above
//!   `maxFrameSize`; the fallback is counted in
//!   [`FramerStats::bad_counts`];
//! - a count followed by anything but a space (`2026-12-02 ...` sent with
//!   LF framing) is not believed either, unlike rsyslog, which would read
//!   2026 bytes as one frame and lose sync; the frame falls back to LF
//!   framing with the digits and that byte kept;
//! - a believed count between `max_frame` and `max_count` is skipped in
//!   sync and counted as oversized instead of being truncated.
//!
//! At the end of the stream ([`Framer::finish`]) an unterminated LF frame
//! is still a frame (rsyslog processes it too), and an incomplete counted
//! frame is dropped and counted in [`FramerStats::incomplete`], as rsyslog
//! drops it ("Incomplete frame at end of stream").

/// Limits of one framer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramerConfig {
    /// The longest frame passed on; longer ones are skipped in sync.
    pub max_frame: usize,
    /// The largest octet count believed. A larger count falls back to LF
    /// framing (see the module doc); counts between `max_frame` and this
    /// are skipped by their count.
    pub max_count: u64,
}

impl Default for FramerConfig {
    /// 64 KiB frames (the largest UDP datagram, so TCP and UDP senders get
    /// the same limit); counts up to 1 GiB are believed.
    fn default() -> Self {
        FramerConfig {
            max_frame: 64 * 1024,
            max_count: 1 << 30,
        }
    }
}

/// How a frame was delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `LEN SP MSG`.
    OctetCounting,
    /// Ended by LF or NUL (or by the end of the stream), RFC 6587's
    /// "non-transparent framing".
    NonTransparent,
}

/// One frame, borrowed from the chunk or from the framer's buffer; valid
/// during the callback only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub msg: &'a [u8],
    pub framing: Framing,
}

/// What a framer has seen, for counters and for the reason a connection
/// is closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Frames passed on.
    pub frames: u64,
    /// Frames longer than `max_frame`, skipped.
    pub oversized: u64,
    /// Octet counts not believed (above `max_count`, or not followed by a
    /// space); those frames were read with LF framing instead.
    pub bad_counts: u64,
    /// Counted frames cut off by the end of the stream, dropped.
    pub incomplete: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Start,
    /// Reading the digits of an octet count.
    Count(u64),
    /// Reading a counted frame; this many bytes are still to come.
    Counted(u64),
    /// Skipping an oversized counted frame.
    SkipCounted(u64),
    /// Reading an LF-terminated frame.
    Line,
    /// Skipping an oversized LF-terminated frame up to its terminator.
    SkipLine,
}

/// The framing state of one TCP connection.
pub struct Framer {
    config: FramerConfig,
    state: State,
    /// The part of the current frame that arrived in earlier chunks.
    buf: Vec<u8>,
    stats: FramerStats,
}

impl Framer {
    pub fn new(config: FramerConfig) -> Framer {
        Framer {
            config,
            state: State::Start,
            buf: Vec::new(),
            stats: FramerStats::default(),
        }
    }

    /// Frames the next bytes of the stream, calling `out` for each frame
    /// they complete.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Frame<'_>)) {
        while let Some(&first) = chunk.first() {
            match self.state {
                State::Start => match first {
                    b'1'..=b'9' => {
                        self.state = State::Count(u64::from(first - b'0'));
                        chunk = &chunk[1..];
                    }
                    b'\n' | b'\0' => chunk = &chunk[1..],
                    _ => self.state = State::Line,
                },
                State::Count(value) => {
                    chunk = self.count(value, chunk);
                }
                State::Counted(remaining) => {
                    let n = remaining.min(chunk.len() as u64) as usize;
                    if self.buf.is_empty() && n as u64 == remaining {
                        self.emit_borrowed(&chunk[..n], Framing::OctetCounting, out);
                    } else {
                        self.gather(&chunk[..n]);
                        if n as u64 == remaining {
                            self.emit_buffered(Framing::OctetCounting, out);
                        } else {
                            self.state = State::Counted(remaining - n as u64);
                        }
                    }
                    chunk = &chunk[n..];
                }
                State::SkipCounted(remaining) => {
                    let n = remaining.min(chunk.len() as u64) as usize;
                    self.state = if n as u64 == remaining {
                        State::Start
                    } else {
                        State::SkipCounted(remaining - n as u64)
                    };
                    chunk = &chunk[n..];
                }
                State::Line => match memchr::memchr2(b'\n', b'\0', chunk) {
                    Some(end) => {
                        if self.buf.len() + end > self.config.max_frame {
                            self.buf.clear();
                            self.stats.oversized += 1;
                            self.state = State::Start;
                        } else if self.buf.is_empty() {
                            self.emit_borrowed(&chunk[..end], Framing::NonTransparent, out);
                        } else {
                            self.gather(&chunk[..end]);
                            self.emit_buffered(Framing::NonTransparent, out);
                        }
                        chunk = &chunk[end + 1..];
                    }
                    None => {
                        if self.buf.len() + chunk.len() > self.config.max_frame {
                            self.buf.clear();
                            self.stats.oversized += 1;
                            self.state = State::SkipLine;
                        } else {
                            self.gather(chunk);
                        }
                        chunk = &[];
                    }
                },
                State::SkipLine => match memchr::memchr2(b'\n', b'\0', chunk) {
                    Some(end) => {
                        self.state = State::Start;
                        chunk = &chunk[end + 1..];
                    }
                    None => chunk = &[],
                },
            }
        }
    }

    /// Ends the stream: an unterminated LF frame is passed on, an
    /// incomplete counted frame is dropped and counted. The framer is then
    /// ready for a new stream.
    pub fn finish(&mut self, out: &mut impl FnMut(Frame<'_>)) {
        match self.state {
            State::Line => self.emit_buffered(Framing::NonTransparent, out),
            State::Count(_) | State::Counted(_) => self.stats.incomplete += 1,
            State::Start | State::SkipCounted(_) | State::SkipLine => {}
        }
        self.buf.clear();
        self.state = State::Start;
    }

    /// Counters so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Bytes of an unfinished frame held between chunks.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of memory the buffer holds (its capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the buffer when it holds no unfinished frame, so that an idle
    /// connection costs no buffer memory. Call when the socket has nothing
    /// more to read.
    pub fn release_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Reads count digits from `chunk`; returns what is left of it.
    fn count<'c>(&mut self, mut value: u64, chunk: &'c [u8]) -> &'c [u8] {
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    match value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                        .filter(|&v| v <= self.config.max_count)
                    {
                        Some(v) => value = v,
                        None => {
                            // Not believed: the digits so far start an LF
                            // frame, and this digit is read as part of it.
                            self.fall_back_to_line(value);
                            return &chunk[i..];
                        }
                    }
                }
                b' ' => {
                    self.state = if value <= self.config.max_frame as u64 {
                        State::Counted(value)
                    } else {
                        self.stats.oversized += 1;
                        State::SkipCounted(value)
                    };
                    return &chunk[i + 1..];
                }
                _ => {
                    self.fall_back_to_line(value);
                    return &chunk[i..];
                }
            }
        }
        self.state = State::Count(value);
        &[]
    }

    /// Makes the digits of `value` the start of an LF-framed frame.
    fn fall_back_to_line(&mut self, value: u64) {
        self.stats.bad_counts += 1;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value).as_bytes();
        if digits.len() > self.config.max_frame {
            self.stats.oversized += 1;
            self.state = State::SkipLine;
        } else {
            self.gather(digits);
            self.state = State::Line;
        }
    }

    /// Appends to the buffer, never letting its capacity pass `max_frame`
    /// (callers check the length first).
    fn gather(&mut self, bytes: &[u8]) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = (self.buf.capacity() * 2)
                .max(needed)
                .max(256)
                .min(self.config.max_frame.max(needed));
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    fn emit_borrowed(&mut self, msg: &[u8], framing: Framing, out: &mut impl FnMut(Frame<'_>)) {
        self.stats.frames += 1;
        self.state = State::Start;
        out(Frame { msg, framing });
    }

    fn emit_buffered(&mut self, framing: Framing, out: &mut impl FnMut(Frame<'_>)) {
        self.stats.frames += 1;
        self.state = State::Start;
        out(Frame {
            msg: &self.buf,
            framing,
        });
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Frames = Vec<(Vec<u8>, Framing)>;

    fn frame_all(config: FramerConfig, chunks: &[&[u8]]) -> (Frames, FramerStats) {
        let mut f = Framer::new(config);
        let mut got = Vec::new();
        let mut push = |fr: Frame<'_>| got.push((fr.msg.to_vec(), fr.framing));
        for c in chunks {
            f.feed(c, &mut push);
            assert!(f.buffered() <= config.max_frame);
            assert!(f.capacity() <= config.max_frame.max(20));
        }
        f.finish(&mut push);
        (got, f.stats())
    }

    /// Frames `stream` whole, byte by byte, and in chunks of 2, 3 and 7,
    /// checks that all agree, and returns the frames.
    fn frames(config: FramerConfig, stream: &[u8]) -> (Frames, FramerStats) {
        let whole = frame_all(config, &[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame_all(config, &bytes), whole, "byte by byte");
        for n in [2, 3, 7] {
            let cut: Vec<&[u8]> = stream.chunks(n).collect();
            assert_eq!(frame_all(config, &cut), whole, "chunks of {n}");
        }
        whole
    }

    fn small(max_frame: usize) -> FramerConfig {
        FramerConfig {
            max_frame,
            max_count: 1000,
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/syslog/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn logger_octet_counting_stream() {
        for name in ["logger_tcp_octet_rfc5424", "logger_tcp_octet_rfc3164"] {
            let (got, stats) = frames(FramerConfig::default(), &fixture(name));
            assert_eq!(got.len(), 3, "{name}");
            for ((msg, framing), want) in
                got.iter().zip(["first line", "second line", "third line"])
            {
                assert_eq!(*framing, Framing::OctetCounting);
                assert!(msg.starts_with(b"<13>"), "{name}: {msg:?}");
                assert!(msg.ends_with(want.as_bytes()), "{name}: {msg:?}");
            }
            assert_eq!(
                stats,
                FramerStats {
                    frames: 3,
                    ..Default::default()
                }
            );
        }
    }

    #[test]
    fn logger_lf_stream() {
        let (got, stats) = frames(FramerConfig::default(), &fixture("logger_tcp_lf_rfc5424"));
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|(m, f)| *f == Framing::NonTransparent && m.starts_with(b"<13>1 ")));
        assert!(got[2].0.ends_with(b"third line"));
        assert_eq!(stats.frames, 3);
    }

    #[test]
    fn framing_is_decided_per_frame() {
        let (got, _) = frames(small(100), b"5 <13>a<14>b\n3 xyz\0<15>c\n\n\0");
        assert_eq!(
            got,
            vec![
                (b"<13>a".to_vec(), Framing::OctetCounting),
                (b"<14>b".to_vec(), Framing::NonTransparent),
                (b"xyz".to_vec(), Framing::OctetCounting),
                (b"<15>c".to_vec(), Framing::NonTransparent),
            ]
        );
    }

    #[test]
    fn oversized_frames_are_skipped_in_sync() {
        // A counted frame of 20 bytes with max 10, then a good one.
        let stream = b"20 aaaaaaaaaaaaaaaaaaaa3 abc";
        let (got, stats) = frames(small(10), stream);
        assert_eq!(got, vec![(b"abc".to_vec(), Framing::OctetCounting)]);
        assert_eq!(stats.oversized, 1);
        // An LF frame of 11 bytes, then a good one, then one of exactly 10.
        let (got, stats) = frames(small(10), b"<bbbbbbbbbb\n<ok\n<123456789\n");
        assert_eq!(
            got,
            vec![
                (b"<ok".to_vec(), Framing::NonTransparent),
                (b"<123456789".to_vec(), Framing::NonTransparent)
            ]
        );
        assert_eq!(stats.oversized, 1);
        // A counted frame of exactly max_frame is kept.
        let (got, _) = frames(small(3), b"3 abc");
        assert_eq!(got, vec![(b"abc".to_vec(), Framing::OctetCounting)]);
    }

    #[test]
    fn bad_counts_fall_back_to_lf_framing() {
        // 2^63 is far above max_count: the digits start an LF frame.
        let (got, stats) = frames(
            FramerConfig::default(),
            b"9223372036854775808 <13>x\n7 <13>abc",
        );
        assert_eq!(
            got,
            vec![
                (
                    b"9223372036854775808 <13>x".to_vec(),
                    Framing::NonTransparent
                ),
                (b"<13>abc".to_vec(), Framing::OctetCounting),
            ]
        );
        assert_eq!(stats.bad_counts, 1);
        // A count not followed by a space.
        let (got, stats) = frames(small(100), b"2026-12-02 disk full\n");
        assert_eq!(
            got,
            vec![(b"2026-12-02 disk full".to_vec(), Framing::NonTransparent)]
        );
        assert_eq!(stats.bad_counts, 1);
        // 30 digits: never more than a few bytes of digits are held.
        let long = [b"1".repeat(30), b" tail\n".to_vec()].concat();
        let (got, stats) = frames(small(100), &long);
        assert_eq!(
            got,
            vec![(long[..long.len() - 1].to_vec(), Framing::NonTransparent)]
        );
        assert_eq!(stats.bad_counts, 1);
        // Digits longer than max_frame: skipped as an oversized line.
        let (got, stats) = frames(small(3), b"123456 x\n<ok\n");
        assert_eq!(got, vec![(b"<ok".to_vec(), Framing::NonTransparent)]);
        assert_eq!((stats.bad_counts, stats.oversized), (1, 1));
    }

    #[test]
    fn end_of_stream() {
        let (got, stats) = frames(small(100), b"<13>no newline");
        assert_eq!(
            got,
            vec![(b"<13>no newline".to_vec(), Framing::NonTransparent)]
        );
        assert_eq!(stats.incomplete, 0);
        let (got, stats) = frames(small(100), b"10 <13>abc");
        assert!(got.is_empty());
        assert_eq!(stats.incomplete, 1);
        let (got, stats) = frames(small(100), b"12");
        assert!(got.is_empty());
        assert_eq!(stats.incomplete, 1);
    }

    #[test]
    fn an_unterminated_100_mb_frame_costs_at_most_max_frame() {
        let config = FramerConfig::default();
        let mut f = Framer::new(config);
        let chunk = vec![b'x'; 64 * 1024];
        let mut frames = 0;
        for _ in 0..(100 << 20) / chunk.len() {
            f.feed(&chunk, &mut |_| frames += 1);
            assert!(f.capacity() <= config.max_frame);
        }
        f.feed(b"\n<13>next\n", &mut |fr| {
            assert_eq!(fr.msg, b"<13>next");
            frames += 1;
        });
        assert_eq!(frames, 1);
        assert_eq!(f.stats().oversized, 1);
        f.release_idle();
        assert_eq!(f.capacity(), 0);
    }

    #[test]
    fn a_huge_believed_count_is_skipped_without_buffering() {
        let config = FramerConfig::default();
        let mut f = Framer::new(config);
        let mut seen = Vec::new();
        f.feed(b"1073741824 ", &mut |fr| seen.push(fr.msg.to_vec()));
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..1024 {
            f.feed(&chunk, &mut |fr| seen.push(fr.msg.to_vec()));
            assert_eq!(f.capacity(), 0);
        }
        f.feed(b"4 <1>z", &mut |fr| seen.push(fr.msg.to_vec()));
        assert_eq!(seen, vec![b"<1>z".to_vec()]);
        assert_eq!(f.stats().oversized, 1);
    }
}
