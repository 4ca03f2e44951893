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
//!   An entry without a timestamp (0, protobuf's default) has its arrival
//!   time. Structured metadata is checked and otherwise unused;
//! - a line longer than `--max-line-len` becomes several entries flagged
//!   `partial`, or one flagged `truncated` with `--long-lines truncate`, as
//!   for every source ([`super::pipeline`]);
//! - each stream is stored as one batch.
//!
//! Errors: 400 for a body that does not parse (with what was wrong), 413
//! for a body over the size limit (compressed or decompressed), 415 for an
//! unknown `Content-Encoding`, 429 when the ring's origin table is full.

use std::io::Read as _;

use axum::http::StatusCode;

use super::pipeline::{OriginError, Pipeline};
use crate::entry::{Flags, Level, Origin, SourceTime, Stream};
use crate::ring::MAX_SOURCE_LEN;
use crate::serve::loki::logql::valid_label_name;
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

/// One pushed stream, decoded whole (for tests and fuzzing; the daemon
/// never materialises a push, see [`visit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushStream {
    /// The stream's labels as pushed.
    pub labels: Vec<(String, String)>,
    /// `(timestamp in ns since the Unix epoch, line)` as pushed.
    pub entries: Vec<(u64, Vec<u8>)>,
}

/// The most streams one push may hold (Loki's clients send a handful per
/// push; the cap bounds what the first pass keeps per stream).
pub const MAX_STREAMS_PER_PUSH: usize = 10_000;

/// Entries are stored in batches of at most this many message bytes...
const STORE_BATCH_BYTES: usize = 1 << 20;
/// ...or this many entries.
const STORE_BATCH_ENTRIES: usize = 4096;

/// What a push's body is, once its encoding is known.
enum Kind {
    Json,
    JsonGzip,
    /// The decompressed `PushRequest`.
    Protobuf(Vec<u8>),
}

/// A push body ready to be read twice (see [`visit`]): the body as it came
/// for JSON (gzip'd or not: it is inflated as it is read, never whole), the
/// decompressed message for protobuf (snappy's block format cannot be
/// read in pieces; its size is known from its header, and the caller
/// charges it to the budget before this decompresses it).
pub struct Prepared<'a> {
    body: &'a [u8],
    kind: Kind,
    max_bytes: usize,
}

/// Checks a push's content type and encoding; decompresses a protobuf
/// body. `max_bytes` bounds the body once decompressed; `charge` is called
/// with the decompressed size of a protobuf body before it is allocated
/// (the caller's budget: an error refuses the push).
pub fn prepare<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_bytes: usize,
    charge: impl FnOnce(usize) -> Result<(), LokiError>,
) -> Result<Prepared<'a>, LokiError> {
    let is_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let gzip = match content_encoding.map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(e) => {
            return Err(LokiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {e:?}: send gzip or no encoding"),
            ))
        }
    };
    let kind = match (is_json, gzip) {
        (true, false) => Kind::Json,
        (true, true) => Kind::JsonGzip,
        (false, gzip) => {
            // Loki's own clients never gzip protobuf, but a proxy may.
            let inflated;
            let snappy = if gzip {
                inflated = gunzip(body, max_bytes)?;
                &inflated[..]
            } else {
                body
            };
            Kind::Protobuf(unsnappy(snappy, max_bytes, charge)?)
        }
    };
    Ok(Prepared {
        body,
        kind,
        max_bytes,
    })
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

const PROTOBUF_HINT: &str = "a protobuf push body is a snappy-compressed (block format) \
     logproto.PushRequest; send Content-Type: application/json for JSON";

fn unsnappy(
    body: &[u8],
    max_bytes: usize,
    charge: impl FnOnce(usize) -> Result<(), LokiError>,
) -> Result<Vec<u8>, LokiError> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        LokiError::bad(format!(
            "push body is not snappy-compressed: {e} ({PROTOBUF_HINT})"
        ))
    })?;
    if len > max_bytes {
        return Err(too_large(max_bytes));
    }
    charge(len)?;
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| {
        LokiError::bad(format!(
            "push body is not valid snappy: {e} ({PROTOBUF_HINT})"
        ))
    })
}

