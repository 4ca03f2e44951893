//! `POST /api/v1/entries` as a way in: the bodies it takes and how they
//! become entries. The HTTP handler (`serve::http`) reads the body and
//! maps errors to statuses; this module checks and stores.
//!
//! Two bodies are accepted:
//! - **NDJSON** (`Content-Type: application/x-ndjson`, `application/json`
//!   or `application/jsonl`): one JSON object per line, blank lines
//!   skipped. Fields: `source` (or `?source=` as the default), `msg` (text)
//!   or `msg_b64` (exact bytes, base64; wins over `msg`), optional
//!   `stream` (`stdout`/`stderr`), `level` (a name or 0-7), `labels` (an
//!   object of strings), `partial` and `truncated` (flags). `time`,
//!   `time_ns` and `seq` are accepted and **ignored**: the ring gives every
//!   entry its own seq and its receive time, and a per-line label would
//!   make every line its own origin. So an NDJSON export of ringtail can be
//!   posted back as it is. Any other field is an error.
//! - **Text lines** (`text/plain`, or any other non-JSON type when
//!   `?source=NAME` is given, as `curl --data-binary` sends): every line
//!   is an entry of that source, split exactly as the fd-passing socket
//!   splits a stream ([`LineSplitter`]: `\n` ends a line, the last line
//!   needs no `\n`, bytes are kept as they are). `?stream=`, `?level=`
//!   and `?label.KEY=VALUE` apply to every line.
//!
//! Lines longer than `--max-line-len` become several entries flagged
//! `partial` (or one flagged `truncated` with `--long-lines truncate`), as
//! for every source ([`super::pipeline`]).
//!
//! A request is all or nothing: every NDJSON line is checked before any is
//! stored (a first pass over the body), and a bad line is an error that
//! names the line, the column and what was wrong. Nothing but the body is
//! held whole: the second pass stores in batches of at most 1 MiB.
//!
//! Each distinct origin (source plus labels) of a request is interned once
//! (at most [`MAX_ORIGINS_PER_REQUEST`] per request), and each run of
//! consecutive lines of one origin is stored as one batch, so the
//! request's order is kept in seq order.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde::Deserialize;

use super::lines::LineSplitter;
use super::pipeline::{self, OriginError, Pipeline};
use crate::entry::{Flags, Level, Origin, SourceTime, Stream};
use crate::ring::OriginHandle;

/// The most distinct origins one request may append to.
pub const MAX_ORIGINS_PER_REQUEST: usize = 1000;

/// The query of `POST /api/v1/entries`: the origin of plain-text lines,
/// and defaults for NDJSON objects that leave these fields out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestQuery {
    pub source: Option<String>,
    pub stream: Option<Stream>,
    pub level: Option<Level>,
    /// `label.KEY=VALUE` pairs, in the order given.
    pub labels: Vec<(String, String)>,
}

/// Why a request stored nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The request is wrong (the message says where and why); HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// The ring cannot take another origin now; HTTP 503.
    #[error("{0}")]
    Unavailable(String),
}

/// What a request stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Lines (text) or objects (NDJSON) taken.
    pub lines: u64,
    /// Entries stored (more than lines when long lines were split).
    pub entries: u64,
    /// First and last seq given.
    pub seqs: Option<(u64, u64)>,
}

impl Done {
    fn add(&mut self, seqs: std::ops::Range<u64>) {
        if seqs.is_empty() {
            return;
        }
        self.entries += seqs.end - seqs.start;
        let (lo, hi) = self.seqs.unwrap_or((u64::MAX, 0));
        self.seqs = Some((lo.min(seqs.start), hi.max(seqs.end - 1)));
    }
}

/// One NDJSON object. `time`, `time_ns` and `seq` are read and ignored
/// (see the module docs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    source: Option<String>,
    msg: Option<String>,
    msg_b64: Option<String>,
    stream: Option<String>,
    level: Option<serde_json::Value>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "time")]
    _time: serde::de::IgnoredAny,
    #[serde(default, rename = "time_ns")]
    _time_ns: serde::de::IgnoredAny,
    #[serde(default, rename = "seq")]
    _seq: serde::de::IgnoredAny,
    #[serde(default)]
    partial: bool,
    #[serde(default)]
    truncated: bool,
}

fn line_error(line: usize, what: impl std::fmt::Display) -> IngestError {
    IngestError::Invalid(format!("line {line}: {what}; nothing was stored"))
}

