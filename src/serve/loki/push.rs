//! Loki's push API as an ingest path: anything that can push to Loki
//! (Promtail, Grafana Alloy, Vector, Fluent Bit, a ringtail forwarder) can
//! push to ringtail.
//!
//! Two body formats, as Loki takes them:
//! - JSON (`Content-Type: application/json`, optionally
//!   `Content-Encoding: gzip`):
//!   `{"streams":[{"stream":{"k":"v"},"values":[["<ns>","line"],["<ns>","line",{"meta":"x"}]]}]}`;
//!   a timestamp that is not a string of digits is a 400, as in Loki;
//! - protobuf (any other content type, or none): a block-snappy-compressed
//!   `PushRequest` ([`PushRequest`] and the types below are its messages,
//!   wire-compatible with Loki's `push.proto`).
//!
//! How a pushed stream becomes ringtail entries:
//! - the label `source` is the source name; without it, `service_name`,
//!   `job` or `app` (the first present) gives the name and stays a label
//!   too; without any of them the source is `loki-push`;
//! - `stream="stdout"|"stderr"` and a `level` that is a syslog severity
//!   name (`emerg` ... `debug`, as ringtail reports levels) go into the
//!   entry's flags; any other value stays an ordinary label, so every label
//!   reads back exactly as it was pushed;
//! - every other label is a label of the origin;
//! - entries get ringtail's receive time (times in the ring never go
//!   backwards, so there is no out-of-order rejection); the pushed
//!   timestamps are checked and otherwise unused, as is structured
//!   metadata;
//! - a line longer than the ring's longest entry becomes several entries,
//!   all but the last flagged `partial`: nothing is dropped;
//! - each stream is one `append_batch`.
//!
//! Errors: 400 for a body that does not parse (with what was wrong), 413
//! for a body over the size limit (compressed or decompressed), 415 for an
//! unknown `Content-Encoding`, 429 when the ring's origin table is full.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;

use axum::http::StatusCode;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::entry::{Flags, Origin, Stream, LEVEL_NAMES};
use crate::ring::{Ring, RingError, Span, MAX_SOURCE_LEN};