/// What [`visit`] finds in a push, in body order.
#[derive(Debug)]
pub enum Event<'a> {
    /// The labels of stream `stream` (the `n`th, from 0); in JSON they may
    /// come after its entries.
    Labels {
        stream: usize,
        labels: Vec<(String, String)>,
    },
    /// One entry of stream `stream`.
    Entry {
        stream: usize,
        time_ns: u64,
        line: &'a [u8],
    },
}

/// Reads a prepared push once, from its start, handing every stream's
/// labels and every entry to `on` as it goes; an error from `on` stops the
/// reading and is returned. Memory: one line at a time (and, for gzip'd
/// JSON, the inflater's window), whatever the body holds.
pub fn visit(
    prepared: &Prepared<'_>,
    mut on: impl FnMut(Event<'_>) -> Result<(), LokiError>,
) -> Result<(), LokiError> {
    match &prepared.kind {
        Kind::Json => json::visit(serde_json::de::SliceRead::new(prepared.body), &mut on),
        Kind::JsonGzip => {
            let inflating = Limited {
                inner: flate2::read::GzDecoder::new(prepared.body),
                left: prepared.max_bytes as u64,
            };
            let reader = std::io::BufReader::with_capacity(64 * 1024, inflating);
            json::visit(serde_json::de::IoRead::new(reader), &mut on)
        }
        Kind::Protobuf(raw) => protobuf::visit(raw, &mut on),
    }
}

/// A reader that fails once more than its limit was read: gzip'd JSON is
/// inflated as it is parsed, and must not inflate past `--loki-max-push`.
struct Limited<R> {
    inner: R,
    left: u64,
}

/// The error a [`Limited`] reader fails with (found again by its text).
const INFLATED_TOO_FAR: &str = "ringtail: inflated past the push size limit";

impl<R: std::io::Read> std::io::Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(INFLATED_TOO_FAR));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Decodes a whole push into streams (tests, fuzzing).
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Vec<PushStream>, LokiError> {
    let prepared = prepare(content_type, content_encoding, body, max_bytes, |_| Ok(()))?;
    let mut streams: Vec<PushStream> = Vec::new();
    visit(&prepared, |event| {
        let slot = |streams: &mut Vec<PushStream>, i: usize| {
            while streams.len() <= i {
                streams.push(PushStream {
                    labels: Vec::new(),
                    entries: Vec::new(),
                });
            }
        };
        match event {
            Event::Labels { stream, labels } => {
                slot(&mut streams, stream);
                streams[stream].labels = labels;
            }
            Event::Entry {
                stream,
                time_ns,
                line,
            } => {
                slot(&mut streams, stream);
                streams[stream].entries.push((time_ns, line.to_vec()));
            }
        }
        Ok(())
    })?;
    Ok(streams)
}

/// The JSON body, streamed with serde: the visitors below hand each entry
/// to the caller as soon as it is parsed and keep nothing.
mod json {
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    use super::{Event, LokiError, INFLATED_TOO_FAR};

    type On<'f> = &'f mut dyn FnMut(Event<'_>) -> Result<(), LokiError>;

    pub(super) fn visit<'de, R>(reader: R, on: On<'_>) -> Result<(), LokiError>
    where
        R: serde_json::de::Read<'de>,
    {
        let mut failed: Option<LokiError> = None;
        let mut de = serde_json::Deserializer::new(reader);
        let result = PushSeed {
            on,
            failed: &mut failed,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Some(e) = failed {
            return Err(e);
        }
        result.map_err(|e| {
            if e.to_string().contains(INFLATED_TOO_FAR) {
                super::too_large(usize::MAX)
            } else if e.is_io() {
                LokiError::bad(format!("push body is not valid gzip: {e}"))
            } else {
                LokiError::bad(format!("push body is not valid Loki push JSON: {e}"))
            }
        })
    }

    /// Calls the caller's function; its error is kept aside (serde's error
    /// type carries only text) and reading stops.
    fn call<E: de::Error>(
        on: &mut On<'_>,
        failed: &mut Option<LokiError>,
        event: Event<'_>,
    ) -> Result<(), E> {
        on(event).map_err(|e| {
            let text = e.msg.clone();
            *failed = Some(e);
            E::custom(text)
        })
    }

    struct PushSeed<'f, 'o> {
        on: On<'o>,
        failed: &'f mut Option<LokiError>,
    }

    impl<'de> DeserializeSeed<'de> for PushSeed<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for PushSeed<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a push {"streams":[...]}"#)
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "streams" {
                    seen = true;
                    map.next_value_seed(StreamsSeed {
                        on: &mut self.on,
                        failed: self.failed,
                    })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if !seen {
                return Err(de::Error::missing_field("streams"));
            }
            Ok(())
        }
    }