fn origin_of(
    source: &str,
    query_labels: &[(String, String)],
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Origin, OriginError> {
    let mut o = Origin::new(pipeline::source_name(source)?);
    for (k, v) in query_labels {
        o.set_label(k.as_str(), v.as_str());
    }
    for (k, v) in labels.into_iter().flatten() {
        if !crate::filter::valid_label_key(k) {
            return Err(OriginError::LabelKey(k.clone()));
        }
        o.set_label(k.as_str(), v.as_str());
    }
    Ok(o)
}

/// Interns `origin` through the pipeline's checks.
fn intern(pipeline: &Pipeline, origin: Origin) -> Result<OriginHandle, IngestError> {
    pipeline.origin(origin).map_err(|e| match e {
        OriginError::Table(msg) => IngestError::Unavailable(msg),
        e => IngestError::Invalid(format!("{e}; nothing was stored")),
    })
}

/// Stores a text body: every line an entry of `?source=`.
pub fn text(pipeline: &Pipeline, q: &IngestQuery, body: &[u8]) -> Result<Done, IngestError> {
    let Some(source) = &q.source else {
        return Err(IngestError::Invalid(
            "text lines need their source: add ?source=NAME to the URL".into(),
        ));
    };
    let origin = origin_of(source, &q.labels, None)
        .map_err(|e| IngestError::Invalid(format!("parameter `source`: {e}")))?;
    let handle = intern(pipeline, origin)?;
    let flags = Flags::default().with_stream(q.stream).with_level(q.level);
    let limit = pipeline.line_limit();
    let mut splitter = LineSplitter::new(limit.max_line_len, limit.long_lines, flags);
    let mut done = Done::default();
    let mut rest = body;
    while !rest.is_empty() {
        let buf = splitter.read_buf();
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        let lines = splitter.commit(n);
        done.lines += lines.spans.iter().filter(|s| !s.flags.partial()).count() as u64;
        done.add(pipeline.store(&handle, None, lines.buf, lines.spans));
    }
    let last = splitter.finish();
    done.lines += last.len() as u64;
    done.add(pipeline.store(&handle, None, last.buf, last.spans));
    Ok(done)
}

/// One NDJSON object, checked.
struct Parsed<'a> {
    origin: Origin,
    flags: Flags,
    msg: std::borrow::Cow<'a, [u8]>,
}

/// Parses and checks the object on line `n`.
fn parse_object<'a>(raw: &'a [u8], n: usize, q: &IngestQuery) -> Result<Parsed<'a>, IngestError> {
    let obj: Object = serde_json::from_slice(raw).map_err(|e| {
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m)
            .to_string();
        line_error(n, format!("column {}: {msg}", e.column()))
    })?;
    let source = obj
        .source
        .as_deref()
        .or(q.source.as_deref())
        .ok_or_else(|| {
            line_error(
                n,
                "no `source`: give it in each object, or once as ?source=NAME",
            )
        })?;
    let origin = origin_of(source, &q.labels, obj.labels.as_ref()).map_err(|e| line_error(n, e))?;
    let stream = match &obj.stream {
        None => q.stream,
        Some(s) => Some(
            Stream::parse(s)
                .ok_or_else(|| line_error(n, format!("`stream` {s:?} is not stdout or stderr")))?,
        ),
    };
    let level = match &obj.level {
        None | Some(serde_json::Value::Null) => q.level,
        Some(serde_json::Value::String(s)) => Some(Level::parse(s).ok_or_else(|| {
            line_error(
                n,
                format!("`level` {s:?} is not one of {}", Level::EXPECTED),
            )
        })?),
        Some(serde_json::Value::Number(v)) => Some(
            v.as_u64()
                // JSON has one number type: `4.0` is the integer 4 (as JSON
                // Schema's `integer` says), not a fraction.
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=7.0).contains(f))
                        .map(|f| f as u64)
                })
                .and_then(|l| u8::try_from(l).ok())
                .and_then(Level::from_severity)
                .ok_or_else(|| line_error(n, format!("`level` {v} is not 0-7")))?,
        ),
        Some(v) => {
            return Err(line_error(
                n,
                format!("`level` {v} is not a name or a number"),
            ))
        }
    };
    let msg = match (obj.msg_b64, obj.msg) {
        (Some(b64), _) => std::borrow::Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| line_error(n, format!("`msg_b64` is not base64: {e}")))?,
        ),
        (None, Some(msg)) => std::borrow::Cow::Owned(msg.into_bytes()),
        (None, None) => {
            return Err(line_error(
                n,
                "no `msg` (or `msg_b64`): the message is missing",
            ))
        }
    };
    let flags = Flags::default()
        .with_stream(stream)
        .with_level(level)
        .with_partial(obj.partial)
        .with_truncated(obj.truncated);
    Ok(Parsed { origin, flags, msg })
}

