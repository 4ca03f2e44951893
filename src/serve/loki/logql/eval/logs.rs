//! Log queries: the `limit` entries of `[start, end)` nearest the end
//! (`backward`, Loki's default) or the start (`forward`), each through
//! the pipeline, grouped into streams by their final labels.
//!
//! How the work is bounded: reading starts at the end of the seq range
//! (`backward`) or its start (`forward`) and stops as soon as no entry
//! left could still be among the answer: once `limit` entries are kept,
//! an entry whose receive time (the ring's order) puts every later one
//! out of reach ends the read. With timestamps in seq order that is right
//! after the `limit`-th entry, as before relayed entries existed; with
//! out-of-order timestamps it reads at most [`max_event_lag`](super::scan::max_event_lag) further.
//! Kept candidates are pruned to `limit` whenever they reach twice that,
//! so memory stays at `2 * limit` entries.

use rustc_hash::FxHashMap;

use super::scan::{entry_ts, max_event_lag, ring_time, seq_range, KeyIndex, Labels, Streams};
use super::LogPlan;
use crate::ring::{Read, ReadBatch, ReadStatus, Snapshot};
use crate::serve::loki::logql::ast::LogExpr;
use crate::serve::loki::logql::pipeline::{
    key_labels, key_push, Hints, LineLabels, Pipeline, Scratch,
};
use crate::serve::loki::params::Direction;
use crate::serve::loki::LokiError;

/// A log query's answer: per label set, `(time, line)` in answer order.
pub type LogStreams = Vec<(Labels, Vec<(u64, Vec<u8>)>)>;

struct Candidate {
    ts: u64,
    seq: u64,
    stream: u32,
    line: std::ops::Range<usize>,
}

