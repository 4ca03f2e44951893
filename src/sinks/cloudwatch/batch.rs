//! Building PutLogEvents requests from ring entries, under the service's
//! rules (CloudWatch Logs API reference, PutLogEvents):
//!
//! - at most 10,000 events per request;
//! - at most 1,048,576 bytes per request, counting each event's message
//!   in UTF-8 plus 26 bytes;
//! - events in chronological order (timestamps in milliseconds), spanning
//!   at most 24 hours;
//! - each event at most 256 KiB including its 26 bytes (so a message is at
//!   most 262,118 bytes) and at least 1 byte long.
//!
//! How entries are made to fit:
//! - message bytes become text by [`crate::sinks::ship::message_text`]
//!   (each byte that is not valid UTF-8 becomes the text `\xNN`);
//! - a longer message is split at UTF-8 boundaries into several events with
//!   the same timestamp, in order (as Docker's awslogs driver does);
//! - an empty message cannot be sent at all: it is skipped and counted
//!   ([`CwBatch::skipped_empty`]);
//! - each entry goes to the log group and stream its templates name; one
//!   batch holds one request per (group, stream), each sorted by
//!   timestamp (stable, so pieces of a split message stay in order);
//! - [`CwBatcher::push`] answers [`Admit::Full`] when the entry would break
//!   a rule of its request or the batch's own caps; a batch always takes
//!   its first entry (a split message never breaks the rules: its pieces
//!   share one timestamp and each piece is within the event limit, and a
//!   message of more than 1 MiB makes a batch of its own, several requests
//!   of one stream).

use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::api::{put_log_events_body, InputLogEvent};
use super::template::NameTemplate;
use crate::entry::{EntryRef, Flags, Origin};
use crate::sinks::ship::{message_text, ship_time, split_text, Admit, OriginCache};

/// At most this many events per PutLogEvents.
pub const MAX_EVENTS: usize = 10_000;
/// At most this many counted bytes per PutLogEvents.
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// What the service adds to each message when counting.
pub const EVENT_OVERHEAD: usize = 26;
/// The largest event, overhead included.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The longest message of one event.
pub const MAX_MESSAGE_BYTES: usize = MAX_EVENT_BYTES - EVENT_OVERHEAD;
/// The longest time span of one request, in ms.
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;

/// How batches are built.
#[derive(Clone, Debug)]
pub struct CwBatchConfig {
    pub group: NameTemplate,
    pub stream: NameTemplate,
    /// Caps of the whole batch (all its requests), within the per-request
    /// rules: events and counted bytes.
    pub max_events: usize,
    pub max_bytes: usize,
}