/// The non-blank lines of an NDJSON body, with their line numbers.
fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
        .filter(|(_, raw)| !raw.iter().all(u8::is_ascii_whitespace))
}

/// Stores an NDJSON body, all or nothing: a first pass checks every object
/// and collects the request's origins, a second stores, in batches of at
/// most 1 MiB. Memory: the body (which the caller holds under its budget),
/// the origins, one batch.
pub fn ndjson(pipeline: &Pipeline, q: &IngestQuery, body: &[u8]) -> Result<Done, IngestError> {
    let mut origins: HashMap<Origin, usize> = HashMap::new();
    let mut order: Vec<Origin> = Vec::new();
    let mut lines = 0u64;
    let mut bytes = 0usize;
    for (n, raw) in ndjson_lines(body) {
        let parsed = parse_object(raw, n, q)?;
        bytes += parsed.msg.len();
        if bytes > u32::MAX as usize / 2 {
            return Err(line_error(
                n,
                "the request holds more than 2 GiB of messages",
            ));
        }
        if !origins.contains_key(&parsed.origin) {
            if order.len() == MAX_ORIGINS_PER_REQUEST {
                return Err(line_error(
                    n,
                    format!(
                        "more than {MAX_ORIGINS_PER_REQUEST} distinct sources and label \
                         sets in one request; split it"
                    ),
                ));
            }
            origins.insert(parsed.origin.clone(), order.len());
            order.push(parsed.origin);
        }
        lines += 1;
    }
    let handles = order
        .into_iter()
        .map(|o| intern(pipeline, o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done = Done {
        lines,
        ..Done::default()
    };
    let mut batch = pipeline.batch();
    let mut batch_origin = usize::MAX;
    for (n, raw) in ndjson_lines(body) {
        let parsed = parse_object(raw, n, q)?;
        let index = origins[&parsed.origin];
        if index != batch_origin || batch.bytes() >= STORE_BATCH_BYTES {
            if !batch.is_empty() {
                done.add(pipeline.store_batch(&handles[batch_origin], None, &mut batch));
            }
            batch_origin = index;
        }
        batch.push(&parsed.msg, parsed.flags, SourceTime::None);
    }
    if !batch.is_empty() {
        done.add(pipeline.store_batch(&handles[batch_origin], None, &mut batch));
    }
    Ok(done)
}

/// Entries are stored in batches of at most this many message bytes.
const STORE_BATCH_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_from_requests() {
        assert!(origin_of("", &[], None).is_err());
        assert!(origin_of(
            "s",
            &[],
            Some(&BTreeMap::from([("a b".into(), "v".into())]))
        )
        .is_err());
        let o = origin_of(
            "a\0b",
            &[("k".into(), "q".into())],
            Some(&BTreeMap::from([("l".into(), "v".into())])),
        )
        .unwrap();
        assert_eq!(o.source, "a\\x00b");
        assert_eq!((o.label("k"), o.label("l")), (Some("q"), Some("v")));
    }

    #[test]
    fn levels_as_numbers() {
        let q = IngestQuery::default();
        let level = |json: &str| {
            parse_object(json.as_bytes(), 1, &q)
                .map(|p| p.flags.level())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            level(r#"{"source":"s","msg":"m","level":4}"#),
            Ok(Some(Level::Warning))
        );
        assert_eq!(
            level(r#"{"source":"s","msg":"m","level":4.0}"#),
            Ok(Some(Level::Warning))
        );
        assert_eq!(
            level(r#"{"source":"s","msg":"m","level":"ERR"}"#),
            Ok(Some(Level::Error))
        );
        assert_eq!(level(r#"{"source":"s","msg":"m","level":null}"#), Ok(None));
        for bad in ["4.5", "8", "-1", "8.0", "1e300"] {
            let e = level(&format!(r#"{{"source":"s","msg":"m","level":{bad}}}"#)).unwrap_err();
            assert!(e.contains("is not 0-7"), "{bad}: {e}");
        }
    }
}
