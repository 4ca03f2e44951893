//! Sinks send entries out of the ring: [`export`] writes per-source files
//! with rotation (LinuxKit's logwrite service).
//!
//! A sink outside the daemon reads the query socket's NDJSON answer
//! (`format=ndjson`, see [`crate::format`]); [`parse_record`] turns one of
//! its lines back into an owned [`Entry`] or a gap, exactly: the message
//! bytes come from `msg_b64` when the daemon sent one, so a message that is
//! not UTF-8 round-trips unchanged. `ringtail read` uses it too.

pub mod backoff;
pub mod cloudwatch;
pub mod cursor;
pub mod export;
pub mod http;
pub mod loki;
pub mod ship;
pub mod syslog;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use crate::entry::{Entry, Flags, Origin, Stream, LEVEL_NAMES};

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
    /// The daemon refused the request (`{"error":"..."}`), with its reason.
    #[error("the daemon refused the request: {0}")]
    Refused(String),
    /// Not a line of the NDJSON answer.
    #[error("{0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Wire {
    error: Option<String>,
    gap: Option<WireGap>,
    ring: Option<WireRing>,
    seq: Option<u64>,
    time: Option<String>,
    time_ns: Option<u64>,
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
    if let Some(reason) = wire.error {
        return Err(RecordError::Refused(reason));
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
    let level = wire
        .level
        .as_deref()
        .and_then(|l| LEVEL_NAMES.iter().position(|n| *n == l))
        .map(|l| l as u8);
    let flags = Flags::default()
        .with_stream(wire.stream.as_deref().and_then(Stream::parse))
        .with_level(level)
        .with_partial(wire.partial)
        .with_truncated(wire.truncated);
    Ok(Record::Entry(Entry {
        seq: wire.seq.unwrap_or(0),
        time,
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
            origin: Arc::new(origin),
            flags: Flags::default()
                .with_stream(Some(Stream::Stderr))
                .with_level(Some(3))
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
        assert_eq!(
            parse_record(br#"{"error":"no"}"#),
            Err(RecordError::Refused("no".into()))
        );
    }
}
