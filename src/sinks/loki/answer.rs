//! What Loki's answer to a push means for the forwarder: done, try again,
//! or refused for good (and how many lines, for which reasons).
//!
//! | answer | outcome |
//! |--------|---------|
//! | 2xx | [`PushOutcome::Accepted`] |
//! | 429, 5xx, no answer | [`PushOutcome::Retry`], honouring `Retry-After` |
//! | 401, 403, 404, 407, 408, 421 | [`PushOutcome::Retry`] as [`RetryCause::Setup`]: nothing was stored and nothing about the entries is wrong (credentials, tenant, URL, proxy); the ring keeps them while someone fixes the setup |
//! | 413 | [`PushOutcome::TooLarge`]: send the same entries in smaller batches |
//! | other 4xx (400, 422, ...) | [`PushOutcome::Rejected`] with counts by reason; the cursor moves on |
//!
//! # Reading a 400
//!
//! Loki stores the good entries of a push and answers 400 listing the
//! others, in one of two texts (grafana/loki, `pkg/distributor` and
//! `pkg/ingester/stream.go`):
//!
//! - the distributor's validation errors, grouped by message and joined
//!   with `"; "`, each group prefixed `"N errors like: "` when there is
//!   more than one message or more than one of a message, e.g.
//!   `3 errors like: entry for stream '{a="b"}' has timestamp too old: ...; 1 errors like: max entry size '262144' bytes exceeded for stream '{a="b"}' while adding an entry with length '300000' bytes`;
//! - an ingester's, one line per ignored entry (at most
//!   `max_returned_stream_errors`, 10 by default) and a total:
//!   `entry with timestamp 2024-01-01 00:00:00 +0000 UTC ignored, reason: 'entry out of order',\n`
//!   `...user 'fake', total ignored: 35 out of 40 for stream: {a="b"}`.
//!   The entries beyond the listed ones are counted under the reason of
//!   the last listed one (Loki builds this text only when that reason is
//!   out-of-order, too-far-behind or a stream rate limit).
//!
//! Entry-level reasons count entries. Stream-level reasons (labels Loki
//! cannot take, too many labels) refuse the whole stream: its lines in the
//! batch are counted when the message names a stream of the batch, else
//! one per message. Loki reports only the last failing stream of an
//! ingester, so the counts are what Loki said, a lower bound when several
//! streams failed there; a 4xx whose text names no known reason is
//! counted as the whole batch refused, reason `unknown`. Counts never
//! exceed the batch's lines. Parsing is linear in the body, which the HTTP
//! client caps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::sinks::http::{parse_retry_after, HttpAnswer, TransportError};

/// Why Loki refused entries; the names are Loki's own `reason` values
/// (its `discarded_samples_total` metric), so the two line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LokiReason {
    TooOld,
    TooNew,
    LineTooLong,
    OutOfOrder,
    TooFarBehind,
    InvalidLabels,
    TooManyLabels,
    StructuredMetadata,
    StreamLimit,
    RateLimited,
    Blocked,
    Unknown,
}

impl LokiReason {
    pub const ALL: [LokiReason; 12] = [
        LokiReason::TooOld,
        LokiReason::TooNew,
        LokiReason::LineTooLong,
        LokiReason::OutOfOrder,
        LokiReason::TooFarBehind,
        LokiReason::InvalidLabels,
        LokiReason::TooManyLabels,
        LokiReason::StructuredMetadata,
        LokiReason::StreamLimit,
        LokiReason::RateLimited,
        LokiReason::Blocked,
        LokiReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LokiReason::TooOld => "greater_than_max_sample_age",
            LokiReason::TooNew => "too_far_in_future",
            LokiReason::LineTooLong => "line_too_long",
            LokiReason::OutOfOrder => "out_of_order",
            LokiReason::TooFarBehind => "too_far_behind",
            LokiReason::InvalidLabels => "invalid_labels",
            LokiReason::TooManyLabels => "max_label_names_per_series",
            LokiReason::StructuredMetadata => "structured_metadata",
            LokiReason::StreamLimit => "stream_limit",
            LokiReason::RateLimited => "rate_limited",
            LokiReason::Blocked => "blocked_ingestion",
            LokiReason::Unknown => "unknown",
        }
    }

    /// Whether Loki drops the whole stream for this reason.
    fn is_stream_level(self) -> bool {
        matches!(self, LokiReason::InvalidLabels | LokiReason::TooManyLabels)
    }
}

