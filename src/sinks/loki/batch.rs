//! Building Loki push bodies from ring entries.
//!
//! A [`LokiBatcher`] takes entries in seq order and groups them into
//! streams (one per label set, see [`super::labels`]), keeping each
//! stream's entries in seq order, until a cap is reached; [`LokiBatcher::finish`]
//! encodes the batch into a request body and starts the next one.
//!
//! - **Caps.** A batch holds at most `max_entries` Loki entries and
//!   `max_bytes` bytes, counting each entry's line plus 16 bytes (its
//!   timestamp and framing in the protobuf) and each stream's selector
//!   once: close to the uncompressed protobuf size. [`LokiBatcher::push`]
//!   answers [`Admit::Full`] (and keeps nothing of the entry) when the entry
//!   would pass a cap; a batch always takes its first entry whatever its
//!   size, so an entry is never refused for good.
//! - **Long lines.** A line longer than `max_line_bytes` (Loki's
//!   `max_line_size`, 256 KiB by default; beyond it Loki drops the line)
//!   is sent as several Loki entries, cut at character boundaries.
//! - **Text.** Message bytes go through [`crate::sinks::ship::message_text`]
//!   (invalid UTF-8 as `\xNN`).
//! - **Timestamps are unique and increasing per stream.** Loki drops an
//!   entry whose timestamp and line equal another's in the same stream,
//!   and ringtail stamps a whole append batch with one clock reading, so
//!   two identical lines logged together would lose one. The batcher
//!   therefore sends `max(ship_time, previous timestamp of the stream + 1 ns)`,
//!   remembering each stream's last timestamp across batches. With the
//!   ring's receive times (never decreasing) the shifts are nanoseconds per
//!   entry sharing a time; a time earlier than its stream's last (possible
//!   once producers' own times are shipped) is sent as that last + 1 ns,
//!   which also keeps a stream in order for a Loki with ordered writes.
//!   The same batch body is re-sent byte for byte on a retry, so Loki
//!   recognises what it already has. After a restart of ringtail the
//!   forwarder rebuilds this memory from the ring before it sends
//!   ([`super::sink::LokiShipper::replay`]), so the entries sent again get
//!   the timestamps they had.
//! - **Encodings.** Protobuf `PushRequest` compressed with block (raw)
//!   snappy, `Content-Type: application/x-protobuf` (Loki's native form and
//!   the default); or JSON, optionally gzip-compressed.

use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::labels::{stream_labels, LabelRules, Overflow};
use crate::entry::{EntryRef, Flags, Origin};
use crate::sinks::ship::{message_text, ship_time, split_text, OriginCache};
use crate::sources::loki_push::{EntryAdapter, LabelPair, PushRequest, StreamAdapter, Timestamp};

/// Loki's default `max_line_size` (256 KiB: Loki's "KB" is 1024 bytes).
pub const LOKI_MAX_LINE_BYTES: usize = 256 * 1024;
/// What an entry costs beyond its line in the byte cap.
pub const ENTRY_OVERHEAD: usize = 16;
/// Streams the batcher remembers; past this its memory is cleared between
/// batches (see [`LokiBatcher`]).
pub const MAX_REMEMBERED_STREAMS: usize = 100_000;

/// How a batch is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LokiEncoding {
    /// Protobuf with block snappy.
    #[default]
    Protobuf,
    /// JSON, gzip-compressed when `gzip` is true.
    Json { gzip: bool },
}

/// How batches are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LokiBatchConfig {
    pub encoding: LokiEncoding,
    /// At most this many Loki entries per batch (pieces of a split line
    /// count one each).
    pub max_entries: usize,
    /// At most about this many bytes per batch, uncompressed.
    pub max_bytes: usize,
    /// Longer lines are split.
    pub max_line_bytes: usize,
    pub labels: LabelRules,
}

impl Default for LokiBatchConfig {
    fn default() -> Self {
        LokiBatchConfig {
            encoding: LokiEncoding::Protobuf,
            max_entries: 10_000,
            max_bytes: 1024 * 1024,
            max_line_bytes: LOKI_MAX_LINE_BYTES,
            labels: LabelRules::default(),
        }
    }
}