use super::logql::{self, valid_label_name};
use super::LokiError;
use crate::filter::MatchOp;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: labels in selector syntax (`{k="v"}`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`. The line is read as bytes (the wire form of a
/// proto `string`), so a line that is not UTF-8 is kept, not refused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One pushed stream, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushStream {
    /// The stream's labels as pushed.
    pub labels: Vec<(String, String)>,
    pub lines: Vec<Vec<u8>>,
}

/// Decodes a push body into streams. `max_bytes` bounds the body after
/// decompression too.
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Vec<PushStream>, LokiError> {
    let is_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let body = match content_encoding.map(str::trim) {
        None | Some("") => std::borrow::Cow::Borrowed(body),
        Some(e) if e.eq_ignore_ascii_case("identity") => std::borrow::Cow::Borrowed(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            std::borrow::Cow::Owned(gunzip(body, max_bytes)?)
        }
        Some(e) => {
            return Err(LokiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {e:?}: send gzip or no encoding"),
            ))
        }
    };
    if is_json {
        decode_json(&body)
    } else {
        decode_protobuf(&body, max_bytes)
    }
}

fn too_large(max_bytes: usize) -> LokiError {
    LokiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "push body is larger than {max_bytes} bytes once decompressed: send smaller batches \
             or raise --loki-max-push"
        ),
    )
}

fn gunzip(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, LokiError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| LokiError::bad(format!("push body is not valid gzip: {e}")))?;
    if out.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(out)
}

fn decode_protobuf(body: &[u8], max_bytes: usize) -> Result<Vec<PushStream>, LokiError> {
    let hint = "a protobuf push body is a snappy-compressed (block format) logproto.PushRequest; \
                send Content-Type: application/json for JSON";
    let len = snap::raw::decompress_len(body)
        .map_err(|e| LokiError::bad(format!("push body is not snappy-compressed: {e} ({hint})")))?;
    if len > max_bytes {
        return Err(too_large(max_bytes));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| LokiError::bad(format!("push body is not valid snappy: {e} ({hint})")))?;
    let req = <PushRequest as prost::Message>::decode(raw.as_slice()).map_err(|e| {
        LokiError::bad(format!(
            "push body is not a valid PushRequest: {e} ({hint})"
        ))
    })?;
    req.streams
        .into_iter()
        .map(|s| {
            let matchers = logql::parse_selector(&s.labels, false)
                .map_err(|e| LokiError::bad(format!("stream labels {:?}: {e}", s.labels)))?;
            let mut labels = Vec::with_capacity(matchers.len());
            for m in matchers {
                if m.op != MatchOp::Eq {
                    return Err(LokiError::bad(format!(
                        "stream labels {:?}: only name=\"value\" pairs are allowed",
                        s.labels
                    )));
                }
                labels.push((m.name, m.value));
            }
            Ok(PushStream {
                labels,
                lines: s.entries.into_iter().map(|e| e.line).collect(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<JsonEntry>,
}

/// `["<ns>", "line"]` or `["<ns>", "line", {structured metadata}]`.
struct JsonEntry {
    line: String,
}

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonEntry, D::Error> {
        d.deserialize_seq(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = JsonEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an entry ["<unix ns as a string>", "<line>"], optionally with structured metadata {...}"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
        let ts: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(de::Error::custom(format!(
                "invalid timestamp {ts:?}: expected Unix nanoseconds as a string of digits"
            )));
        }
        let line: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let _metadata: Option<BTreeMap<String, String>> = seq.next_element()?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(JsonEntry { line })
    }
}

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, LokiError> {
    let push: JsonPush = serde_json::from_slice(body)
        .map_err(|e| LokiError::bad(format!("push body is not valid Loki push JSON: {e}")))?;
    Ok(push
        .streams
        .into_iter()
        .map(|s| PushStream {
            labels: s.stream.into_iter().collect(),
            lines: s.values.into_iter().map(|e| e.line.into_bytes()).collect(),
        })
        .collect())
}

/// The origin and flags a pushed label set maps to (see the module docs).
pub fn origin_of(labels: &[(String, String)]) -> Result<(Origin, Flags), LokiError> {
    if labels.is_empty() {
        return Err(LokiError::bad(
            "a pushed stream needs at least one label, such as {source=\"myapp\"}",
        ));
    }
    let mut flags = Flags::default();
    let mut source = None;
    let mut rest = Vec::with_capacity(labels.len());
    for (k, v) in labels {
        if !valid_label_name(k) {
            return Err(LokiError::bad(format!(
                "invalid label name {k:?}: a label name is letters, digits and '_', not starting with a digit"
            )));
        }
        match k.as_str() {
            "source" => source = Some(v.as_str()),
            "stream" if Stream::parse(v).is_some() => flags = flags.with_stream(Stream::parse(v)),
            "level" if LEVEL_NAMES.contains(&v.as_str()) => {
                let level = LEVEL_NAMES.iter().position(|l| l == v).map(|l| l as u8);
                flags = flags.with_level(level);
            }
            _ => rest.push((k, v)),
        }
    }
    let source = source
        .or_else(|| {
            ["service_name", "job", "app"].iter().find_map(|name| {
                rest.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            })
        })
        .unwrap_or("loki-push");
    let mut origin = Origin::new(Origin::source_from_bytes(source.as_bytes(), MAX_SOURCE_LEN));
    for (k, v) in rest {
        origin.set_label(k.as_str(), v.as_str());
    }
    Ok((origin, flags))
}

/// Appends decoded streams to the ring; returns the number of entries
/// appended.
pub fn ingest(ring: &Ring, streams: &[PushStream]) -> Result<u64, LokiError> {
    // Check every stream before appending any, so that a bad stream in the
    // middle does not leave half a request in the ring.
    let origins = streams
        .iter()
        .map(|s| origin_of(&s.labels))
        .collect::<Result<Vec<_>, _>>()?;
    let max = ring.max_entry_len().max(1);
    let mut appended = 0;
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for (stream, (origin, flags)) in streams.iter().zip(origins) {
        if stream.lines.is_empty() {
            continue;
        }
        let handle = ring.origin(origin).map_err(|e| match e {
            RingError::TooManyOrigins(_) => {
                LokiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            }
            e => LokiError::internal(e.to_string()),
        })?;
        buf.clear();
        spans.clear();
        for line in &stream.lines {
            let mut rest: &[u8] = line;
            loop {
                let piece = rest.len().min(max);
                spans.push(Span::new(
                    buf.len() as u32,
                    piece as u32,
                    flags.with_partial(piece < rest.len()),
                ));
                buf.extend_from_slice(&rest[..piece]);
                rest = &rest[piece..];
                if rest.is_empty() {
                    break;
                }
            }
            // Spans address the buffer with u32: flush before it could overflow.
            if buf.len() > u32::MAX as usize / 2 {
                appended += append(ring, &handle, &buf, &spans)?;
                buf.clear();
                spans.clear();
            }
        }
        appended += append(ring, &handle, &buf, &spans)?;
    }
    Ok(appended)
}

fn append(
    ring: &Ring,
    handle: &crate::ring::OriginHandle,
    buf: &[u8],
    spans: &[Span],
) -> Result<u64, LokiError> {
    let seqs = ring
        .append_batch(handle, buf, spans)
        .map_err(|e| LokiError::internal(e.to_string()))?;
    Ok(seqs.end - seqs.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_bodies() {
        let body = br#"{"streams":[{"stream":{"source":"app","env":"dev"},"values":[["1700000000000000000","one"],["1700000000000000001","two",{"trace_id":"x"}]]}]}"#;
        let s = decode(Some("application/json; charset=utf-8"), None, body, 1 << 20).unwrap();
        assert_eq!(
            s,
            vec![PushStream {
                labels: labels(&[("env", "dev"), ("source", "app")]),
                lines: vec![b"one".to_vec(), b"two".to_vec()],
            }]
        );
        let numeric =
            br#"{"streams":[{"stream":{"a":"b"},"values":[[1700000000000000000,"one"]]}]}"#;
        let e = decode(Some("application/json"), None, numeric, 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.msg.contains("expected a string"), "{}", e.msg);
        let bad_ts = br#"{"streams":[{"stream":{"a":"b"},"values":[["soon","one"]]}]}"#;
        assert!(decode(Some("application/json"), None, bad_ts, 1 << 20)
            .unwrap_err()
            .msg
            .contains("invalid timestamp"));
        assert!(decode(Some("application/json"), None, b"{", 1 << 20).is_err());
    }

    #[test]
    fn gzip_and_limits() {
        use std::io::Write as _;
        let body = br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        let s = decode(Some("application/json"), Some("gzip"), &gz, 1 << 20).unwrap();
        assert_eq!(s[0].lines, vec![b"x".to_vec()]);
        let e = decode(Some("application/json"), Some("gzip"), &gz, 10).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = decode(Some("application/json"), Some("br"), body, 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(decode(Some("application/json"), Some("gzip"), b"nope", 1 << 20).is_err());
    }

    #[test]
    fn protobuf_bodies() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{source="web", level="error"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    line: b"bytes \xff kept".to_vec(),
                    structured_metadata: vec![LabelPair {
                        name: "trace_id".into(),
                        value: "x".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let raw = req.encode_to_vec();
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let s = decode(Some("application/x-protobuf"), None, &body, 1 << 20).unwrap();
        assert_eq!(
            s[0].labels,
            labels(&[("source", "web"), ("level", "error")])
        );
        assert_eq!(s[0].lines, vec![b"bytes \xff kept".to_vec()]);
        assert_eq!(decode(None, None, &body, 1 << 20).unwrap(), s);
        let e = decode(None, None, &body, 4).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(decode(None, None, &raw, 1 << 20).is_err(), "not snappy");
        let bad = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{source=~"web"}"#.into(),
                entries: vec![],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&bad.encode_to_vec())
            .unwrap();
        assert!(decode(None, None, &body, 1 << 20)
            .unwrap_err()
            .msg
            .contains("only name="));
    }

    #[test]
    fn labels_to_origins() {
        let (o, f) = origin_of(&labels(&[
            ("source", "web"),
            ("stream", "stderr"),
            ("level", "warning"),
            ("app", "nginx"),
        ]))
        .unwrap();
        assert_eq!(o.source, "web");
        assert_eq!(o.labels(), &[("app".to_string(), "nginx".to_string())]);
        assert_eq!(
            (f.stream(), f.level_name()),
            (Some(Stream::Stderr), Some("warning"))
        );
        // Values that are not ringtail's stay labels, exactly as pushed.
        let (o, f) = origin_of(&labels(&[
            ("job", "api"),
            ("level", "WARN"),
            ("stream", "x"),
        ]))
        .unwrap();
        assert_eq!(o.source, "api");
        assert_eq!(o.label("job"), Some("api"));
        assert_eq!(o.label("level"), Some("WARN"));
        assert_eq!(o.label("stream"), Some("x"));
        assert_eq!(f, Flags::default());
        assert_eq!(
            origin_of(&labels(&[("env", "x")])).unwrap().0.source,
            "loki-push"
        );
        assert!(origin_of(&[]).is_err());
        assert!(origin_of(&labels(&[("bad-name", "x")])).is_err());
    }

    #[test]
    fn ingest_splits_long_lines() {
        let mut config = crate::ring::RingConfig::new(64);
        config.max_entry_len = 8;
        let ring = Ring::open(&config).unwrap();
        let streams = vec![PushStream {
            labels: labels(&[("source", "p")]),
            lines: vec![b"0123456789abcdefXY".to_vec(), b"short".to_vec()],
        }];
        assert_eq!(ingest(&ring, &streams).unwrap(), 4);
        let mut batch = crate::ring::ReadBatch::new();
        ring.snapshot()
            .cursor(crate::ring::All)
            .read(&mut batch, 10);
        let got: Vec<_> = batch
            .iter()
            .filter_map(|r| match r {
                crate::ring::Read::Entry(e) => Some((e.msg.to_vec(), e.flags.partial())),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (b"01234567".to_vec(), true),
                (b"89abcdef".to_vec(), true),
                (b"XY".to_vec(), false),
                (b"short".to_vec(), false),
            ]
        );
        // A bad stream anywhere refuses the whole request.
        let mixed = vec![
            streams[0].clone(),
            PushStream {
                labels: vec![],
                lines: vec![b"x".to_vec()],
            },
        ];
        assert!(ingest(&ring, &mixed).is_err());
        assert_eq!(ring.stats().retained, 4);
    }
}
