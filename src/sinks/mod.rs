//! Sinks send entries out of the ring: to stdout ([`echo`], memlogd's
//! `--echo`), to per-source files with rotation ([`export`], LinuxKit's
//! logwrite service), and to the central stores a fleet runs.
//!
//! # Adding a sink
//!
//! A sink is one module here implementing [`Sink`]: *deliver a batch, say
//! whether the destination has it*. Everything else is the [`follower`]'s,
//! the same for every sink: the cursor (a seq, resumed after a restart from
//! a cursor file or the sink's own state, checked against the ring id),
//! reading in batches under the sink's caps, retrying with backoff while
//! the ring still holds the entries, and counting exactly (and reporting
//! once per episode) what the ring evicted before it was delivered.
//!
//! A sink outside the daemon (`ringtail export`) reads the query socket's
//! NDJSON answer (`format=ndjson`, see [`crate::format`]); [`parse_record`]
//! turns one of its lines back into an owned [`Entry`] or a gap, exactly:
//! the message bytes come from `msg_b64` when the daemon sent one, so a
//! message that is not UTF-8 round-trips unchanged. `ringtail read` uses it
//! too.

pub mod backoff;
pub mod cloudwatch;
pub mod cursor;
pub mod echo;
pub mod export;
pub mod follower;
pub mod forward;
pub mod http;
pub mod loki;
pub mod ship;
pub mod syslog;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use follower::{Follower, FollowerState, Position, Start};

use crate::filter::Filter;
use crate::ring::Read;

/// What a sink's delivery resolves to.
pub type Delivering<'a> = Pin<Box<dyn Future<Output = Result<Delivered, SinkError>> + Send + 'a>>;

/// One destination for entries.
pub trait Sink: Send + 'static {
    /// Its name, for messages and metrics (`echo`, `loki:central`).
    fn name(&self) -> String;

    /// What kind of sink it is (`loki`, `syslog`, `cloudwatch`, `echo`), for
    /// people: `/api/v1/stats` and the dashboard. By default the part of
    /// the name before its `:`.
    fn kind(&self) -> String {
        let name = self.name();
        name.split_once(':')
            .map_or(name.as_str(), |(kind, _)| kind)
            .to_string()
    }

    /// Where it sends, for people (a URL without credentials, `stdout`);
    /// empty when there is nothing to say.
    fn target(&self) -> String {
        String::new()
    }

    /// How its follower reads: where it starts, which entries it wants,
    /// how it batches.
    fn options(&self) -> FollowOptions;

    /// Whether it writes to stdout (a daemon going to the background keeps
    /// stdout for it).
    fn writes_stdout(&self) -> bool {
        false
    }

    /// Where the sink's own state says to resume, if it keeps one (export
    /// keeps its next seq with its files); the follower's cursor file, when
    /// it has one, is used otherwise.
    fn resume(&self) -> Option<Position> {
        None
    }

    /// Called once by the follower before the first delivery, with the
    /// ring and the position delivery resumes from: a sink whose encoding
    /// depends on the entries before (Loki's per-stream timestamps) looks
    /// back at them here, so a batch sent again after a restart is
    /// encoded as it was the first time.
    fn resuming(&mut self, _ring: &crate::ring::Ring, _from: Position) {}

    /// Delivers `batch`: entries and gaps in seq order, within the caps of
    /// [`options`](Self::options). Resolves once the destination has them
    /// (or has refused some for good, counted in [`Delivered`]); an error
    /// says whether to retry. `next` is the position just after the batch,
    /// for a sink that keeps its own state.
    fn deliver<'a>(&'a mut self, batch: &'a [Read<'a>], next: Position) -> Delivering<'a>;
}

/// How a follower reads for its sink.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Where it starts when nothing says where it stopped.
    pub start: Start,
    /// Keeps the last delivered position here (written atomically after
    /// each delivery), to resume after a restart.
    pub cursor_file: Option<std::path::PathBuf>,
    /// The entries it wants; the rest are skipped (and not counted as
    /// missed).
    pub filter: Filter,
    /// Most entries and message bytes per delivery.
    pub max_entries: usize,
    pub max_bytes: usize,
    /// How long a small batch waits for more entries before it is
    /// delivered (0: at once).
    pub max_delay: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            start: Start::Next,
            cursor_file: None,
            filter: Filter::default(),
            max_entries: 1024,
            max_bytes: 1 << 20,
            max_delay: Duration::ZERO,
        }
    }
}

