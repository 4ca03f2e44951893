//! The ingest pipeline: the one way every source stores entries.
//!
//! Every way in (the fd-passing socket, HTTP POST, Loki push, syslog,
//! kmsg, the Docker plugin) stores through a [`Pipeline`], so the rules
//! below hold for all of them alike:
//!
//! - **Origins are checked** ([`Pipeline::origin`]): the source name is
//!   escaped and cut to [`MAX_SOURCE_LEN`], label keys must be valid, the
//!   origin must fit the ring's origin slot whole (labels are never cut
//!   silently), and a full origin table is a clear error.
//! - **One long-line policy** ([`LineLimit`]): a message longer than
//!   `--max-line-len` becomes several entries flagged `partial` (nothing
//!   dropped), or one flagged `truncated` with `--long-lines truncate`.
//!   [`super::lines::LineSplitter`] applies the same function to byte
//!   streams; [`Batch`] to message-oriented input.
//! - **One per-source rate limit** ([`Limiter`]): journald's fixed window,
//!   the excess dropped and counted in one "suppressed N lines from SOURCE"
//!   entry per window.
//! - **Batches, not hand-built spans**: a source pushes messages into a
//!   [`Batch`] (with their flags and source time) and stores it with one
//!   claim per run of one origin.
//! - **Pacing** ([`Pipeline::store_paced`]): sources that can wait (their
//!   producer's pipe holds the lines meanwhile) store in steps while a
//!   follower that reads at full speed lags, within the `--follower-pacing`
//!   budget ([`super::pace`]).
//! - **Throttled notices** ([`Pipeline::notice`]): problems with single
//!   registrations or clients go to the self log through one
//!   [`Throttle`], so a flood of bad input cannot fill the ring with
//!   warnings.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::pace::Pacer;
use super::{IngestConfig, LongLines, RateLimit};
use crate::entry::{Flags, Level, Origin, SourceTime};
use crate::ring::{OriginHandle, Ring, RingError, Span, MAX_SOURCE_LEN};
use crate::selflog::{SelfLog, Throttle};

/// Notices logged one by one: at most `NOTICE_BURST` per `NOTICE_WINDOW`;
/// the rest are counted and reported in one entry.
const NOTICE_BURST: u32 = 5;
const NOTICE_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// The pipeline every source stores through. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline(Arc<Shared>);

struct Shared {
    ring: Arc<Ring>,
    selflog: SelfLog,
    config: IngestConfig,
    /// Sources that can wait do so here for followers that lag in a burst.
    pacer: Arc<Pacer>,
    /// Problems with single registrations, clients or messages.
    notices: Throttle,
}

/// Why an origin cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("the source name is empty")]
    EmptySource,
    #[error("the source name is {0} bytes long; at most {MAX_SOURCE_LEN} are kept")]
    SourceTooLong(usize),
    #[error("label key {0:?}: keys are letters, digits, `_`, `-` and `.`")]
    LabelKey(String),
    #[error(
        "source {name:?} with {labels} labels does not fit in one origin slot of the ring; \
         use fewer or shorter labels"
    )]
    TooLarge { name: String, labels: usize },
    #[error("{0}")]
    Table(String),
}

impl Pipeline {
    /// A pipeline storing into `ring` under `config`.
    pub fn new(ring: Arc<Ring>, selflog: SelfLog, config: IngestConfig) -> Pipeline {
        let pacer = Arc::new(Pacer::new(ring.clone(), config.follower_pacing));
        Pipeline::with_pacer(ring, selflog, config, pacer)
    }

    /// A pipeline with a pacer of its own limits (tests).
    pub fn with_pacer(
        ring: Arc<Ring>,
        selflog: SelfLog,
        config: IngestConfig,
        pacer: Arc<Pacer>,
    ) -> Pipeline {
        Pipeline(Arc::new(Shared {
            ring,
            selflog,
            config,
            pacer,
            notices: Throttle::new(NOTICE_WINDOW, NOTICE_BURST),
        }))
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.0.ring
    }

    pub fn selflog(&self) -> &SelfLog {
        &self.0.selflog
    }

    pub fn config(&self) -> &IngestConfig {
        &self.0.config
    }

