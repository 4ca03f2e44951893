//! `GET /api/v1/sources`: per source name, what the ring holds now:
//! entries, message bytes, first and last seq and time, and the recent
//! rate.
//!
//! **How it is computed.** By scanning a snapshot of the ring, not by
//! counters: the ring keeps no per-source totals, and counting on every
//! append would put work on the writers' path for a page someone looks at
//! now and then. The scan reads every retained entry once (about 30 ms for
//! a full ring of 1M 100-byte lines), runs on the blocking pool so it never
//! holds up the async workers, and its answer is reused for
//! [`FRESH`]: however many clients ask, the ring is scanned at most once
//! per second, one scan at a time. So the cost is bounded by the ring's
//! size and by that rate.
//!
//! Per source (every origin with that source name, whatever its labels):
//! `entries`, `bytes` (message bytes, unpadded), `first_seq`/`last_seq`,
//! `first_time`/`last_time` (RFC 3339, ns), `origins` (distinct label
//! sets), and `rate_per_sec`: entries received in the last
//! [`RATE_WINDOW`] divided by its length. Entries evicted while the scan
//! ran are not counted (`skipped` says how many).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, HttpState};
use crate::entry::{EntryRef, Origin};
use crate::ring::{ReadBatch, ReadStatus, Ring, Select};
use crate::timefmt;

/// How long one scan's answer is served.
pub const FRESH: Duration = Duration::from_secs(1);
/// The window of `rate_per_sec`.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The last answer, and the lock that makes scans one at a time.
#[derive(Default)]
pub(super) struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
}

pub(super) async fn get(State(state): State<Arc<HttpState>>) -> Response {
    let mut last = state.sources.last.lock().await;
    if let Some((at, body)) = &*last {
        if at.elapsed() < FRESH {
            return answer(body.clone());
        }
    }
    let ring = state.ring.clone();
    let body = match tokio::task::spawn_blocking(move || scan(&ring)).await {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the scan of the ring failed: {e}"),
            )
            .into_response()
        }
    };
    *last = Some((Instant::now(), body.clone()));
    answer(body)
}