pub use crate::sinks::ship::Admit;

/// An encoded batch, ready to send (and to re-send unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LokiBatch {
    /// The request body.
    pub body: Bytes,
    pub content_type: &'static str,
    /// `Content-Encoding`, if any.
    pub content_encoding: Option<&'static str>,
    /// The first and last ring seq in the batch: acknowledging the batch
    /// acknowledges every seq up to `last_seq`.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Ring entries in the batch.
    pub entries: u64,
    /// Loki entries (more than `entries` when long lines were split).
    pub lines: u64,
    /// Line bytes, uncompressed.
    pub line_bytes: u64,
    pub streams: usize,
    /// Labels dropped (clash or limit), summed over ring entries; with
    /// [`Overflow::StructuredMetadata`] they were sent as metadata instead.
    pub dropped_labels: u64,
    /// Ring entries that were split into several Loki entries.
    pub split_entries: u64,
    /// Each stream's selector and its number of Loki entries, in body order.
    pub stream_lines: Vec<(Arc<str>, u64)>,
}

impl super::answer::BatchShape for LokiBatch {
    fn lines(&self) -> u64 {
        self.lines
    }

    fn stream_lines(&self, labels: &str) -> Option<u64> {
        self.stream_lines
            .iter()
            .find(|(selector, _)| &**selector == labels)
            .map(|(_, n)| *n)
    }
}

/// The labels of one origin and flags, computed once.
#[derive(Debug)]
struct Rendered {
    selector: Arc<str>,
    /// The stream's number in [`LokiBatcher::streams_known`] (several
    /// origins may share a selector, and so a stream).
    id: usize,
    /// The kept labels, sorted by name (for the JSON body).
    pairs: Vec<(String, String)>,
    /// Sent as structured metadata, when the rules say so.
    metadata: Vec<LabelPair>,
    dropped: u64,
}

/// What the batcher remembers of a stream across batches.
#[derive(Debug)]
struct Known {
    /// The last timestamp sent in the stream.
    last_ts: u64,
    /// The stream's index in the batch being built, if it is in it.
    in_batch: Option<usize>,
}

/// One stream of the batch being built.
#[derive(Debug)]
struct StreamBuf {
    labels: Arc<Rendered>,
    entries: Vec<EntryAdapter>,
}

/// Builds Loki batches; see the module doc.
///
/// Per entry it hashes the origin once (to find its labels) and allocates
/// the line; labels, selectors and stream lookups are computed once per
/// origin. What it remembers across batches (labels per origin, last
/// timestamp per stream) is dropped between batches once it holds
/// [`MAX_REMEMBERED_STREAMS`] streams.
#[derive(Debug)]
pub struct LokiBatcher {
    /// Fixed at construction.
    config: LokiBatchConfig,
    /// Labels per origin (and stream and level).
    rendered: OriginCache<Rendered>,
    /// Stream numbers by selector.
    stream_ids: FxHashMap<Arc<str>, usize>,
    /// By stream number.
    streams_known: Vec<Known>,
    /// The batch being built.
    streams: Vec<StreamBuf>,
    first_seq: u64,
    last_seq: u64,
    entries: u64,
    lines: usize,
    bytes: usize,
    line_bytes: u64,
    dropped_labels: u64,
    split_entries: u64,
}

impl LokiBatcher {
    pub fn new(config: LokiBatchConfig) -> LokiBatcher {
        LokiBatcher {
            config,
            rendered: OriginCache::default(),
            stream_ids: FxHashMap::default(),
            streams_known: Vec::new(),
            streams: Vec::new(),
            first_seq: 0,
            last_seq: 0,
            entries: 0,
            lines: 0,
            bytes: 0,
            line_bytes: 0,
            dropped_labels: 0,
            split_entries: 0,
        }
    }

    pub fn config(&self) -> &LokiBatchConfig {
        &self.config
    }