    /// Followers register here so that pacing sources can wait for them.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.0.pacer
    }

    /// The long-line policy, with the limit kept within what one ring
    /// entry holds.
    pub fn line_limit(&self) -> LineLimit {
        LineLimit {
            max_line_len: self
                .0
                .config
                .max_line_len
                .clamp(1, self.0.ring.max_entry_len()),
            long_lines: self.0.config.long_lines,
        }
    }

    /// A new, empty batch under this pipeline's line limit.
    pub fn batch(&self) -> Batch {
        Batch::new(self.line_limit())
    }

    /// A rate limiter for one source, when `--rate-limit` is set.
    pub fn limiter(&self) -> Option<Limiter> {
        self.0.config.rate_limit.map(Limiter::new)
    }

    /// Checks an origin from outside and interns it (see the module docs).
    /// A source name is escaped (NUL and invalid UTF-8 as `\xNN`) and must
    /// be at most [`MAX_SOURCE_LEN`] bytes; callers that prefer cutting a
    /// long name to refusing it use [`Origin::source_from_bytes`] first.
    pub fn origin(&self, origin: Origin) -> Result<OriginHandle, OriginError> {
        if origin.source.len() > MAX_SOURCE_LEN {
            return Err(OriginError::SourceTooLong(origin.source.len()));
        }
        if let Some((k, _)) = origin
            .labels()
            .iter()
            .find(|(k, _)| !crate::filter::valid_label_key(k))
        {
            return Err(OriginError::LabelKey(k.clone()));
        }
        let handle = self.0.ring.origin(origin.clone()).map_err(|e| match e {
            RingError::TooManyOrigins(_) => OriginError::Table(e.to_string()),
            e => OriginError::Table(e.to_string()),
        })?;
        if **handle.origin() != origin {
            return Err(OriginError::TooLarge {
                labels: origin.labels().len(),
                name: origin.source,
            });
        }
        Ok(handle)
    }

    /// Stores `spans` of `buf` (from a [`Batch`] or a line splitter) as
    /// entries of `origin`, after the rate limit; returns their seqs.
    pub fn store(
        &self,
        origin: &OriginHandle,
        limiter: Option<&mut Limiter>,
        buf: &[u8],
        spans: &[Span],
    ) -> Range<u64> {
        let spans = self.admit(origin, limiter, spans);
        if spans.is_empty() {
            let next = self.0.ring.published_seq();
            return next..next;
        }
        self.append(origin, buf, spans)
    }

    /// Like [`store`](Self::store), in pacing steps: before each step it
    /// waits for followers that lag ([`Pacer::admit`]). For sources whose
    /// producers can wait (a pipe holds their output meanwhile).
    pub async fn store_paced(
        &self,
        origin: &OriginHandle,
        limiter: Option<&mut Limiter>,
        buf: &[u8],
        spans: &[Span],
    ) {
        let mut rest = self.admit(origin, limiter, spans);
        let (max_entries, max_bytes) = self.0.pacer.step();
        while !rest.is_empty() {
            let mut bytes = 0;
            let mut take = 0;
            for s in rest.iter().take(max_entries) {
                bytes += s.len as usize;
                if take > 0 && bytes > max_bytes {
                    break;
                }
                take += 1;
            }
            self.0.pacer.admit().await;
            self.append(origin, buf, &rest[..take]);
            rest = &rest[take..];
        }
    }

    /// Stores a whole batch of one origin and clears it.
    pub fn store_batch(
        &self,
        origin: &OriginHandle,
        limiter: Option<&mut Limiter>,
        batch: &mut Batch,
    ) -> Range<u64> {
        let seqs = self.store(origin, limiter, &batch.buf, &batch.spans);
        batch.clear();
        seqs
    }

    /// The spans the rate limit lets through.
    fn admit<'s>(
        &self,
        origin: &OriginHandle,
        limiter: Option<&mut Limiter>,
        spans: &'s [Span],
    ) -> &'s [Span] {
        match limiter {
            Some(limiter) if !spans.is_empty() => {
                let keep = limiter.admit(spans.len(), &self.0.selflog, &origin.origin().source);
                &spans[..keep]
            }
            _ => spans,
        }
    }

    fn append(&self, origin: &OriginHandle, buf: &[u8], spans: &[Span]) -> Range<u64> {
        match self.0.ring.append_batch(origin, buf, spans) {
            Ok(seqs) => seqs,
            Err(e) => {
                // Batches and splitters only make spans inside their
                // buffer: this is a bug, reported rather than hidden.
                self.0.selflog.error(format!(
                    "dropped {} entries of source {:?}: {e}",
                    spans.len(),
                    origin.origin().source
                ));
                let next = self.0.ring.published_seq();
                next..next
            }
        }
    }

    /// Self-logs a problem with one registration, client or message,
    /// unless too many were reported lately (they are counted, and the
    /// count is reported by [`flush_notices`](Self::flush_notices)).
    pub fn notice(&self, level: Level, msg: impl FnOnce() -> String) {
        if let Some(report) = self.0.notices.note(1) {
            if report.events > 1 {
                self.0.selflog.warn(format!(
                    "suppressed {} more ingest warnings like the ones before",
                    report.events - 1
                ));
            }
            self.0.selflog.log(level, msg());
        }
    }

    /// When the count of notices held back is due, if there are any.
    pub fn notices_due(&self) -> Option<Instant> {
        self.0.notices.due()
    }

    /// Reports the notices held back, if any.
    pub fn flush_notices(&self) {
        if let Some(r) = self.0.notices.pending() {
            self.0.selflog.warn(format!(
                "suppressed {} more ingest warnings like the ones before",
                r.events
            ));
        }
    }
}