impl fmt::Display for LokiReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group of a Loki error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedError {
    pub reason: LokiReason,
    /// How many times Loki says it happened (entries, or streams for a
    /// stream-level reason).
    pub count: u64,
    /// The stream's labels as Loki wrote them, where the message names one.
    pub stream: Option<String>,
}

/// Reads a Loki error text into groups (see the module doc). Unknown text
/// gives groups of reason [`LokiReason::Unknown`]; an empty text gives none.
pub fn parse_error_body(body: &str) -> Vec<ReportedError> {
    if body.contains("total ignored: ") {
        return parse_ingester_text(body);
    }
    let mut groups: Vec<(u64, String)> = Vec::new();
    for segment in body.trim().split("; ") {
        let (count, message) = match split_count_prefix(segment) {
            Some((n, rest)) => (Some(n), rest),
            None => (None, segment),
        };
        let starts_group = count.is_some() || groups.is_empty() || known_prefix(message).is_some();
        if starts_group {
            groups.push((count.unwrap_or(1), message.to_string()));
        } else if let Some(last) = groups.last_mut() {
            // A "; " inside a quoted label value, not a separator.
            last.1.push_str("; ");
            last.1.push_str(segment);
        }
    }
    groups
        .into_iter()
        .filter(|(_, m)| !m.trim().is_empty())
        .map(|(count, message)| {
            let (reason, stream) = classify_message(&message);
            ReportedError {
                reason,
                count,
                stream,
            }
        })
        .collect()
}

/// `"N errors like: rest"` -> `(N, rest)`.
fn split_count_prefix(segment: &str) -> Option<(u64, &str)> {
    let (n, rest) = leading_count(segment)?;
    Some((n, rest.strip_prefix(" errors like: ")?))
}

/// The decimal count `text` starts with, and what follows it. A count
/// with more digits than a u64 holds is "very many" (`u64::MAX`): what an
/// answer claims is capped to the batch it answers later, never trusted.
fn leading_count(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n = text[..digits].parse().unwrap_or(u64::MAX);
    Some((n, &text[digits..]))
}

/// The message texts of Loki's validation errors, as they start.
const PREFIXES: [&str; 9] = [
    "entry for stream '",
    "max entry size '",
    "stream '",
    "error parsing labels '",
    "error at least one label pair",
    "missing required labels '",
    "ingestion rate limit exceeded",
    "maximum active stream limit exceeded",
    "ingestion blocked for user",
];

fn known_prefix(message: &str) -> Option<&'static str> {
    PREFIXES.iter().copied().find(|p| message.starts_with(p))
}

/// The text between `open` and the last `close` after it.
fn quoted_between<'a>(message: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = message.find(open)? + open.len();
    let end = message[start..].rfind(close)? + start;
    Some(&message[start..end])
}

/// The reason of one message, and the stream it names.
fn classify_message(message: &str) -> (LokiReason, Option<String>) {
    use LokiReason::*;
    let has = |needle: &str| message.contains(needle);
    let reason = if has("has timestamp too old") {
        TooOld
    } else if has("has timestamp too new") {
        TooNew
    } else if message.starts_with("max entry size '") || has("line too long") {
        LineTooLong
    } else if has("entry out of order") {
        OutOfOrder
    } else if has("entry too far behind") {
        TooFarBehind
    } else if has(" label names; limit ") {
        TooManyLabels
    } else if has("structured metadata") {
        StructuredMetadata
    } else if has("error parsing labels '")
        || has("has label name too long")
        || has("has label value too long")
        || has("has duplicate label name")
        || has("at least one label pair is required")
        || has("missing required labels '")
    {
        InvalidLabels
    } else if has("maximum active stream limit exceeded") {
        StreamLimit
    } else if has("rate limit exceeded") {
        RateLimited
    } else if has("ingestion blocked for user") {
        Blocked
    } else {
        Unknown
    };
    let stream = if reason.is_stream_level() {
        quoted_between(message, "error parsing labels '", "' with error: ")
            .or_else(|| quoted_between(message, "for stream '", "' (policy: "))
            .or_else(|| quoted_between(message, "entry for stream '", "' has "))
            .or_else(|| quoted_between(message, "stream '", "' has "))
            .map(str::to_string)
    } else {
        None
    };
    (reason, stream)
}