/// Reads a log query's entries (see the module docs).
pub fn run(
    snap: Snapshot<'_>,
    log: &LogExpr,
    start: u64,
    end: u64,
    limit: usize,
    direction: Direction,
    max_series: usize,
) -> Result<LogStreams, LokiError> {
    let plan = LogPlan::new(log, Hints::all())?;
    let seqs = seq_range(&snap, start, end);
    let lag = max_event_lag(&snap);
    let backward = direction == Direction::Backward;
    // Whether `a` comes before `b` in the answer.
    let before = |a: (u64, u64), b: (u64, u64)| if backward { a > b } else { a < b };

    let mut streams = Streams::default();
    let mut fast_streams = KeyIndex::default();
    let mut bytes_line: Vec<u8> = Vec::new();
    let mut scratch = Scratch::new();
    let mut keys: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
    let mut key = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    // The `limit`-th best candidate once known: nothing worse can enter.
    let mut threshold: Option<(u64, u64)> = None;

    let mut visit = |e: &crate::entry::EntryRef<'_>| -> Result<bool, LokiError> {
        if let Some(t) = threshold {
            // Could any entry from here on still beat the threshold?
            let reach = if backward {
                (ring_time(e), e.seq)
            } else {
                (ring_time(e).saturating_sub(lag), e.seq)
            };
            if !before(reach, t) {
                return Ok(false);
            }
        }
        let ts = entry_ts(e);
        if ts < start || ts >= end {
            return Ok(true);
        }
        if threshold.is_some_and(|t| !before((ts, e.seq), t)) {
            return Ok(true);
        }
        // Without stages an entry's labels are its stream's: one lookup
        // per (origin, flags), cached.
        let fast = plan.pipeline.is_empty();
        let cached = if fast {
            fast_streams.get_cached(e)
        } else {
            None
        };
        let (stream, line) = match cached {
            Some(stream) => (stream, e.msg),
            None => {
                let s = streams.index(e);
                let base = &streams.labels[s];
                let mut l = LineLabels::new(base, &mut scratch);
                if !fast && !plan.pipeline.run(e.msg, ts, &mut l) {
                    return Ok(true);
                }
                key.clear();
                l.for_each_sorted(|k, v| key_push(&mut key, k, v));
                let next = keys.len() as u32;
                let stream = *keys.entry(key.as_slice().into()).or_insert(next);
                if keys.len() > max_series {
                    return Err(super::too_many_series(max_series));
                }
                if fast {
                    fast_streams.get(e, || stream);
                }
                bytes_line.clear();
                bytes_line.extend_from_slice(Pipeline::final_line(e.msg, &l));
                (stream, &bytes_line[..])
            }
        };
        let at = bytes.len();
        bytes.extend_from_slice(line);
        cands.push(Candidate {
            ts,
            seq: e.seq,
            stream,
            line: at..bytes.len(),
        });
        if cands.len() == limit && threshold.is_none() {
            threshold = Some(worst(&cands, &before));
        } else if cands.len() >= 2 * limit {
            prune(&mut cands, &mut bytes, limit, &before);
            threshold = Some(worst(&cands, &before));
        }
        Ok(true)
    };

    let mut batch = ReadBatch::new();
    if backward {
        let mut cursor = snap.rev_before(seqs.end, &plan.filter);
        'read: while cursor.position() > seqs.start {
            let max = (cursor.position() - seqs.start).min(super::scan::READ_BATCH) as usize;
            if cursor.read(&mut batch, max) != ReadStatus::More {
                break;
            }
            for r in batch.iter() {
                if let Read::Entry(e) = r {
                    if e.seq < seqs.start || !visit(&e)? {
                        break 'read;
                    }
                }
            }
        }
    } else {
        let mut cursor = snap.cursor_from(seqs.start, &plan.filter);
        'read: while cursor.position() < seqs.end {
            let max = (seqs.end - cursor.position()).min(super::scan::READ_BATCH) as usize;
            if cursor.read(&mut batch, max) != ReadStatus::More {
                break;
            }
            for r in batch.iter() {
                if let Read::Entry(e) = r {
                    if e.seq >= seqs.end || !visit(&e)? {
                        break 'read;
                    }
                }
            }
        }
    }
    if cands.len() > limit {
        prune(&mut cands, &mut bytes, limit, &before);
    }
    cands.sort_by(|a, b| {
        if before((a.ts, a.seq), (b.ts, b.seq)) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    // Streams in the order their first entry comes.
    let mut labels_of: Vec<Option<Labels>> = vec![None; keys.len()];
    for (k, &i) in &keys {
        labels_of[i as usize] = Some(key_labels(k));
    }
    let mut order: FxHashMap<u32, usize> = FxHashMap::default();
    let mut out: LogStreams = Vec::new();
    for c in &cands {
        let i = *order.entry(c.stream).or_insert_with(|| {
            out.push((
                labels_of[c.stream as usize].take().unwrap_or_default(),
                Vec::new(),
            ));
            out.len() - 1
        });
        out[i].1.push((c.ts, bytes[c.line.clone()].to_vec()));
    }
    Ok(out)
}

/// The last candidate that still makes the answer, when exactly `limit`
/// are kept (the answer's last entry).
fn worst(cands: &[Candidate], before: &impl Fn((u64, u64), (u64, u64)) -> bool) -> (u64, u64) {
    cands
        .iter()
        .map(|c| (c.ts, c.seq))
        .reduce(|a, b| if before(a, b) { b } else { a })
        .expect("called with candidates")
}

/// Keeps the `limit` best candidates and compacts their lines.
fn prune(
    cands: &mut Vec<Candidate>,
    bytes: &mut Vec<u8>,
    limit: usize,
    before: &impl Fn((u64, u64), (u64, u64)) -> bool,
) {
    let order = |a: &Candidate, b: &Candidate| {
        if before((a.ts, a.seq), (b.ts, b.seq)) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    };
    if cands.len() > limit {
        cands.select_nth_unstable_by(limit - 1, order);
        cands.truncate(limit);
    }
    let mut compact = Vec::with_capacity(cands.iter().map(|c| c.line.len()).sum());
    for c in cands.iter_mut() {
        let at = compact.len();
        compact.extend_from_slice(&bytes[c.line.clone()]);
        c.line = at..compact.len();
    }
    *bytes = compact;
}