/// The long-line policy: the longest entry, and what happens to longer
/// messages. [`LineLimit::pieces`] is the one place that cuts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineLimit {
    /// The longest entry, in bytes (at least 1).
    pub max_line_len: usize,
    pub long_lines: LongLines,
}

impl LineLimit {
    /// The entries a message of `len` bytes at `start` becomes: itself
    /// when it fits; else, with [`LongLines::Split`], pieces of
    /// `max_line_len` bytes flagged `partial` and a last one with the rest
    /// (not flagged); with [`LongLines::Truncate`], its first
    /// `max_line_len` bytes flagged `truncated`.
    pub fn pieces(&self, start: usize, len: usize, flags: Flags, mut push: impl FnMut(Span)) {
        let max = self.max_line_len.max(1);
        let span =
            |start: usize, len: usize, flags: Flags| Span::new(start as u32, len as u32, flags);
        if len <= max {
            push(span(start, len, flags));
            return;
        }
        if self.long_lines == LongLines::Truncate {
            push(span(start, max, flags.with_truncated(true)));
            return;
        }
        let (mut at, mut left) = (start, len);
        while left > max {
            push(span(at, max, flags.with_partial(true)));
            at += max;
            left -= max;
        }
        push(span(at, left, flags));
    }
}

/// Messages of one origin on their way into the ring: their bytes in one
/// buffer, and the entries they become under the line limit.
#[derive(Debug)]
pub struct Batch {
    limit: LineLimit,
    buf: Vec<u8>,
    spans: Vec<Span>,
    messages: u64,
}

impl Batch {
    pub fn new(limit: LineLimit) -> Batch {
        Batch {
            limit,
            buf: Vec::new(),
            spans: Vec::new(),
            messages: 0,
        }
    }

    /// Adds one message; a long one becomes several entries (see
    /// [`LineLimit::pieces`]), each carrying `source_time`.
    pub fn push(&mut self, msg: &[u8], flags: Flags, source_time: SourceTime) {
        let start = self.buf.len();
        self.buf.extend_from_slice(msg);
        let spans = &mut self.spans;
        self.limit.pieces(start, msg.len(), flags, |span| {
            spans.push(span.with_source_time(source_time))
        });
        self.messages += 1;
    }

    /// Messages pushed since the last clear.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Entries the messages became.
    pub fn entries(&self) -> usize {
        self.spans.len()
    }

    /// Message bytes held.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.messages = 0;
    }

    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }
}

/// The per-source rate limit: a fixed window from the first line after the
/// previous window ended, as journald does.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    window: Instant,
    used: u64,
    suppressed: u64,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            window: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }

    /// How many of `n` new entries may be stored.
    pub fn admit(&mut self, n: usize, selflog: &SelfLog, source: &str) -> usize {
        let now = Instant::now();
        if now.duration_since(self.window) >= self.limit.interval {
            self.report(selflog, source);
            self.window = now;
            self.used = 0;
        }
        let keep = (n as u64).min(self.limit.lines.saturating_sub(self.used));
        self.used += keep;
        self.suppressed += n as u64 - keep;
        keep as usize
    }

    /// When the current window's suppression count is due, if any.
    pub fn due(&self) -> Option<Instant> {
        (self.suppressed > 0).then(|| self.window + self.limit.interval)
    }

    /// Self-logs the lines suppressed in this window, if any.
    pub fn report(&mut self, selflog: &SelfLog, source: &str) {
        if self.suppressed > 0 {
            selflog.warn(format!(
                "suppressed {} lines from {source}",
                self.suppressed
            ));
            self.suppressed = 0;
        }
    }
}

