//! `POST /api/v1/entries`: ingest over HTTP.
//!
//! Two bodies are accepted:
//! - **NDJSON** (`Content-Type: application/x-ndjson`, `application/json`
//!   or `application/jsonl`): one JSON object per line, blank lines
//!   skipped. Fields: `source` (or `?source=` as the default), `msg` (text)
//!   or `msg_b64` (exact bytes, base64; wins over `msg`), optional
//!   `stream` (`stdout`/`stderr`), `level` (a name or 0-7), `labels` (an
//!   object of strings), `partial` and `truncated` (flags). `time`,
//!   `time_ns` and `seq` are accepted and **ignored**: the ring gives every
//!   entry its own seq and its receive time, because times must not
//!   decrease in seq order (time queries binary-search on them), and a
//!   per-line label would make every line its own origin. So an NDJSON
//!   export of ringtail can be posted back as it is. Any other field is an
//!   error.
//! - **Text lines** (`text/plain`, or any other non-JSON type when
//!   `?source=NAME` is given, as `curl --data-binary` sends): every line
//!   is an entry of that source, split exactly as the fd-passing socket
//!   splits a stream ([`LineSplitter`]: `\n` ends a line, the last line
//!   needs no `\n`, bytes are kept as they are). `?stream=`, `?level=`
//!   and `?label.KEY=VALUE` apply to every line.
//!
//! Lines longer than `--max-line-len` become several entries flagged
//! `partial` (or one flagged `truncated` with `--long-lines truncate`), as
//! on the socket.
//!
//! A request is all or nothing: every NDJSON line is checked before any is
//! appended, and a bad line makes a 400 that names the line, the column and
//! what was wrong. Bodies over `--http-max-body` get 413 (checked on the
//! inflated size when sent with `Content-Encoding: gzip`).
//!
//! Each distinct origin (source plus labels) of a request is interned once
//! (at most [`MAX_ORIGINS_PER_REQUEST`] per request), and each run of
//! consecutive lines of one origin is appended with one
//! [`Ring::append_batch`], so the request's order is kept in seq order.
//! The answer: `{"accepted":LINES,"entries":N,"first_seq":N,"last_seq":N}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde::Deserialize;

use super::params::{self, parse_level, valid_label_key, IngestQuery, LEVELS_EXPECTED};
use super::{ApiError, HttpState};
use crate::entry::{Flags, Origin, Stream};
use crate::ring::{OriginHandle, Ring, RingError, Span, MAX_SOURCE_LEN};
use crate::sources::lines::LineSplitter;
use crate::sources::LongLines;

/// The most distinct origins one request may append to.
pub const MAX_ORIGINS_PER_REQUEST: usize = 1000;

pub(super) async fn post(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    match ingest(&state, &headers, query.as_deref().unwrap_or(""), body).await {
        Ok(r) => r,
        Err(e) => {
            state
                .metrics
                .ingest_rejected
                .fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ndjson,
    Text,
}

fn kind(headers: &HeaderMap, q: &IngestQuery) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match ct.as_str() {
        "application/x-ndjson"
        | "application/json"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Kind::Ndjson),
        "text/plain" => Ok(Kind::Text),
        "" | "application/x-www-form-urlencoded" | "application/octet-stream"
            if q.source.is_some() =>
        {
            Ok(Kind::Text)
        }
        "" | "application/x-www-form-urlencoded" | "application/octet-stream" => {
            Err(ApiError::bad_request(
                "say what the body is: text lines with ?source=NAME (and Content-Type: \
                 text/plain), or NDJSON objects with Content-Type: application/x-ndjson",
            ))
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {other:?}: send NDJSON objects as \
                 application/x-ndjson, or text lines as text/plain with ?source=NAME"
            ),
        )),
    }
}

async fn ingest(
    state: &HttpState,
    headers: &HeaderMap,
    query: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let q = params::parse_ingest(query).map_err(ApiError::bad_request)?;
    let kind = kind(headers, &q)?;
    let max = state.config.max_body;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the {max}-byte limit (--http-max-body); send fewer \
                 lines per request"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Only a plain body's declared length is its stored size.
    if headers.get(header::CONTENT_ENCODING).is_none() && declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return Err(too_big());
            }
            return Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let cfg = Appender {
        ring: &state.ring,
        max_line_len: state
            .config
            .max_line_len
            .clamp(1, state.ring.max_entry_len()),
        long_lines: state.config.long_lines,
    };
    let done = match kind {
        Kind::Text => cfg.text(&q, &bytes)?,
        Kind::Ndjson => cfg.ndjson(&q, &bytes)?,
    };
    state
        .metrics
        .ingested_entries
        .fetch_add(done.entries, Ordering::Relaxed);
    let answer = serde_json::json!({
        "accepted": done.lines,
        "entries": done.entries,
        "first_seq": done.seqs.as_ref().map(|r| r.0),
        "last_seq": done.seqs.as_ref().map(|r| r.1),
    });
    Ok(super::json_bytes(
        serde_json::to_vec(&answer).expect("the ingest answer serialises"),
    ))
}