fn parse_ingester_text(body: &str) -> Vec<ReportedError> {
    let mut out = Vec::new();
    let mut listed: Vec<LokiReason> = Vec::new();
    for line in body.split('\n') {
        if let Some(reason) = quoted_between(line, "ignored, reason: '", "',") {
            listed.push(classify_message(reason).0);
            continue;
        }
        let Some(at) = line.find("total ignored: ") else {
            continue;
        };
        let rest = &line[at + "total ignored: ".len()..];
        let total = leading_count(rest).map_or(0, |(n, _)| n);
        let stream = rest
            .find(" for stream: ")
            .map(|i| rest[i + " for stream: ".len()..].trim().to_string());
        let mut by_reason: BTreeMap<LokiReason, u64> = BTreeMap::new();
        for r in &listed {
            *by_reason.entry(*r).or_default() += 1;
        }
        let listed_count = listed.len() as u64;
        if total > listed_count {
            let last = listed.last().copied().unwrap_or(LokiReason::Unknown);
            *by_reason.entry(last).or_default() += total - listed_count;
        }
        for (reason, count) in by_reason {
            out.push(ReportedError {
                reason,
                count,
                stream: stream.clone(),
            });
        }
        listed.clear();
    }
    // Listed entries without a total line (a cut body): count what is listed.
    for r in listed {
        out.push(ReportedError {
            reason: r,
            count: 1,
            stream: None,
        });
    }
    out
}

/// Lines refused, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts(pub BTreeMap<LokiReason, u64>);

impl RejectCounts {
    pub fn total(&self) -> u64 {
        // Saturating: the counts are what an answer claims, and a garbled
        // one can claim anything (they are capped to the batch after).
        self.0.values().fold(0, |sum, n| sum.saturating_add(*n))
    }

    pub fn get(&self, reason: LokiReason) -> u64 {
        self.0.get(&reason).copied().unwrap_or(0)
    }

    fn add(&mut self, reason: LokiReason, n: u64) {
        if n > 0 {
            let count = self.0.entry(reason).or_default();
            *count = count.saturating_add(n);
        }
    }
}

impl fmt::Display for RejectCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (reason, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {reason}")?;
        }
        Ok(())
    }
}

/// What the batch that was answered held, for counting refusals.
pub trait BatchShape {
    /// Loki entries in the batch.
    fn lines(&self) -> u64;
    /// Loki entries of the stream whose selector is `labels`, if the batch
    /// has that stream.
    fn stream_lines(&self, labels: &str) -> Option<u64>;
}

/// Counts the refusals of a Loki error text against the batch it answers.
pub fn count_rejections(body: &str, batch: &impl BatchShape) -> RejectCounts {
    let mut counts = RejectCounts::default();
    for group in parse_error_body(body) {
        let n = match (&group.stream, group.reason.is_stream_level()) {
            (Some(labels), true) => batch.stream_lines(labels).unwrap_or(group.count),
            _ => group.count,
        };
        counts.add(group.reason, n);
    }
    if counts.total() == counts.get(LokiReason::Unknown) {
        // Nothing Loki said is understood: take it as refusing everything.
        counts.0.clear();
        counts.add(LokiReason::Unknown, batch.lines());
    }
    // Never more than the batch held (a garbled or hostile text could say
    // anything): the excess comes off in reverse reason order, `unknown`
    // first.
    let mut excess = counts.total().saturating_sub(batch.lines());
    for n in counts.0.values_mut().rev() {
        let cut = excess.min(*n);
        *n -= cut;
        excess -= cut;
    }
    counts.0.retain(|_, n| *n > 0);
    counts
}

/// Why a push is worth trying again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryCause {
    /// 429: Loki is over a rate or stream limit.
    Throttled,
    /// A 5xx.
    Server(u16),
    /// Credentials, tenant, URL or proxy (401, 403, 404, 407, 408, 421):
    /// nothing was stored.
    Setup(u16),
    /// No HTTP answer.
    Transport(TransportError),
}