/// A source name from untrusted bytes, checked as [`Pipeline::origin`]
/// checks it, for front ends that refuse rather than cut (HTTP).
pub fn source_name(raw: &str) -> Result<String, OriginError> {
    if raw.is_empty() {
        return Err(OriginError::EmptySource);
    }
    if raw.len() > MAX_SOURCE_LEN {
        return Err(OriginError::SourceTooLong(raw.len()));
    }
    Ok(Origin::source_from_bytes(raw.as_bytes(), MAX_SOURCE_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingConfig;
    use std::time::Duration;

    fn pipeline(config: IngestConfig) -> Pipeline {
        let ring = Arc::new(Ring::open(&RingConfig::new(1024)).unwrap());
        let selflog = SelfLog::new(ring.clone()).unwrap();
        Pipeline::new(ring, selflog, config)
    }

    #[test]
    fn long_messages_become_pieces_under_one_policy() {
        let mut limit = LineLimit {
            max_line_len: 4,
            long_lines: LongLines::Split,
        };
        let mut got = Vec::new();
        limit.pieces(10, 10, Flags::default(), |s| got.push(s));
        let lens: Vec<_> = got
            .iter()
            .map(|s| (s.start, s.len, s.flags.partial()))
            .collect();
        assert_eq!(lens, vec![(10, 4, true), (14, 4, true), (18, 2, false)]);
        got.clear();
        limit.long_lines = LongLines::Truncate;
        limit.pieces(0, 10, Flags::default(), |s| got.push(s));
        assert_eq!(got.len(), 1);
        assert!(got[0].flags.truncated() && got[0].len == 4);
        got.clear();
        limit.pieces(0, 4, Flags::default(), |s| got.push(s));
        assert_eq!((got[0].len, got[0].flags), (4, Flags::default()));
    }

    #[test]
    fn a_batch_stores_its_messages_with_flags_and_source_times() {
        let p = pipeline(IngestConfig {
            max_line_len: 3,
            ..IngestConfig::default()
        });
        let o = p.origin(Origin::new("s")).unwrap();
        let mut b = p.batch();
        b.push(b"abcdefg", Flags::default(), SourceTime::Kept(7));
        b.push(b"xy", Flags::default(), SourceTime::None);
        assert_eq!((b.messages(), b.entries(), b.bytes()), (2, 4, 9));
        let seqs = p.store_batch(&o, None, &mut b);
        assert_eq!(seqs.end - seqs.start, 4);
        assert!(b.is_empty());
        let mut batch = crate::ring::ReadBatch::new();
        p.ring()
            .snapshot()
            .cursor_from(seqs.start, crate::ring::All)
            .read(&mut batch, 10);
        let got: Vec<_> = batch
            .iter()
            .filter_map(|r| match r {
                crate::ring::Read::Entry(e) => {
                    Some((e.msg.to_vec(), e.flags.partial(), e.source_time))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (b"abc".to_vec(), true, SourceTime::Kept(7)),
                (b"def".to_vec(), true, SourceTime::Kept(7)),
                (b"g".to_vec(), false, SourceTime::Kept(7)),
                (b"xy".to_vec(), false, SourceTime::None),
            ]
        );
    }

    #[test]
    fn origins_are_checked_whole() {
        let p = pipeline(IngestConfig::default());
        assert!(p
            .origin(Origin::new("ok").with_label("a.b-c_d", "v"))
            .is_ok());
        assert!(matches!(
            p.origin(Origin::new("s").with_label("a b", "v")),
            Err(OriginError::LabelKey(_))
        ));
        assert!(matches!(
            p.origin(Origin::new("x".repeat(MAX_SOURCE_LEN + 1))),
            Err(OriginError::SourceTooLong(_))
        ));
        let big = Origin::new("s").with_label("k", "v".repeat(4096));
        assert!(matches!(p.origin(big), Err(OriginError::TooLarge { .. })));
        assert!(source_name("").is_err());
        assert_eq!(source_name("a\0b").unwrap(), "a\\x00b");
    }

    #[test]
    fn the_rate_limit_admits_per_window_and_counts_the_rest() {
        let p = pipeline(IngestConfig::default());
        let mut limit = Limiter::new(RateLimit {
            lines: 10,
            interval: Duration::from_secs(3600),
        });
        assert_eq!(limit.admit(4, p.selflog(), "s"), 4);
        assert_eq!(limit.admit(10, p.selflog(), "s"), 6);
        assert_eq!(limit.admit(3, p.selflog(), "s"), 0);
        assert_eq!(limit.suppressed, 7);
        assert!(limit.due().is_some());
        let before = p.ring().published_seq();
        limit.report(p.selflog(), "s");
        assert_eq!(p.ring().published_seq(), before + 1, "one report entry");
        assert_eq!(limit.suppressed, 0);
        assert!(limit.due().is_none());
        // A new window admits again.
        limit.window -= Duration::from_secs(3601);
        assert_eq!(limit.admit(3, p.selflog(), "s"), 3);
    }

    #[test]
    fn notices_are_throttled_and_the_rest_counted() {
        let p = pipeline(IngestConfig::default());
        let before = p.ring().published_seq();
        for i in 0..100 {
            p.notice(Level::Warning, || format!("warning {i}"));
        }
        let burst = u64::from(NOTICE_BURST);
        assert_eq!(p.ring().published_seq() - before, burst);
        assert!(p.notices_due().is_some());
        p.flush_notices();
        assert_eq!(p.ring().published_seq() - before, burst + 1);
        assert!(p.notices_due().is_none());
    }
}