/// What a delivery achieved: the whole batch, or (for a destination that
/// acknowledges message by message) the part of it that is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Entries the destination refused for good, counted by reason (the
    /// cursor moves past them).
    pub rejected: Vec<(String, u64)>,
    /// `None`: the whole batch is done. `Some(seq)`: only the items up to
    /// and including `seq` are; the follower moves its cursor (and writes
    /// its cursor file) there at once and delivers the rest of the batch
    /// next. A sink that acknowledges message by message (RELP) answers so
    /// as soon as some of a long batch is done, so that a crash re-sends
    /// only what the destination had not acknowledged. Some part must be
    /// done: a `seq` before the batch's first item counts as no progress
    /// and is retried like [`SinkError::Retry`].
    pub through: Option<u64>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later (the destination is down, busy or slow); after this
    /// long, if it said.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Nothing will work (bad configuration, a closed stdout): the sink
    /// stops.
    #[error("{0}")]
    Fatal(String),
}

/// Runs `sink` under a follower of `pipeline`'s ring until `stop` is
/// cancelled and everything published by then is delivered. The start
/// position is taken now, not when the future first runs, so a sink
/// started before an entry is appended sees it.
///
/// The follower's counters are listed in `registry` (for `/metrics` and
/// `/api/v1/stats`) as soon as it is made.
pub fn run(
    sink: Box<dyn Sink>,
    pipeline: crate::sources::Pipeline,
    stop: tokio_util::sync::CancellationToken,
    registry: &Registry,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let follower = Follower::new(pipeline, sink.as_ref());
    if let Ok(f) = &follower {
        registry.add(Registered {
            name: sink.name(),
            kind: sink.kind(),
            target: sink.target(),
            stats: f.stats(),
        });
    }
    async move { follower?.run(sink, stop).await }
}

/// The running sinks and their counters, shared by the daemon (which adds
/// them) and the HTTP API (which reports them). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<std::sync::Mutex<Vec<Registered>>>);

/// A running sink as the API reports it.
#[derive(Clone, Debug)]
pub struct Registered {
    /// [`Sink::name`]: `KIND:NAME` for a forwarder.
    pub name: String,
    /// [`Sink::kind`].
    pub kind: String,
    /// [`Sink::target`].
    pub target: String,
    /// Its follower's counters and state, updated by the follower.
    pub stats: Arc<follower::FollowerStats>,
}

impl Registry {
    pub fn add(&self, sink: Registered) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(sink);
    }

    /// Every sink's name and counters, in start order.
    pub fn all(&self) -> Vec<Registered> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use crate::entry::{Entry, Flags, Level, Origin, SourceTime, Stream};

/// One line of an NDJSON answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Entry(Entry),
    /// `missed` entries from `first_seq` on were gone before this reader
    /// got them.
    Gap {
        first_seq: u64,
        missed: u64,
    },
    /// The answer's ring (asked for with `ring_info`): seqs resume only
    /// within the same ring id.
    Ring {
        id: u64,
    },
}

#[derive(Deserialize)]
struct WireRing {
    id: String,
}

#[derive(Deserialize)]
struct WireGap {
    first_seq: u64,
    missed: u64,
}

/// Why a line is not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The daemon refused the request (`{"error":"...","code":"..."}`):
    /// its reason, and the code to match.
    #[error("the daemon refused the request: {0}")]
    Refused(crate::serve::memlogq::Refusal),
    /// Not a line of the NDJSON answer.
    #[error("{0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Wire {
    error: Option<String>,
    code: Option<crate::serve::memlogq::ErrorCode>,
    gap: Option<WireGap>,
    ring: Option<WireRing>,
    seq: Option<u64>,
    time: Option<String>,
    time_ns: Option<u64>,
    source_time_ns: Option<u64>,
    #[serde(default)]
    relayed: bool,
    source: Option<String>,
    stream: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    level: Option<String>,
    #[serde(default)]
    partial: bool,
    #[serde(default)]
    truncated: bool,
    msg: Option<String>,
    msg_b64: Option<String>,
}