/// What to do after a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored: acknowledge the batch.
    Accepted,
    /// Send the same body again after the backoff (at least `retry_after`).
    Retry {
        retry_after: Option<Duration>,
        cause: RetryCause,
        /// The start of Loki's answer, for the log.
        message: String,
    },
    /// Loki stored what it could and refused the rest for good:
    /// acknowledge the batch and count the refusals.
    Rejected {
        status: u16,
        counts: RejectCounts,
        message: String,
    },
    /// 413: the body is larger than Loki takes; split the batch.
    TooLarge { message: String },
}

/// At most this much of an answer goes into an outcome's message.
const MESSAGE_LIMIT: usize = 1024;

fn message_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MESSAGE_LIMIT)]);
    text.trim().to_string()
}

/// Classifies Loki's answer to `batch`.
pub fn classify_answer(
    answer: &HttpAnswer,
    batch: &impl BatchShape,
    now: SystemTime,
) -> PushOutcome {
    let retry_after = answer
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, now));
    classify_status(answer.status, retry_after, &answer.body, batch)
}

/// [`classify_answer`] from its parts.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    batch: &impl BatchShape,
) -> PushOutcome {
    let retry = |cause| PushOutcome::Retry {
        retry_after,
        cause,
        message: message_of(body),
    };
    match status {
        200..=299 => PushOutcome::Accepted,
        429 => retry(RetryCause::Throttled),
        401 | 403 | 404 | 407 | 408 | 421 => retry(RetryCause::Setup(status)),
        413 => PushOutcome::TooLarge {
            message: message_of(body),
        },
        400..=499 => {
            let text = String::from_utf8_lossy(body);
            PushOutcome::Rejected {
                status,
                counts: count_rejections(&text, batch),
                message: message_of(body),
            }
        }
        // 5xx, and anything a proxy makes up (1xx/3xx): Loki did not
        // say it refused the entries, so they are tried again.
        _ => retry(RetryCause::Server(status)),
    }
}