    struct StreamsSeed<'f, 'o, 'p> {
        on: &'p mut On<'o>,
        failed: &'f mut Option<LokiError>,
    }

    impl<'de> DeserializeSeed<'de> for StreamsSeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for StreamsSeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of streams")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut stream = 0;
            while seq
                .next_element_seed(StreamSeed {
                    on: self.on,
                    failed: self.failed,
                    stream,
                })?
                .is_some()
            {
                stream += 1;
            }
            Ok(())
        }
    }

    struct StreamSeed<'f, 'o, 'p> {
        on: &'p mut On<'o>,
        failed: &'f mut Option<LokiError>,
        stream: usize,
    }

    impl<'de> DeserializeSeed<'de> for StreamSeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for StreamSeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a stream {"stream":{...},"values":[...]}"#)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut labelled = false;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match &*key {
                    "stream" => {
                        let labels: std::collections::BTreeMap<String, String> =
                            map.next_value()?;
                        labelled = true;
                        let event = Event::Labels {
                            stream: self.stream,
                            labels: labels.into_iter().collect(),
                        };
                        call(self.on, self.failed, event)?;
                    }
                    "values" => map.next_value_seed(ValuesSeed {
                        on: self.on,
                        failed: self.failed,
                        stream: self.stream,
                    })?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if !labelled {
                return Err(de::Error::missing_field("stream"));
            }
            Ok(())
        }
    }

    struct ValuesSeed<'f, 'o, 'p> {
        on: &'p mut On<'o>,
        failed: &'f mut Option<LokiError>,
        stream: usize,
    }

    impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for ValuesSeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq
                .next_element_seed(EntrySeed {
                    on: &mut *self.on,
                    failed: &mut *self.failed,
                    stream: self.stream,
                })?
                .is_some()
            {}
            Ok(())
        }
    }

    struct EntrySeed<'f, 'o, 'p> {
        on: &'p mut On<'o>,
        failed: &'f mut Option<LokiError>,
        stream: usize,
    }

    impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for EntrySeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                r#"an entry ["<unix ns as a string>", "<line>"], optionally with structured metadata {...}"#,
            )
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let ts: std::borrow::Cow<'de, str> = seq
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
            let time_ns: u64 = ts.parse().map_err(|_| invalid())?;
            let line: std::borrow::Cow<'de, str> = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(1, &self))?;
            let _metadata: Option<std::collections::BTreeMap<String, String>> =
                seq.next_element()?;
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(4, &self));
            }
            let event = Event::Entry {
                stream: self.stream,
                time_ns,
                line: line.as_bytes(),
            };
            call(self.on, self.failed, event)
        }
    }
}

/// The protobuf body, walked field by field over the decompressed message:
/// every line is a slice of it, never a copy. Written by hand rather than
/// with prost's derived types (which the tests and forwarders use to
/// *encode*), because decoding those would copy every line of a push into
/// its own allocation at once, which is what this module exists to avoid.
mod protobuf {
    use super::{timestamp_ns, Event, LokiError, Timestamp, PROTOBUF_HINT};
    use crate::filter::MatchOp;
    use crate::serve::loki::logql;