fn answer(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Per-origin totals.
#[derive(Clone, Copy, Default)]
struct Totals {
    entries: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    first_time: u64,
    last_time: u64,
    recent: u64,
}

impl Totals {
    fn add(&mut self, e: &EntryRef<'_>, recent_from: u64) {
        if self.entries == 0 {
            self.first_seq = e.seq;
            self.first_time = e.time;
        }
        self.entries += 1;
        self.bytes += e.msg.len() as u64;
        self.last_seq = e.seq;
        self.last_time = e.time;
        self.recent += u64::from(e.time >= recent_from);
    }

    fn merge(&mut self, o: &Totals) {
        if o.entries == 0 {
            return;
        }
        if self.entries == 0 || o.first_seq < self.first_seq {
            self.first_seq = o.first_seq;
            self.first_time = o.first_time;
        }
        if o.last_seq > self.last_seq {
            self.last_seq = o.last_seq;
            self.last_time = o.last_time;
        }
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.recent += o.recent;
    }
}

/// A [`Select`] that counts every entry and keeps none, so that the read
/// batches stay empty. Origins are told apart by address: a cursor keeps
/// each origin it met alive, at one address, for its whole life.
struct Tally {
    by_origin: RefCell<HashMap<usize, (String, Totals)>>,
    /// The last origin seen and its totals, to skip the map on runs.
    run: Cell<Option<(usize, Totals)>>,
    recent_from: u64,
}

impl Tally {
    fn flush_run(&self) {
        if let Some((key, t)) = self.run.take() {
            if let Some(slot) = self.by_origin.borrow_mut().get_mut(&key) {
                slot.1 = t;
            }
        }
    }
}

impl Select for Tally {
    fn entry(&self, e: &EntryRef<'_>) -> bool {
        let key = e.origin as *const Origin as usize;
        let mut run = match self.run.get() {
            Some((k, t)) if k == key => t,
            _ => {
                self.flush_run();
                let mut map = self.by_origin.borrow_mut();
                map.entry(key)
                    .or_insert_with(|| (e.origin.source.clone(), Totals::default()))
                    .1
            }
        };
        run.add(e, self.recent_from);
        self.run.set(Some((key, run)));
        false
    }
}

#[derive(Serialize)]
struct SourceAnswer {
    source: String,
    entries: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    first_time: String,
    last_time: String,
    origins: u64,
    rate_per_sec: f64,
}

#[derive(Serialize)]
struct Answer {
    sources: Vec<SourceAnswer>,
    /// The snapshot scanned: seqs `oldest_seq..=newest_seq`.
    oldest_seq: u64,
    newest_seq: u64,
    /// Entries of the snapshot evicted before the scan reached them.
    skipped: u64,
    rate_window_secs: u64,
    scan_ms: f64,
}

/// Scans the ring and renders the answer.
fn scan(ring: &Ring) -> Vec<u8> {
    let started = Instant::now();
    let now = timefmt::now_ns();
    let tally = Tally {
        by_origin: RefCell::new(HashMap::new()),
        run: Cell::new(None),
        recent_from: now.saturating_sub(RATE_WINDOW.as_nanos() as u64),
    };
    let snap = ring.snapshot();
    let mut skipped = 0;
    {
        let mut cursor = snap.cursor(&tally);
        let mut batch = ReadBatch::new();
        while cursor.read(&mut batch, 4096) != ReadStatus::End {
            skipped += batch.missed();
        }
    }
    tally.flush_run();
    let mut per_source: BTreeMap<String, (Totals, u64)> = BTreeMap::new();
    for (source, t) in tally.by_origin.into_inner().into_values() {
        let slot = per_source.entry(source).or_default();
        slot.0.merge(&t);
        slot.1 += 1;
    }
    let secs = RATE_WINDOW.as_secs();
    let time = |ns: u64| {
        if ns == 0 {
            String::new()
        } else {
            timefmt::rfc3339_nanos(ns)
        }
    };
    let answer = Answer {
        sources: per_source
            .into_iter()
            .map(|(source, (t, origins))| SourceAnswer {
                source,
                entries: t.entries,
                bytes: t.bytes,
                first_seq: t.first_seq,
                last_seq: t.last_seq,
                first_time: time(t.first_time),
                last_time: time(t.last_time),
                origins,
                rate_per_sec: t.recent as f64 / secs as f64,
            })
            .collect(),
        oldest_seq: snap.first(),
        newest_seq: snap.end().saturating_sub(1),
        skipped,
        rate_window_secs: secs,
        scan_ms: started.elapsed().as_secs_f64() * 1e3,
    };
    serde_json::to_vec(&answer).expect("the sources answer serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Flags;
    use crate::ring::RingConfig;

    #[test]
    fn counts_per_source_name() {
        let ring = Ring::open(&RingConfig::new(64)).unwrap();
        let a = ring.origin(Origin::new("a")).unwrap();
        let a2 = ring.origin(Origin::new("a").with_label("k", "v")).unwrap();
        let b = ring.origin(Origin::new("b")).unwrap();
        ring.append(&a, Flags::default(), b"1234");
        ring.append(&b, Flags::default(), b"x");
        ring.append(&a2, Flags::default(), b"12");
        ring.append(&a, Flags::default(), b"");
        let v: serde_json::Value = serde_json::from_slice(&scan(&ring)).unwrap();
        let s = v["sources"].as_array().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["source"], "a");
        assert_eq!(s[0]["entries"], 3);
        assert_eq!(s[0]["bytes"], 6);
        assert_eq!(s[0]["first_seq"], 1);
        assert_eq!(s[0]["last_seq"], 4);
        assert_eq!(s[0]["origins"], 2);
        assert_eq!(s[1]["source"], "b");
        assert_eq!(s[1]["entries"], 1);
        assert!(s[0]["rate_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(v["newest_seq"], 4);
    }
}