/// A push that got no answer.
pub fn classify_transport(error: TransportError) -> PushOutcome {
    PushOutcome::Retry {
        retry_after: None,
        message: error.to_string(),
        cause: RetryCause::Transport(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shape(u64, Vec<(&'static str, u64)>);

    impl BatchShape for Shape {
        fn lines(&self) -> u64 {
            self.0
        }
        fn stream_lines(&self, labels: &str) -> Option<u64> {
            self.1.iter().find(|(l, _)| *l == labels).map(|(_, n)| *n)
        }
    }

    // Texts built with Loki's own format strings (pkg/validation/validate.go,
    // pkg/util/errors GroupedErrors, pkg/ingester/stream.go).
    const TOO_OLD: &str = "entry for stream '{job=\"a\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-05-01T00:00:00Z";
    const TOO_LONG: &str = "max entry size '262144' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '300000' bytes";

    #[test]
    fn one_distributor_error() {
        let g = parse_error_body(TOO_OLD);
        assert_eq!(
            g,
            [ReportedError {
                reason: LokiReason::TooOld,
                count: 1,
                stream: None
            }]
        );
    }

    #[test]
    fn grouped_distributor_errors() {
        let body = format!("3 errors like: {TOO_OLD}; 2 errors like: {TOO_LONG}");
        let c = count_rejections(&body, &Shape(10, vec![]));
        assert_eq!(c.get(LokiReason::TooOld), 3);
        assert_eq!(c.get(LokiReason::LineTooLong), 2);
        assert_eq!(c.total(), 5);
        assert_eq!(
            c.to_string(),
            "3 greater_than_max_sample_age, 2 line_too_long"
        );
    }

    #[test]
    fn a_semicolon_inside_labels_is_not_a_separator() {
        let body = "2 errors like: entry for stream '{job=\"a; b\"}' has timestamp too new: 2030-01-01T00:00:00Z; 1 errors like: entry for stream '{job=\"x\"}' has timestamp too old: 1";
        let g = parse_error_body(body);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!((g[0].reason, g[0].count), (LokiReason::TooNew, 2));
        assert_eq!((g[1].reason, g[1].count), (LokiReason::TooOld, 1));
    }

    #[test]
    fn stream_level_errors_count_the_stream() {
        let body = "1 errors like: entry for stream '{a=\"1\", b=\"2\"}' has 20 label names; limit 15; 1 errors like: error parsing labels '{bad' with error: 1:5: parse error";
        let batch = Shape(50, vec![("{a=\"1\", b=\"2\"}", 30)]);
        let c = count_rejections(body, &batch);
        assert_eq!(c.get(LokiReason::TooManyLabels), 30);
        // Not a stream of the batch: one per message.
        assert_eq!(c.get(LokiReason::InvalidLabels), 1);
    }

    #[test]
    fn ingester_listing_with_total() {
        let body = "entry with timestamp 2024-01-01 00:00:00 +0000 UTC ignored, reason: 'entry out of order',\n\
                    entry with timestamp 2024-01-01 00:00:01 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2024-01-01T00:00:01Z, oldest acceptable timestamp is: 2024-01-01T01:00:00Z',\n\
                    user 'fake', total ignored: 35 out of 40 for stream: {job=\"a\"}";
        let c = count_rejections(body, &Shape(40, vec![]));
        assert_eq!(c.get(LokiReason::OutOfOrder), 1);
        assert_eq!(c.get(LokiReason::TooFarBehind), 34);
        let g = parse_error_body(body);
        assert_eq!(g[0].stream.as_deref(), Some("{job=\"a\"}"));
    }

    #[test]
    fn unknown_texts_refuse_the_batch_and_counts_are_capped() {
        let c = count_rejections("something odd", &Shape(7, vec![]));
        assert_eq!(c.get(LokiReason::Unknown), 7);
        let c = count_rejections("", &Shape(7, vec![]));
        assert_eq!(c.get(LokiReason::Unknown), 7);
        let c = count_rejections(&format!("99 errors like: {TOO_OLD}"), &Shape(7, vec![]));
        assert_eq!(c.total(), 7);
        let c = count_rejections("18446744073709551616 errors like: x", &Shape(3, vec![]));
        assert_eq!(c.total(), 3);
    }

    /// Counts that add up past `u64::MAX` saturate and are capped to the
    /// batch, whatever the text claims (the `loki_error_body` fuzz target
    /// found the overflow: two totals of 17225866754152056606). Two totals
    /// of 2^63 would wrap to 0 in a build without overflow checks, and the
    /// refusals would be taken for not understood.
    #[test]
    fn claimed_counts_that_overflow_are_capped_not_wrapped() {
        let group = "entry with timestamp 2024-01-01 00:00:00 +0000 UTC ignored, \
                     reason: 'entry out of order',\n\
                     user 'fake', total ignored: 9223372036854775808 out of 1 for stream: {a=\"b\"}\n";
        let c = count_rejections(&group.repeat(2), &Shape(9, vec![]));
        assert_eq!(c.get(LokiReason::OutOfOrder), 9);
        // A total with more digits than a u64 holds is very many, not none.
        let c = count_rejections(
            "user 'fake', total ignored: 99999999999999999999999 out of 1 for stream: {a=\"b\"}",
            &Shape(4, vec![]),
        );
        assert_eq!(c.get(LokiReason::Unknown), 4);
    }

    #[test]
    fn status_classes() {
        let b = Shape(1, vec![]);
        assert_eq!(classify_status(204, None, b"", &b), PushOutcome::Accepted);
        let r = classify_status(429, Some(Duration::from_secs(3)), b"slow down", &b);
        assert!(matches!(
            r,
            PushOutcome::Retry { retry_after: Some(d), cause: RetryCause::Throttled, .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify_status(503, None, b"", &b),
            PushOutcome::Retry {
                cause: RetryCause::Server(503),
                ..
            }
        ));
        assert!(matches!(
            classify_status(401, None, b"no org id", &b),
            PushOutcome::Retry {
                cause: RetryCause::Setup(401),
                ..
            }
        ));
        assert!(matches!(
            classify_status(413, None, b"", &b),
            PushOutcome::TooLarge { .. }
        ));
        match classify_status(400, None, TOO_OLD.as_bytes(), &b) {
            PushOutcome::Rejected {
                status,
                counts,
                message,
            } => {
                assert_eq!(status, 400);
                assert_eq!(counts.get(LokiReason::TooOld), 1);
                assert!(message.starts_with("entry for stream"));
            }
            other => panic!("{other:?}"),
        }
    }
}