impl CwBatchConfig {
    pub fn new(group: NameTemplate, stream: NameTemplate) -> CwBatchConfig {
        CwBatchConfig {
            group,
            stream,
            max_events: MAX_EVENTS,
            max_bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// One PutLogEvents call, ready to sign and send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest {
    pub group: String,
    pub stream: String,
    /// Sorted by timestamp.
    pub events: Vec<InputLogEvent>,
    /// The JSON body.
    pub body: Bytes,
    /// The counted size (messages + 26 bytes each).
    pub counted_bytes: usize,
}

/// A batch: one request per (group, stream), in the order the streams
/// first appeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CwBatch {
    pub requests: Vec<PutRequest>,
    /// Acknowledging the batch acknowledges every seq up to `last_seq`.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Ring entries in the batch (skipped ones included).
    pub entries: u64,
    /// Events over all requests.
    pub events: u64,
    /// Entries with an empty message, not sent.
    pub skipped_empty: u64,
    /// Entries sent as several events.
    pub split_entries: u64,
}

#[derive(Debug)]
struct RequestBuf {
    dest: Arc<Dest>,
    events: Vec<InputLogEvent>,
    counted: usize,
    min_ts: i64,
    max_ts: i64,
}

/// A log group and stream, named once per origin.
#[derive(Debug)]
struct Dest {
    group: String,
    stream: String,
    /// Its number in [`CwBatcher::in_batch`].
    id: usize,
}

/// Builds CloudWatch batches; see the module doc.
///
/// Names are rendered once per origin (and level and stream); per entry
/// the batcher hashes the origin once and allocates the message. What it
/// remembers across batches is dropped between batches once it names
/// [`MAX_REMEMBERED_NAMES`] destinations.
#[derive(Debug)]
pub struct CwBatcher {
    config: CwBatchConfig,
    /// Destinations per origin (and stream and level).
    names: OriginCache<Dest>,
    /// Destination numbers by (group, stream).
    dest_ids: FxHashMap<(String, String), usize>,
    /// By destination number: its last request in the batch being built.
    in_batch: Vec<Option<usize>>,
    requests: Vec<RequestBuf>,
    first_seq: u64,
    last_seq: u64,
    entries: u64,
    events: usize,
    counted: usize,
    skipped_empty: u64,
    split_entries: u64,
}

/// Destinations the batcher remembers; past this its memory is cleared
/// between batches.
pub const MAX_REMEMBERED_NAMES: usize = 10_000;

impl CwBatcher {
    pub fn new(config: CwBatchConfig) -> CwBatcher {
        CwBatcher {
            config,
            names: OriginCache::default(),
            dest_ids: FxHashMap::default(),
            in_batch: Vec::new(),
            requests: Vec::new(),
            first_seq: 0,
            last_seq: 0,
            entries: 0,
            events: 0,
            counted: 0,
            skipped_empty: 0,
            split_entries: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn dest_of(&mut self, origin: &Origin, flags: Flags) -> Arc<Dest> {
        let config = &self.config;
        let dest_ids = &mut self.dest_ids;
        let in_batch = &mut self.in_batch;
        self.names.get_or_insert_with(origin, flags, || {
            let group = config.group.render(origin, flags);
            let stream = config.stream.render(origin, flags);
            let id = *dest_ids
                .entry((group.clone(), stream.clone()))
                .or_insert_with(|| {
                    in_batch.push(None);
                    in_batch.len() - 1
                });
            Dest { group, stream, id }
        })
    }

    /// Adds an entry (entries must come in seq order).
    pub fn push(&mut self, e: &EntryRef<'_>) -> Admit {
        let note = |b: &mut CwBatcher| {
            if b.entries == 0 {
                b.first_seq = e.seq;
            }
            b.last_seq = e.seq;
            b.entries += 1;
        };
        if e.msg.is_empty() {
            note(self);
            self.skipped_empty += 1;
            return Admit::Added;
        }
        let dest = self.dest_of(e.origin, e.flags);
        let text = message_text(e.msg);
        let ts = (ship_time(e) / 1_000_000).min(i64::MAX as u64) as i64;
        let (pieces, counted) = if text.len() <= MAX_MESSAGE_BYTES {
            (1, text.len() + EVENT_OVERHEAD)
        } else {
            let pieces: Vec<&str> = split_text(&text, MAX_MESSAGE_BYTES).collect();
            let counted = pieces.iter().map(|p| p.len() + EVENT_OVERHEAD).sum();
            (pieces.len(), counted)
        };

        let existing = self.in_batch[dest.id];
        if self.entries > 0 {
            let batch_full = self.events + pieces > self.config.max_events
                || self.counted + counted > self.config.max_bytes;
            let request_full = existing.is_some_and(|i| {
                let r = &self.requests[i];
                r.events.len() + pieces > MAX_EVENTS
                    || r.counted + counted > MAX_REQUEST_BYTES
                    || ts.max(r.max_ts) - ts.min(r.min_ts) > MAX_SPAN_MS
            });
            if batch_full || request_full {
                return Admit::Full;
            }
        }
        note(self);
        if pieces > 1 {
            self.split_entries += 1;
        }
        self.events += pieces;
        self.counted += counted;
        // A request takes pieces until a rule would break, then the rest
        // goes to a new request for the same stream (only a message of
        // more than 1 MiB, alone in its batch, gets there).
        let mut i = match existing {
            Some(i) => i,
            None => self.new_request(&dest, ts),
        };
        for piece in split_text(&text, MAX_MESSAGE_BYTES) {
            let size = piece.len() + EVENT_OVERHEAD;
            let r = &self.requests[i];
            if r.events.len() + 1 > MAX_EVENTS || r.counted + size > MAX_REQUEST_BYTES {
                i = self.new_request(&dest, ts);
            }
            let r = &mut self.requests[i];
            r.events.push(InputLogEvent {
                timestamp: ts,
                message: piece.to_string(),
            });
            r.counted += size;
            r.min_ts = r.min_ts.min(ts);
            r.max_ts = r.max_ts.max(ts);
        }
        Admit::Added
    }

    fn new_request(&mut self, dest: &Arc<Dest>, ts: i64) -> usize {
        self.requests.push(RequestBuf {
            dest: dest.clone(),
            events: Vec::new(),
            counted: 0,
            min_ts: ts,
            max_ts: ts,
        });
        let i = self.requests.len() - 1;
        self.in_batch[dest.id] = Some(i);
        i
    }

    /// The batch (`None` when empty), and a fresh start.
    pub fn finish(&mut self) -> Option<CwBatch> {
        if self.entries == 0 {
            return None;
        }
        let requests: Vec<PutRequest> = std::mem::take(&mut self.requests)
            .into_iter()
            .map(|mut r| {
                self.in_batch[r.dest.id] = None;
                r.events.sort_by_key(|ev| ev.timestamp);
                PutRequest {
                    body: put_log_events_body(&r.dest.group, &r.dest.stream, &r.events).into(),
                    group: r.dest.group.clone(),
                    stream: r.dest.stream.clone(),
                    events: r.events,
                    counted_bytes: r.counted,
                }
            })
            .collect();
        if self.in_batch.len() >= MAX_REMEMBERED_NAMES {
            self.names.clear();
            self.dest_ids.clear();
            self.in_batch.clear();
        }
        let batch = CwBatch {
            requests,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            entries: self.entries,
            events: self.events as u64,
            skipped_empty: self.skipped_empty,
            split_entries: self.split_entries,
        };
        self.entries = 0;
        self.events = 0;
        self.counted = 0;
        self.skipped_empty = 0;
        self.split_entries = 0;
        Some(batch)
    }
}

/// Checks a request against the service's rules; `Err` names the first
/// rule broken. The batcher never builds such a request; this is for tests
/// and for a last check before sending.
pub fn check_request(r: &PutRequest) -> Result<(), String> {
    if r.events.is_empty() {
        return Err("no events".into());
    }
    if r.events.len() > MAX_EVENTS {
        return Err(format!("{} events, more than {MAX_EVENTS}", r.events.len()));
    }
    let counted: usize = r
        .events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD)
        .sum();
    if counted > MAX_REQUEST_BYTES {
        return Err(format!(
            "{counted} counted bytes, more than {MAX_REQUEST_BYTES}"
        ));
    }
    if let Some(e) = r
        .events
        .iter()
        .find(|e| e.message.is_empty() || e.message.len() > MAX_MESSAGE_BYTES)
    {
        return Err(format!("an event of {} bytes", e.message.len()));
    }
    if let Some(w) = r
        .events
        .windows(2)
        .find(|w| w[1].timestamp < w[0].timestamp)
    {
        return Err(format!(
            "events out of order: {} after {}",
            w[1].timestamp, w[0].timestamp
        ));
    }
    let span = r.events.last().map(|e| e.timestamp).unwrap_or(0) - r.events[0].timestamp;
    if span > MAX_SPAN_MS {
        return Err(format!("events span {span} ms, more than 24 h"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::cloudwatch::template::NameKind;

    fn config(group: &str, stream: &str) -> CwBatchConfig {
        CwBatchConfig::new(
            NameTemplate::parse(group, NameKind::LogGroup).unwrap(),
            NameTemplate::parse(stream, NameKind::LogStream).unwrap(),
        )
    }

    fn entry<'a>(seq: u64, ms: u64, origin: &'a Origin, msg: &'a [u8]) -> EntryRef<'a> {
        EntryRef {
            seq,
            time: ms * 1_000_000,
            source_time: Default::default(),
            origin,
            flags: Flags::default(),
            msg,
        }
    }

    #[test]
    fn one_request_per_stream_from_templates() {
        let a = Origin::new("a");
        let b = Origin::new("b");
        let mut batcher = CwBatcher::new(config("grp", "{{.Source}}"));
        for (seq, origin) in [(1, &a), (2, &b), (3, &a)] {
            assert_eq!(
                batcher.push(&entry(seq, 1000 + seq, origin, b"m")),
                Admit::Added
            );
        }
        let batch = batcher.finish().unwrap();
        assert_eq!(
            (batch.first_seq, batch.last_seq, batch.entries, batch.events),
            (1, 3, 3, 3)
        );
        let streams: Vec<(&str, usize)> = batch
            .requests
            .iter()
            .map(|r| (r.stream.as_str(), r.events.len()))
            .collect();
        assert_eq!(streams, [("a", 2), ("b", 1)]);
        for r in &batch.requests {
            check_request(r).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["logGroupName"], "grp");
            assert_eq!(v["logEvents"].as_array().unwrap().len(), r.events.len());
        }
    }

    #[test]
    fn empty_messages_are_skipped_and_counted() {
        let o = Origin::new("s");
        let mut batcher = CwBatcher::new(config("g", "s"));
        batcher.push(&entry(1, 1, &o, b""));
        batcher.push(&entry(2, 1, &o, b"x"));
        let batch = batcher.finish().unwrap();
        assert_eq!(
            (batch.entries, batch.events, batch.skipped_empty),
            (2, 1, 1)
        );
        // A batch of only empty messages has nothing to send but still
        // acknowledges its seqs.
        batcher.push(&entry(3, 1, &o, b""));
        let batch = batcher.finish().unwrap();
        assert!(batch.requests.is_empty());
        assert_eq!(batch.last_seq, 3);
    }

    #[test]
    fn count_and_size_rules() {
        let o = Origin::new("s");
        let mut batcher = CwBatcher::new(config("g", "s"));
        let mut seq = 0;
        while batcher.push(&entry(seq, 5, &o, b"x")) == Admit::Added {
            seq += 1;
        }
        assert_eq!(seq, MAX_EVENTS as u64);
        let batch = batcher.finish().unwrap();
        check_request(&batch.requests[0]).unwrap();

        // 1,048,576 / (1000 + 26) = 1022 events of 1000 bytes (1,048,572).
        let msg = vec![b'a'; 1000];
        let mut seq = 0;
        while batcher.push(&entry(seq, 5, &o, &msg)) == Admit::Added {
            seq += 1;
        }
        assert_eq!(seq, 1022);
        let batch = batcher.finish().unwrap();
        assert_eq!(batch.requests[0].counted_bytes, 1022 * 1026);
        check_request(&batch.requests[0]).unwrap();
    }

    #[test]
    fn span_and_order_rules() {
        let o = Origin::new("s");
        let day = 24 * 3600 * 1000;
        let mut batcher = CwBatcher::new(config("g", "s"));
        assert_eq!(batcher.push(&entry(1, 1000, &o, b"a")), Admit::Added);
        assert_eq!(batcher.push(&entry(2, 1000 + day, &o, b"b")), Admit::Added);
        assert_eq!(batcher.push(&entry(3, 1001 + day, &o, b"c")), Admit::Full);
        batcher.finish();
        // Times that go backwards (producer times, later) are sorted.
        batcher.push(&entry(1, 300, &o, b"late"));
        batcher.push(&entry(2, 100, &o, b"early"));
        let batch = batcher.finish().unwrap();
        let r = &batch.requests[0];
        assert_eq!(r.events[0].message, "early");
        check_request(r).unwrap();
    }

    #[test]
    fn long_and_bad_messages() {
        let o = Origin::new("s");
        let mut batcher = CwBatcher::new(config("g", "s"));
        let text = "é".repeat(200_000); // 400,000 bytes -> 2 events
        batcher.push(&entry(1, 7, &o, text.as_bytes()));
        batcher.push(&entry(2, 7, &o, b"bad \xff"));
        let batch = batcher.finish().unwrap();
        let r = &batch.requests[0];
        check_request(r).unwrap();
        assert_eq!((batch.events, batch.split_entries), (3, 1));
        assert_eq!(
            format!("{}{}", r.events[0].message, r.events[1].message),
            text
        );
        assert_eq!(r.events[2].message, "bad \\xff");

        // More than a request holds: several requests of one stream, alone
        // in its batch, each within the rules.
        let huge = vec![b'z'; 3 * 1024 * 1024];
        batcher.push(&entry(3, 9, &o, &huge));
        assert_eq!(batcher.push(&entry(4, 9, &o, b"next")), Admit::Full);
        let batch = batcher.finish().unwrap();
        assert_eq!(batch.requests.len(), 4);
        let total: usize = batch
            .requests
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| e.message.len())
            .sum();
        assert_eq!(total, huge.len());
        for r in &batch.requests {
            check_request(r).unwrap();
        }
    }

    #[test]
    fn the_checker_catches_broken_rules() {
        let ev = |ts, m: &str| InputLogEvent {
            timestamp: ts,
            message: m.to_string(),
        };
        let req = |events: Vec<InputLogEvent>| PutRequest {
            group: "g".into(),
            stream: "s".into(),
            body: Bytes::new(),
            counted_bytes: 0,
            events,
        };
        assert!(check_request(&req(vec![ev(2, "a"), ev(1, "b")]))
            .unwrap_err()
            .contains("order"));
        assert!(
            check_request(&req(vec![ev(0, "a"), ev(MAX_SPAN_MS + 1, "b")]))
                .unwrap_err()
                .contains("span")
        );
        assert!(check_request(&req(vec![ev(0, "")])).is_err());
        assert!(check_request(&req(vec![])).is_err());
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        assert!(check_request(&req(vec![ev(0, &big); 5]))
            .unwrap_err()
            .contains("counted bytes"));
    }
}
