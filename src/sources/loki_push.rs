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
//! - each entry keeps its pushed timestamp as its original time
//!   ([`SourceTime::Original`]): a ringtail fed by forwarders on other hosts
//!   shows every entry at the time it was logged there. The ring itself
//!   stays ordered by receive time (so there is no out-of-order rejection);
//!   time queries find relayed entries by their original time through
//!   [`Ring::event_time_range`](crate::ring::Ring::event_time_range).
//!   Structured metadata is checked and otherwise unused;
//! - a line longer than `--max-line-len` becomes several entries flagged
//!   `partial`, or one flagged `truncated` with `--long-lines truncate`, as
//!   for every source ([`super::pipeline`]);
//! - each stream is stored as one batch.
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

use super::pipeline::{OriginError, Pipeline};
use crate::entry::{Flags, Level, Origin, SourceTime, Stream};
use crate::filter::MatchOp;
use crate::ring::MAX_SOURCE_LEN;
use crate::serve::loki::logql::{self, valid_label_name};
use crate::serve::loki::LokiError;

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
    /// `(timestamp in ns since the Unix epoch, line)` as pushed.
    pub entries: Vec<(u64, Vec<u8>)>,
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
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| (e.timestamp.map_or(0, timestamp_ns), e.line))
                    .collect(),
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
    ts: u64,
    line: String,
}

/// A protobuf timestamp in ns since the Unix epoch; before the epoch is 0,
/// past 2262 the largest.
fn timestamp_ns(t: Timestamp) -> u64 {
    let ns = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    ns.clamp(0, i128::from(u64::MAX)) as u64
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
        let invalid = || {
            de::Error::custom(format!(
                "invalid timestamp {ts:?}: expected Unix nanoseconds as a string of digits"
            ))
        };
        if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let ts: u64 = ts.parse().map_err(|_| invalid())?;
        let line: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let _metadata: Option<BTreeMap<String, String>> = seq.next_element()?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(JsonEntry { ts, line })
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
            entries: s
                .values
                .into_iter()
                .map(|e| (e.ts, e.line.into_bytes()))
                .collect(),
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
            "level" if Level::parse(v).is_some_and(|l| l.as_str() == v) => {
                flags = flags.with_level(Level::parse(v));
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

/// Stores decoded streams through the pipeline; returns the number of
/// entries stored.
pub fn ingest(pipeline: &Pipeline, streams: &[PushStream]) -> Result<u64, LokiError> {
    // Check every stream before storing any, so that a bad stream in the
    // middle does not leave half a request in the ring.
    let origins = streams
        .iter()
        .map(|s| origin_of(&s.labels))
        .collect::<Result<Vec<_>, _>>()?;
    let mut stored = 0;
    let mut batch = pipeline.batch();
    for (stream, (origin, flags)) in streams.iter().zip(origins) {
        if stream.entries.is_empty() {
            continue;
        }
        let handle = pipeline.origin(origin).map_err(|e| match e {
            OriginError::Table(_) => LokiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            e => LokiError::bad(e.to_string()),
        })?;
        for (ts, line) in &stream.entries {
            batch.push(line, flags, SourceTime::Original(*ts));
            // Spans address the buffer with u32: store before it could
            // overflow.
            if batch.bytes() > u32::MAX as usize / 2 {
                let seqs = pipeline.store_batch(&handle, None, &mut batch);
                stored += seqs.end - seqs.start;
            }
        }
        let seqs = pipeline.store_batch(&handle, None, &mut batch);
        stored += seqs.end - seqs.start;
    }
    Ok(stored)
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
                entries: vec![
                    (1_700_000_000_000_000_000, b"one".to_vec()),
                    (1_700_000_000_000_000_001, b"two".to_vec())
                ],
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
        assert_eq!(s[0].entries, vec![(1, b"x".to_vec())]);
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
        assert_eq!(
            s[0].entries,
            vec![(1_700_000_000_000_000_005, b"bytes \xff kept".to_vec())]
        );
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
            (f.stream(), f.level().map(Level::as_str)),
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
    fn ingest_splits_long_lines_and_keeps_pushed_times() {
        let ring = std::sync::Arc::new(
            crate::ring::Ring::open(&crate::ring::RingConfig::new(64)).unwrap(),
        );
        let selflog = crate::selflog::SelfLog::new(ring.clone()).unwrap();
        let pipeline = Pipeline::new(
            ring.clone(),
            selflog,
            crate::sources::IngestConfig {
                max_line_len: 8,
                ..Default::default()
            },
        );
        let streams = vec![PushStream {
            labels: labels(&[("source", "p")]),
            entries: vec![(5, b"0123456789abcdefXY".to_vec()), (6, b"short".to_vec())],
        }];
        let before = ring.stats().retained;
        assert_eq!(ingest(&pipeline, &streams).unwrap(), 4);
        let mut batch = crate::ring::ReadBatch::new();
        ring.snapshot()
            .cursor(crate::ring::All)
            .read(&mut batch, 10);
        let got: Vec<_> = batch
            .iter()
            .filter_map(|r| match r {
                crate::ring::Read::Entry(e) if e.source() == "p" => {
                    Some((e.msg.to_vec(), e.flags.partial(), e.source_time))
                }
                _ => None,
            })
            .collect();
        let o = SourceTime::Original;
        assert_eq!(
            got,
            vec![
                (b"01234567".to_vec(), true, o(5)),
                (b"89abcdef".to_vec(), true, o(5)),
                (b"XY".to_vec(), false, o(5)),
                (b"short".to_vec(), false, o(6)),
            ]
        );
        // A bad stream anywhere refuses the whole request.
        let mixed = vec![
            streams[0].clone(),
            PushStream {
                labels: vec![],
                entries: vec![(7, b"x".to_vec())],
            },
        ];
        assert!(ingest(&pipeline, &mixed).is_err());
        assert_eq!(ring.stats().retained, before + 4);
    }
}