/// Parses one NDJSON line (without or with its `\n`) into a [`Record`].
/// Also accepts memlogd's own JSON lines (`time`, `source`, `msg`; seq 0).
pub fn parse_record(line: &[u8]) -> Result<Record, RecordError> {
    let bad = RecordError::Malformed;
    let wire: Wire = serde_json::from_slice(line).map_err(|e| {
        bad(format!(
            "cannot read a line from the daemon ({e}): {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        ))
    })?;
    if let Some(message) = wire.error {
        return Err(RecordError::Refused(crate::serve::memlogq::Refusal {
            code: wire.code,
            message,
        }));
    }
    if let Some(r) = wire.ring {
        let id = crate::serve::memlogq::parse_ring_id(&r.id)
            .ok_or_else(|| bad(format!("bad ring id {:?} from the daemon", r.id)))?;
        return Ok(Record::Ring { id });
    }
    if let Some(g) = wire.gap {
        return Ok(Record::Gap {
            first_seq: g.first_seq,
            missed: g.missed,
        });
    }
    let time = match (wire.time_ns, &wire.time) {
        (Some(ns), _) => ns,
        (None, Some(t)) => crate::timefmt::parse_time(t, 0, crate::timefmt::TimeRules::RINGTAIL)
            .map_err(|e| bad(format!("bad time in a line from the daemon: {e}")))?,
        (None, None) => return Err(bad("a line from the daemon has no time".into())),
    };
    let msg = match (&wire.msg_b64, wire.msg) {
        (Some(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("bad msg_b64 in a line from the daemon: {e}")))?,
        (None, Some(m)) => m.into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut origin = Origin::new(wire.source.unwrap_or_default());
    for (k, v) in wire.labels {
        origin.set_label(k, v);
    }
    let level = wire.level.as_deref().and_then(Level::parse);
    let flags = Flags::default()
        .with_stream(wire.stream.as_deref().and_then(Stream::parse))
        .with_level(level)
        .with_partial(wire.partial)
        .with_truncated(wire.truncated);
    let source_time = match (wire.source_time_ns, wire.relayed) {
        (None, _) => SourceTime::None,
        (Some(t), false) => SourceTime::Kept(t),
        (Some(t), true) => SourceTime::Original(t),
    };
    Ok(Record::Entry(Entry {
        seq: wire.seq.unwrap_or(0),
        time,
        source_time,
        origin: Arc::new(origin),
        flags,
        msg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{write_entry, write_gap, Format};

    #[test]
    fn ndjson_round_trips() {
        let origin = Origin::new("web;1.out").with_label("container_name", "web");
        let entry = Entry {
            seq: 42,
            time: 1_531_041_413_123_456_789,
            source_time: SourceTime::Original(1_531_041_413_000_000_000),
            origin: Arc::new(origin),
            flags: Flags::default()
                .with_stream(Some(Stream::Stderr))
                .with_level(Some(Level::Error))
                .with_partial(true),
            msg: b"bad \xff byte \"quoted\"\n".to_vec(),
        };
        let mut line = Vec::new();
        write_entry(&mut line, Format::Ndjson, &entry.as_ref());
        assert_eq!(parse_record(&line), Ok(Record::Entry(entry)));

        let mut gap = Vec::new();
        write_gap(&mut gap, Format::Ndjson, 7, 3, 0);
        assert_eq!(
            parse_record(&gap),
            Ok(Record::Gap {
                first_seq: 7,
                missed: 3
            })
        );
    }

    #[test]
    fn memlogd_json_lines() {
        let r =
            parse_record(br#"{"time":"2018-07-08T09:16:53.123456789Z","source":"a","msg":"hi"}"#)
                .unwrap();
        let Record::Entry(e) = r else {
            panic!("not an entry")
        };
        assert_eq!(e.msg, b"hi");
        assert_eq!(e.time, 1_531_041_413_123_456_789);
        assert!(matches!(
            parse_record(b"not json"),
            Err(RecordError::Malformed(_))
        ));
        use crate::serve::memlogq::{ErrorCode, Refusal};
        assert_eq!(
            parse_record(br#"{"error":"no"}"#),
            Err(RecordError::Refused(Refusal {
                code: None,
                message: "no".into()
            }))
        );
        assert_eq!(
            parse_record(br#"{"error":"gone","code":"other_ring"}"#),
            Err(RecordError::Refused(Refusal {
                code: Some(ErrorCode::OtherRing),
                message: "gone".into()
            }))
        );
    }
}