    type On<'f> = &'f mut dyn FnMut(Event<'_>) -> Result<(), LokiError>;

    /// One field: its number and its value.
    enum Field<'a> {
        /// A varint (its value is not needed by any field read here).
        Varint,
        Bytes(&'a [u8]),
        /// Fixed 32/64-bit values (skipped by every message here).
        Fixed,
    }

    fn bad(what: &str) -> LokiError {
        LokiError::bad(format!(
            "push body is not a valid PushRequest: {what} ({PROTOBUF_HINT})"
        ))
    }

    /// The next field of `buf`, advancing it.
    fn next_field<'a>(buf: &mut &'a [u8]) -> Result<Option<(u32, Field<'a>)>, LokiError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let key = prost::encoding::decode_varint(buf).map_err(|_| bad("a bad field key"))?;
        let tag = u32::try_from(key >> 3).map_err(|_| bad("a field number out of range"))?;
        let field = match key & 7 {
            0 => {
                prost::encoding::decode_varint(buf).map_err(|_| bad("a bad varint"))?;
                Field::Varint
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if buf.len() < n {
                    return Err(bad("a fixed-size field cut short"));
                }
                *buf = &buf[n..];
                Field::Fixed
            }
            2 => {
                let len = prost::encoding::decode_varint(buf).map_err(|_| bad("a bad length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len())
                    .ok_or_else(|| bad("a length past the end of the message"))?;
                let (value, rest) = buf.split_at(len);
                *buf = rest;
                Field::Bytes(value)
            }
            _ => return Err(bad("an unsupported wire type (groups)")),
        };
        Ok(Some((tag, field)))
    }

    pub(super) fn visit(mut buf: &[u8], on: On<'_>) -> Result<(), LokiError> {
        let mut stream = 0;
        while let Some((tag, field)) = next_field(&mut buf)? {
            match (tag, field) {
                (1, Field::Bytes(adapter)) => {
                    visit_stream(adapter, stream, on)?;
                    stream += 1;
                }
                (1, _) => return Err(bad("streams must be messages")),
                _ => {}
            }
        }
        Ok(())
    }

    /// `StreamAdapter{labels=1, entries=2, hash=3}`.
    fn visit_stream(mut buf: &[u8], stream: usize, on: On<'_>) -> Result<(), LokiError> {
        let mut labelled = false;
        while let Some((tag, field)) = next_field(&mut buf)? {
            match (tag, field) {
                (1, Field::Bytes(text)) => {
                    let text = std::str::from_utf8(text)
                        .map_err(|_| bad("stream labels that are not UTF-8"))?;
                    on(Event::Labels {
                        stream,
                        labels: labels(text)?,
                    })?;
                    labelled = true;
                }
                (2, Field::Bytes(entry)) => {
                    let (time_ns, line) = entry_fields(entry)?;
                    on(Event::Entry {
                        stream,
                        time_ns,
                        line,
                    })?;
                }
                (1 | 2, _) => return Err(bad("a stream field of the wrong type")),
                _ => {}
            }
        }
        if !labelled {
            // Proto3 leaves an empty string out: a stream with no labels.
            on(Event::Labels {
                stream,
                labels: Vec::new(),
            })?;
        }
        Ok(())
    }

    /// `EntryAdapter{timestamp=1, line=2, structuredMetadata=3}`.
    fn entry_fields(mut buf: &[u8]) -> Result<(u64, &[u8]), LokiError> {
        let (mut time, mut line) = (0, &b""[..]);
        while let Some((tag, field)) = next_field(&mut buf)? {
            match (tag, field) {
                (1, Field::Bytes(ts)) => {
                    let t = <Timestamp as prost::Message>::decode(ts)
                        .map_err(|_| bad("a bad entry timestamp"))?;
                    time = timestamp_ns(t);
                }
                (2, Field::Bytes(l)) => line = l,
                (1 | 2, _) => return Err(bad("an entry field of the wrong type")),
                _ => {}
            }
        }
        Ok((time, line))
    }

    /// The `{k="v", ...}` text of a stream's labels.
    fn labels(text: &str) -> Result<Vec<(String, String)>, LokiError> {
        let matchers = logql::parse_selector(text, false)
            .map_err(|e| LokiError::bad(format!("stream labels {text:?}: {e}")))?;
        matchers
            .into_iter()
            .map(|m| {
                if m.op != MatchOp::Eq {
                    return Err(LokiError::bad(format!(
                        "stream labels {text:?}: only name=\"value\" pairs are allowed"
                    )));
                }
                Ok((m.name, m.value))
            })
            .collect()
    }
}

/// A protobuf timestamp in ns since the Unix epoch; before the epoch is 0,
/// past 2262 the largest.
fn timestamp_ns(t: Timestamp) -> u64 {
    let ns = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    ns.clamp(0, i128::from(u64::MAX)) as u64
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

/// Stores a prepared push through the pipeline; returns the number of
/// entries stored.
///
/// Two passes over the body: the first checks every stream and entry and
/// keeps only each stream's origin, so that a bad stream or entry anywhere
/// refuses the whole push with nothing stored; the second stores, in
/// batches of at most [`STORE_BATCH_BYTES`]. Memory is the body (which the
/// caller holds under its budget), one batch, and the streams' origins,
/// whatever the body holds. Only a full origin table found in the second
/// pass can leave part of a push stored; the answer then says so.
pub fn ingest(pipeline: &Pipeline, prepared: &Prepared<'_>) -> Result<u64, LokiError> {
    // Pass 1: labels → origins, and every entry checked.
    let mut plans: Vec<Option<(Origin, Flags)>> = Vec::new();
    let mut entries = 0u64;
    visit(prepared, |event| {
        match event {
            Event::Labels { stream, labels } => {
                if stream >= MAX_STREAMS_PER_PUSH {
                    return Err(LokiError::bad(format!(
                        "more than {MAX_STREAMS_PER_PUSH} streams in one push; send fewer per \
                         request"
                    )));
                }
                if plans.len() <= stream {
                    plans.resize(stream + 1, None);
                }
                plans[stream] = Some(origin_of(&labels)?);
            }
            Event::Entry { .. } => entries += 1,
        }
        Ok(())
    })?;
    if entries == 0 {
        return Ok(0);
    }
    // Pass 2: store, stream by stream as they come.
    let mut handles: Vec<Option<crate::ring::OriginHandle>> = vec![None; plans.len()];
    let mut batch = pipeline.batch();
    let mut batch_stream = usize::MAX;
    let mut stored = 0u64;
    let flush = |handles: &[Option<crate::ring::OriginHandle>],
                 batch: &mut super::pipeline::Batch,
                 stream: usize,
                 stored: &mut u64| {
        if batch.is_empty() {
            return;
        }
        if let Some(Some(h)) = handles.get(stream) {
            let seqs = pipeline.store_batch(h, None, batch);
            *stored += seqs.end - seqs.start;
        }
        batch.clear();
    };
    let mut failed = None;
    visit(prepared, |event| {
        let Event::Entry {
            stream,
            time_ns,
            line,
        } = event
        else {
            return Ok(());
        };
        if stream != batch_stream {
            flush(&handles, &mut batch, batch_stream, &mut stored);
            batch_stream = stream;
        }
        if handles[stream].is_none() {
            let Some(Some((origin, _))) = plans.get(stream) else {
                return Err(LokiError::internal("a stream seen only in the second pass"));
            };
            match pipeline.origin(origin.clone()) {
                Ok(h) => handles[stream] = Some(h),
                Err(e @ OriginError::Table(_)) => {
                    let e = LokiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string());
                    failed = Some(e.msg.clone());
                    return Err(e);
                }
                Err(e) => return Err(LokiError::bad(e.to_string())),
            }
        }
        let flags = plans[stream].as_ref().map(|(_, f)| *f).unwrap_or_default();
        // A zero time is a protobuf entry without a timestamp (or a JSON
        // "0"): no producer time to keep, so the arrival time stands.
        let source_time = if time_ns == 0 {
            SourceTime::None
        } else {
            SourceTime::Original(time_ns)
        };
        batch.push(line, flags, source_time);
        if batch.bytes() >= STORE_BATCH_BYTES || batch.entries() >= STORE_BATCH_ENTRIES {
            flush(&handles, &mut batch, stream, &mut stored);
        }
        Ok(())
    })
    .map_err(|mut e| {
        if failed.is_some() && stored > 0 {
            e.msg = format!(
                "{} ({stored} entries of this push were stored before)",
                e.msg
            );
        }
        e
    })?;
    flush(&handles, &mut batch, batch_stream, &mut stored);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// A JSON push of `streams`.
    fn json_body(streams: &[PushStream]) -> Vec<u8> {
        let streams: Vec<serde_json::Value> = streams
            .iter()
            .map(|s| {
                let labels: serde_json::Map<String, serde_json::Value> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                let values: Vec<serde_json::Value> = s
                    .entries
                    .iter()
                    .map(|(t, l)| serde_json::json!([t.to_string(), String::from_utf8_lossy(l)]))
                    .collect();
                serde_json::json!({"stream": labels, "values": values})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap()
    }

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
        let body = json_body(&streams);
        let prepared = prepare(Some("application/json"), None, &body, 1 << 20, |_| Ok(())).unwrap();
        assert_eq!(ingest(&pipeline, &prepared).unwrap(), 4);
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
        let body = json_body(&mixed);
        let prepared = prepare(Some("application/json"), None, &body, 1 << 20, |_| Ok(())).unwrap();
        assert!(ingest(&pipeline, &prepared).is_err());
        assert_eq!(
            ring.stats().retained,
            before + 4,
            "nothing of a refused push is stored"
        );
    }

    #[test]
    fn json_values_may_come_before_the_stream_labels() {
        let body = br#"{"streams":[{"values":[["5","first"]],"stream":{"source":"late"}},{"stream":{"source":"b"},"values":[["6","x"]]}]}"#;
        let s = decode(Some("application/json"), None, body, 1 << 20).unwrap();
        assert_eq!(s[0].labels, labels(&[("source", "late")]));
        assert_eq!(s[0].entries, vec![(5, b"first".to_vec())]);
        assert_eq!(s[1].labels, labels(&[("source", "b")]));
        let missing = br#"{"streams":[{"values":[["5","x"]]}]}"#;
        assert!(decode(Some("application/json"), None, missing, 1 << 20)
            .unwrap_err()
            .msg
            .contains("missing field `stream`"));
    }

    #[test]
    fn gzip_json_is_inflated_as_it_is_read_and_never_past_the_limit() {
        use std::io::Write as _;
        // 100,000 entries: about 2.6 MB of JSON from a small gzip body.
        let mut json = br#"{"streams":[{"stream":{"source":"g"},"values":["#.to_vec();
        for i in 0..100_000 {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(br#"["1","llllllllllllllllllll"]"#);
        }
        json.extend_from_slice(b"]}]}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&json).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < json.len() / 50);
        let prepared = prepare(Some("application/json"), Some("gzip"), &gz, 4 << 20, |_| {
            Ok(())
        })
        .unwrap();
        let mut n = 0;
        visit(&prepared, |e| {
            if let Event::Entry { line, .. } = e {
                assert_eq!(line, b"llllllllllllllllllll");
                n += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 100_000);
        // Inflating past the limit stops with a 413.
        let prepared = prepare(Some("application/json"), Some("gzip"), &gz, 1 << 20, |_| {
            Ok(())
        })
        .unwrap();
        let e = visit(&prepared, |_| Ok(())).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    }

    #[test]
    fn protobuf_is_walked_field_by_field_skipping_unknown_fields() {
        use prost::Message as _;
        let mut raw = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{source="p"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: 2,
                            nanos: 3,
                        }),
                        line: b"one".to_vec(),
                        structured_metadata: vec![],
                    },
                    EntryAdapter {
                        timestamp: None,
                        line: b"two".to_vec(),
                        structured_metadata: vec![],
                    },
                ],
                hash: 42,
            }],
        }
        .encode_to_vec();
        // An unknown varint field (tag 9) and an unknown fixed64 (tag 10)
        // from a newer client.
        raw.extend_from_slice(&[9 << 3, 7, (10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let mut charged = 0;
        let prepared = prepare(None, None, &body, 1 << 20, |n| {
            charged = n;
            Ok(())
        })
        .unwrap();
        assert_eq!(charged, raw.len(), "the decompressed size is charged first");
        let s = decode(None, None, &body, 1 << 20).unwrap();
        assert_eq!(s[0].labels, labels(&[("source", "p")]));
        assert_eq!(
            s[0].entries,
            vec![(2_000_000_003, b"one".to_vec()), (0, b"two".to_vec())]
        );
        drop(prepared);
        // A refused charge refuses the push.
        let e = prepare(None, None, &body, 1 << 20, |_| {
            Err(LokiError::new(StatusCode::TOO_MANY_REQUESTS, "busy"))
        })
        .err()
        .unwrap();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        // Cut short: an error, never a panic.
        let cut = snap::raw::Encoder::new()
            .compress_vec(&raw[..raw.len() - 12])
            .unwrap();
        assert!(decode(None, None, &cut, 1 << 20).is_err());
    }
}