    /// Changes the byte cap of the batches started from now on (a
    /// forwarder shrinks it after Loki answered 413).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.config.max_bytes = max_bytes;
    }

    /// Ring entries in the batch being built.
    pub fn len(&self) -> u64 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The batch's size as counted against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn labels_of(&mut self, origin: &Origin, flags: Flags) -> Arc<Rendered> {
        let rules = &self.config.labels;
        let stream_ids = &mut self.stream_ids;
        let streams_known = &mut self.streams_known;
        self.rendered.get_or_insert_with(origin, flags, || {
            let labels = stream_labels(rules, origin, flags);
            let metadata = match rules.overflow {
                Overflow::Drop => Vec::new(),
                Overflow::StructuredMetadata => labels
                    .dropped
                    .iter()
                    .map(|(name, value)| LabelPair {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            };
            let selector: Arc<str> = labels.selector.into();
            let id = *stream_ids.entry(selector.clone()).or_insert_with(|| {
                streams_known.push(Known {
                    last_ts: 0,
                    in_batch: None,
                });
                streams_known.len() - 1
            });
            Rendered {
                selector,
                id,
                pairs: labels.pairs,
                metadata,
                dropped: labels.dropped.len() as u64,
            }
        })
    }

    /// Lines of at most `max_line` bytes that `text` is sent as.
    fn pieces(text: &str, max_line: usize) -> usize {
        if text.len() <= max_line {
            1
        } else {
            split_text(text, max_line).count()
        }
    }

    /// Moves the memory of `e`'s stream on as [`push`](Self::push) would,
    /// without adding `e` to a batch: how a restart rebuilds the shifts of
    /// entries that were sent before it
    /// ([`super::sink::LokiShipper::replay`]).
    pub fn remember(&mut self, e: &EntryRef<'_>) {
        let id = self.labels_of(e.origin, e.flags).id;
        let pieces = Self::pieces(&message_text(e.msg), self.config.max_line_bytes.max(4));
        let known = &mut self.streams_known[id];
        let mut ts = ship_time(e);
        for _ in 0..pieces {
            ts = ts.max(known.last_ts.saturating_add(1));
            known.last_ts = ts;
        }
    }

    /// Adds an entry (entries must come in seq order).
    pub fn push(&mut self, e: &EntryRef<'_>) -> Admit {
        let rendered = self.labels_of(e.origin, e.flags);
        let text = message_text(e.msg);
        let max_line = self.config.max_line_bytes.max(4);
        let pieces = Self::pieces(&text, max_line);
        let in_batch = self.streams_known[rendered.id].in_batch;
        let metadata_bytes: usize = rendered
            .metadata
            .iter()
            .map(|p| p.name.len() + p.value.len() + 4)
            .sum();
        let cost = text.len()
            + pieces * (ENTRY_OVERHEAD + metadata_bytes)
            + if in_batch.is_none() {
                rendered.selector.len() + ENTRY_OVERHEAD
            } else {
                0
            };
        if self.entries > 0
            && (self.lines + pieces > self.config.max_entries
                || self.bytes + cost > self.config.max_bytes)
        {
            return Admit::Full;
        }

        let index = match in_batch {
            Some(i) => i,
            None => {
                self.streams.push(StreamBuf {
                    labels: rendered.clone(),
                    entries: Vec::new(),
                });
                let i = self.streams.len() - 1;
                self.streams_known[rendered.id].in_batch = Some(i);
                i
            }
        };
        let known = &mut self.streams_known[rendered.id];
        let stream = &mut self.streams[index];
        let mut ts = ship_time(e);
        for piece in split_text(&text, max_line) {
            ts = ts.max(known.last_ts.saturating_add(1));
            known.last_ts = ts;
            stream.entries.push(EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: (ts / 1_000_000_000) as i64,
                    nanos: (ts % 1_000_000_000) as i32,
                }),
                line: piece.as_bytes().to_vec(),
                structured_metadata: rendered.metadata.clone(),
            });
        }

        if self.entries == 0 {
            self.first_seq = e.seq;
        }
        self.last_seq = e.seq;
        self.entries += 1;
        self.lines += pieces;
        self.bytes += cost;
        self.line_bytes += text.len() as u64;
        self.dropped_labels += rendered.dropped;
        if pieces > 1 {
            self.split_entries += 1;
        }
        Admit::Added
    }

    /// Encodes the batch (`None` when it is empty) and starts a new one.
    pub fn finish(&mut self) -> Option<LokiBatch> {
        if self.entries == 0 {
            return None;
        }
        let streams = std::mem::take(&mut self.streams);
        for s in &streams {
            self.streams_known[s.labels.id].in_batch = None;
        }
        if self.streams_known.len() >= MAX_REMEMBERED_STREAMS {
            self.rendered.clear();
            self.stream_ids.clear();
            self.streams_known.clear();
        }
        let stream_count = streams.len();
        let stream_lines = streams
            .iter()
            .map(|s| (s.labels.selector.clone(), s.entries.len() as u64))
            .collect();
        let (body, content_type, content_encoding) = encode(self.config.encoding, streams);
        let batch = LokiBatch {
            body,
            content_type,
            content_encoding,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            entries: self.entries,
            lines: self.lines as u64,
            line_bytes: self.line_bytes,
            streams: stream_count,
            dropped_labels: self.dropped_labels,
            split_entries: self.split_entries,
            stream_lines,
        };
        self.entries = 0;
        self.lines = 0;
        self.bytes = 0;
        self.line_bytes = 0;
        self.dropped_labels = 0;
        self.split_entries = 0;
        Some(batch)
    }
}