/// What a request appended.
#[derive(Debug, Default)]
struct Done {
    /// Lines (text) or objects (NDJSON) taken.
    lines: u64,
    /// Entries appended (more than lines when long lines were split).
    entries: u64,
    /// First and last seq given.
    seqs: Option<(u64, u64)>,
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

/// Appends the entries of one request.
struct Appender<'r> {
    ring: &'r Ring,
    max_line_len: usize,
    long_lines: LongLines,
}

fn line_error(line: usize, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("line {line}: {what}; nothing was stored"))
}

/// Checks a source name from a request.
fn source_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("the source name is empty".into());
    }
    if raw.len() > MAX_SOURCE_LEN {
        return Err(format!(
            "the source name is {} bytes long; at most {MAX_SOURCE_LEN} are kept",
            raw.len()
        ));
    }
    Ok(Origin::source_from_bytes(raw.as_bytes(), MAX_SOURCE_LEN))
}

fn origin_of(
    source: &str,
    query_labels: &[(String, String)],
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Origin, String> {
    let mut o = Origin::new(source_name(source)?);
    for (k, v) in query_labels {
        o.set_label(k.as_str(), v.as_str());
    }
    for (k, v) in labels.into_iter().flatten() {
        if !valid_label_key(k) {
            return Err(format!(
                "label key {k:?}: keys are letters, digits, `_`, `-` and `.`"
            ));
        }
        o.set_label(k.as_str(), v.as_str());
    }
    Ok(o)
}

impl Appender<'_> {
    /// Interns `origin`, checking it was kept whole.
    fn intern(&self, origin: Origin) -> Result<OriginHandle, ApiError> {
        let handle = self.ring.origin(origin.clone()).map_err(|e| match e {
            RingError::TooManyOrigins(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
        if **handle.origin() != origin {
            return Err(ApiError::bad_request(format!(
                "source {:?} with {} labels does not fit in one origin slot of the ring; use \
                 fewer or shorter labels; nothing was stored",
                origin.source,
                origin.labels().len()
            )));
        }
        Ok(handle)
    }

    fn text(&self, q: &IngestQuery, body: &[u8]) -> Result<Done, ApiError> {
        let Some(source) = &q.source else {
            return Err(ApiError::bad_request(
                "text lines need their source: add ?source=NAME to the URL",
            ));
        };
        let origin = origin_of(source, &q.labels, None)
            .map_err(|e| ApiError::bad_request(format!("parameter `source`: {e}")))?;
        let handle = self.intern(origin)?;
        let flags = Flags::default().with_stream(q.stream).with_level(q.level);
        let mut splitter = LineSplitter::new(self.max_line_len, self.long_lines, flags);
        let mut done = Done::default();
        let mut rest = body;
        let append = |buf: &[u8], spans: &[Span], done: &mut Done| {
            let seqs = self
                .ring
                .append_batch(&handle, buf, spans)
                .expect("the splitter's spans lie in its buffer");
            done.add(seqs);
        };
        while !rest.is_empty() {
            let buf = splitter.read_buf();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            let lines = splitter.commit(n);
            done.lines += lines.spans.iter().filter(|s| !s.flags.partial()).count() as u64;
            append(lines.buf, lines.spans, &mut done);
        }
        let last = splitter.finish();
        done.lines += last.len() as u64;
        append(last.buf, last.spans, &mut done);
        Ok(done)
    }

    fn ndjson(&self, q: &IngestQuery, body: &[u8]) -> Result<Done, ApiError> {
        // Checked first, appended after: a request is all or nothing.
        let mut origins: HashMap<Origin, usize> = HashMap::new();
        let mut order: Vec<Origin> = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(body.len());
        // (origin index, span) per entry, in request order.
        let mut items: Vec<(usize, Span)> = Vec::new();
        let mut lines = 0u64;
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
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
            let origin =
                origin_of(source, &q.labels, obj.labels.as_ref()).map_err(|e| line_error(n, e))?;
            let stream = match &obj.stream {
                None => q.stream,
                Some(s) => Some(Stream::parse(s).ok_or_else(|| {
                    line_error(n, format!("`stream` {s:?} is not stdout or stderr"))
                })?),
            };
            let level = match &obj.level {
                None | Some(serde_json::Value::Null) => q.level,
                Some(serde_json::Value::String(s)) => Some(parse_level(s).ok_or_else(|| {
                    line_error(n, format!("`level` {s:?} is not one of {LEVELS_EXPECTED}"))
                })?),
                Some(serde_json::Value::Number(v)) => Some(
                    v.as_u64()
                        .filter(|&l| l <= 7)
                        .ok_or_else(|| line_error(n, format!("`level` {v} is not 0-7")))?
                        as u8,
                ),
                Some(v) => {
                    return Err(line_error(
                        n,
                        format!("`level` {v} is not a name or a number"),
                    ))
                }
            };
            let start = buf.len();
            match (&obj.msg_b64, &obj.msg) {
                (Some(b64), _) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| line_error(n, format!("`msg_b64` is not base64: {e}")))?;
                    buf.extend_from_slice(&bytes);
                }
                (None, Some(msg)) => buf.extend_from_slice(msg.as_bytes()),
                (None, None) => {
                    return Err(line_error(
                        n,
                        "no `msg` (or `msg_b64`): the message is missing",
                    ))
                }
            }
            if buf.len() > u32::MAX as usize {
                return Err(line_error(
                    n,
                    "the request holds more than 4 GiB of messages",
                ));
            }
            let index = match origins.get(&origin) {
                Some(&i) => i,
                None => {
                    if order.len() == MAX_ORIGINS_PER_REQUEST {
                        return Err(line_error(
                            n,
                            format!(
                                "more than {MAX_ORIGINS_PER_REQUEST} distinct sources and label \
                                 sets in one request; split it"
                            ),
                        ));
                    }
                    origins.insert(origin.clone(), order.len());
                    order.push(origin);
                    order.len() - 1
                }
            };
            let flags = Flags::default()
                .with_stream(stream)
                .with_level(level)
                .with_partial(obj.partial)
                .with_truncated(obj.truncated);
            self.pieces(start, buf.len() - start, flags, |span| {
                items.push((index, span))
            });
            lines += 1;
        }
        let handles = order
            .into_iter()
            .map(|o| self.intern(o))
            .collect::<Result<Vec<_>, _>>()?;
        let mut done = Done {
            lines,
            ..Done::default()
        };
        let mut spans = Vec::new();
        for run in items.chunk_by(|a, b| a.0 == b.0) {
            spans.clear();
            spans.extend(run.iter().map(|(_, s)| *s));
            let seqs = self
                .ring
                .append_batch(&handles[run[0].0], &buf, &spans)
                .expect("spans were built over this buffer");
            done.add(seqs);
        }
        Ok(done)
    }

    /// The entries one message becomes: pieces of at most the line length,
    /// all but the last flagged `partial` (or one `truncated` piece).
    fn pieces(&self, start: usize, len: usize, flags: Flags, mut push: impl FnMut(Span)) {
        let max = self.max_line_len;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_become_pieces() {
        let ring = Ring::open(&crate::ring::RingConfig::new(16)).unwrap();
        let mut a = Appender {
            ring: &ring,
            max_line_len: 4,
            long_lines: LongLines::Split,
        };
        let mut got = Vec::new();
        a.pieces(10, 10, Flags::default(), |s| got.push(s));
        let lens: Vec<_> = got
            .iter()
            .map(|s| (s.start, s.len, s.flags.partial()))
            .collect();
        assert_eq!(lens, vec![(10, 4, true), (14, 4, true), (18, 2, false)]);
        got.clear();
        a.long_lines = LongLines::Truncate;
        a.pieces(0, 10, Flags::default(), |s| got.push(s));
        assert_eq!(got.len(), 1);
        assert!(got[0].flags.truncated() && got[0].len == 4);
        got.clear();
        a.pieces(0, 4, Flags::default(), |s| got.push(s));
        assert_eq!((got[0].len, got[0].flags), (4, Flags::default()));
    }

    #[test]
    fn source_names() {
        assert!(source_name("").is_err());
        assert!(source_name(&"x".repeat(MAX_SOURCE_LEN + 1)).is_err());
        assert_eq!(source_name("a\0b").unwrap(), "a\\x00b");
        assert!(origin_of(
            "s",
            &[],
            Some(&BTreeMap::from([("a b".into(), "v".into())]))
        )
        .is_err());
    }
}