fn encode(
    encoding: LokiEncoding,
    streams: Vec<StreamBuf>,
) -> (Bytes, &'static str, Option<&'static str>) {
    match encoding {
        LokiEncoding::Protobuf => {
            let streams = streams
                .into_iter()
                .map(|s| StreamAdapter {
                    labels: s.labels.selector.to_string(),
                    entries: s.entries,
                    hash: 0,
                })
                .collect();
            let raw = prost::Message::encode_to_vec(&PushRequest { streams });
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy compresses any input below 4 GiB");
            (body.into(), "application/x-protobuf", None)
        }
        LokiEncoding::Json { gzip } => {
            let json = json_body(&streams);
            if gzip {
                use std::io::Write as _;
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(json.len() / 4),
                    flate2::Compression::fast(),
                );
                enc.write_all(&json).expect("writing to a Vec cannot fail");
                let body = enc.finish().expect("writing to a Vec cannot fail");
                (body.into(), "application/json", Some("gzip"))
            } else {
                (json.into(), "application/json", None)
            }
        }
    }
}

/// `{"streams":[{"stream":{..},"values":[["<ns>","line"(,{metadata})]]}]}`.
fn json_body(streams: &[StreamBuf]) -> Vec<u8> {
    use crate::format::json_str;
    let size: usize = streams
        .iter()
        .map(|s| {
            s.labels.selector.len() + s.entries.iter().map(|e| e.line.len() + 32).sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(size + 32);
    out.extend_from_slice(b"{\"streams\":[");
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":{");
        for (j, (name, value)) in s.labels.pairs.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_str(&mut out, name.as_bytes());
            out.push(b':');
            json_str(&mut out, value.as_bytes());
        }
        out.extend_from_slice(b"},\"values\":[");
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let ts = e.timestamp.unwrap_or_default();
            let ns = ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64;
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
            out.extend_from_slice(b"\",");
            json_str(&mut out, &e.line);
            if !e.structured_metadata.is_empty() {
                out.extend_from_slice(b",{");
                for (k, p) in e.structured_metadata.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    json_str(&mut out, p.name.as_bytes());
                    out.push(b':');
                    json_str(&mut out, p.value.as_bytes());
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Stream;

    fn entry<'a>(seq: u64, time: u64, origin: &'a Origin, msg: &'a [u8]) -> EntryRef<'a> {
        EntryRef {
            seq,
            time,
            source_time: Default::default(),
            origin,
            flags: Flags::default(),
            msg,
        }
    }

    fn decode_protobuf(batch: &LokiBatch) -> PushRequest {
        assert_eq!(batch.content_type, "application/x-protobuf");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&batch.body)
            .unwrap();
        prost::Message::decode(raw.as_slice()).unwrap()
    }

    fn ns(e: &EntryAdapter) -> u64 {
        let t = e.timestamp.unwrap();
        t.seconds as u64 * 1_000_000_000 + t.nanos as u64
    }

    #[test]
    fn groups_per_stream_in_seq_order() {
        let a = Origin::new("a");
        let b = Origin::new("b").with_label("app", "x");
        let mut batcher = LokiBatcher::new(LokiBatchConfig::default());
        let msgs: Vec<Vec<u8>> = (0..6).map(|i| format!("line {i}").into_bytes()).collect();
        for (i, m) in msgs.iter().enumerate() {
            let origin = if i % 2 == 0 { &a } else { &b };
            assert_eq!(
                batcher.push(&entry(10 + i as u64, 1000 + i as u64, origin, m)),
                Admit::Added
            );
        }
        let batch = batcher.finish().unwrap();
        assert_eq!(
            (batch.first_seq, batch.last_seq, batch.entries, batch.lines),
            (10, 15, 6, 6)
        );
        assert_eq!(batch.streams, 2);
        let req = decode_protobuf(&batch);
        assert_eq!(req.streams[0].labels, r#"{source="a"}"#);
        assert_eq!(req.streams[1].labels, r#"{app="x", source="b"}"#);
        let lines: Vec<&[u8]> = req.streams[0]
            .entries
            .iter()
            .map(|e| e.line.as_slice())
            .collect();
        assert_eq!(lines, [b"line 0", b"line 2", b"line 4"]);
        assert_eq!(ns(&req.streams[1].entries[2]), 1005);
        assert!(batcher.finish().is_none());
    }

    #[test]
    fn caps_make_full_batches_without_losing_the_entry() {
        let o = Origin::new("s");
        let mut batcher = LokiBatcher::new(LokiBatchConfig {
            max_entries: 3,
            ..LokiBatchConfig::default()
        });
        for seq in 0..3 {
            assert_eq!(batcher.push(&entry(seq, 1, &o, b"x")), Admit::Added);
        }
        assert_eq!(batcher.push(&entry(3, 1, &o, b"x")), Admit::Full);
        assert_eq!(batcher.len(), 3);
        assert_eq!(batcher.finish().unwrap().last_seq, 2);
        assert_eq!(batcher.push(&entry(3, 1, &o, b"x")), Admit::Added);

        let mut batcher = LokiBatcher::new(LokiBatchConfig {
            max_bytes: 100,
            ..LokiBatchConfig::default()
        });
        // The first entry is taken whatever its size ...
        let big = vec![b'a'; 1000];
        assert_eq!(batcher.push(&entry(0, 1, &o, &big)), Admit::Added);
        // ... the next one is not.
        assert_eq!(batcher.push(&entry(1, 1, &o, b"b")), Admit::Full);
        let batch = batcher.finish().unwrap();
        assert_eq!(batch.entries, 1);
        assert_eq!(batch.line_bytes, 1000);
    }

    #[test]
    fn long_lines_are_split_within_loki_limit() {
        let o = Origin::new("s");
        let text = "é".repeat(200_000); // 400,000 bytes
        let mut batcher = LokiBatcher::new(LokiBatchConfig::default());
        batcher.push(&entry(0, 7, &o, text.as_bytes()));
        let batch = batcher.finish().unwrap();
        assert_eq!((batch.entries, batch.lines, batch.split_entries), (1, 2, 1));
        let req = decode_protobuf(&batch);
        let pieces = &req.streams[0].entries;
        assert!(pieces.iter().all(|p| p.line.len() <= LOKI_MAX_LINE_BYTES));
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.line.clone()).collect();
        assert_eq!(joined, text.as_bytes());
        assert!(pieces.iter().all(|p| std::str::from_utf8(&p.line).is_ok()));
        assert_eq!((ns(&pieces[0]), ns(&pieces[1])), (7, 8));
    }

    #[test]
    fn timestamps_are_unique_per_stream_across_batches() {
        let o = Origin::new("s");
        let other = Origin::new("t");
        let mut batcher = LokiBatcher::new(LokiBatchConfig::default());
        // One append batch of identical lines shares one ring time.
        batcher.push(&entry(0, 100, &o, b"same"));
        batcher.push(&entry(1, 100, &o, b"same"));
        batcher.push(&entry(2, 100, &other, b"same"));
        let first = decode_protobuf(&batcher.finish().unwrap());
        batcher.push(&entry(3, 100, &o, b"same"));
        batcher.push(&entry(4, 500, &o, b"later"));
        let second = decode_protobuf(&batcher.finish().unwrap());
        let times: Vec<u64> = first.streams[0]
            .entries
            .iter()
            .chain(&second.streams[0].entries)
            .map(ns)
            .collect();
        assert_eq!(times, [100, 101, 102, 500]);
        // Another stream keeps its own time.
        assert_eq!(ns(&first.streams[1].entries[0]), 100);
    }

    #[test]
    fn text_and_flags() {
        let o = Origin::new("s");
        let mut batcher = LokiBatcher::new(LokiBatchConfig::default());
        let mut e = entry(0, 1, &o, b"bad \xff byte");
        e.flags = Flags::default()
            .with_stream(Some(Stream::Stdout))
            .with_level(crate::entry::Level::from_severity(6))
            .with_partial(true);
        batcher.push(&e);
        let req = decode_protobuf(&batcher.finish().unwrap());
        assert_eq!(
            req.streams[0].labels,
            r#"{level="info", source="s", stream="stdout"}"#
        );
        assert_eq!(req.streams[0].entries[0].line, b"bad \\xff byte");
    }

    #[test]
    fn json_gzip_and_structured_metadata() {
        let o = Origin::new("s").with_label("a", "1").with_label("b", "2");
        let mut config = LokiBatchConfig {
            encoding: LokiEncoding::Json { gzip: true },
            ..LokiBatchConfig::default()
        };
        config.labels.max_labels = 2;
        config.labels.overflow = Overflow::StructuredMetadata;
        let mut batcher = LokiBatcher::new(config);
        batcher.push(&entry(0, 1_700_000_000_123_456_789, &o, b"q\"uote"));
        let batch = batcher.finish().unwrap();
        assert_eq!(batch.dropped_labels, 1);
        assert_eq!(batch.content_encoding, Some("gzip"));
        let mut json = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&batch.body[..]),
            &mut json,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams":[{"stream":{"a":"1","source":"s"},
                "values":[["1700000000123456789","q\"uote",{"b":"2"}]]}]})
        );
    }

    #[test]
    fn ringtail_push_decoder_reads_both_encodings() {
        let o = Origin::new("web").with_label("container.name", "w");
        for encoding in [
            LokiEncoding::Protobuf,
            LokiEncoding::Json { gzip: false },
            LokiEncoding::Json { gzip: true },
        ] {
            let mut batcher = LokiBatcher::new(LokiBatchConfig {
                encoding,
                ..LokiBatchConfig::default()
            });
            batcher.push(&entry(0, 1, &o, b"one"));
            batcher.push(&entry(1, 2, &o, b"two"));
            let batch = batcher.finish().unwrap();
            let streams = crate::sources::loki_push::decode(
                Some(batch.content_type),
                batch.content_encoding,
                &batch.body,
                1 << 20,
            )
            .unwrap();
            assert_eq!(streams.len(), 1, "{encoding:?}");
            let lines: Vec<&[u8]> = streams[0].entries.iter().map(|(_, l)| &l[..]).collect();
            assert_eq!(lines, [&b"one"[..], &b"two"[..]]);
            assert!(streams[0]
                .labels
                .contains(&("container_name".to_string(), "w".to_string())));
        }
    }
}
