//! The follower: the one loop that drives every sink in the daemon.
//!
//! What a sink can rely on:
//! - **A position that survives restarts.** The follower's position is a
//!   seq in a ring with an id ([`Position`]). It starts from the sink's
//!   cursor file ([`super::cursor`]: the forwarder's name, the ring id and
//!   the last delivered seq, written atomically with temp file, fsync,
//!   rename after each delivery; a failed write is reported and delivery
//!   goes on), else from the sink's own state ([`Sink::resume`]), else
//!   from [`Start`]. A saved position of another ring (the daemon restarted
//!   without `--ring-file`) is not trusted: the follower starts from the
//!   ring's oldest entry and says so.
//! - **Batches in seq order**, within the sink's caps (entries, bytes), a
//!   small batch waiting up to the sink's delay for more.
//! - **Retries that never give up while the ring holds the entries.** A
//!   delivery that fails with [`SinkError::Retry`] is retried with full
//!   jitter backoff, 0.5 s doubling to 5 min ([`super::backoff`]), and at
//!   least as long as the destination asked for (`Retry-After`). Each retry reads the batch from the
//!   ring again, so entries evicted meanwhile become a gap with their exact
//!   count instead of being sent from a stale copy.
//! - **Exact loss accounting.** Entries the ring evicted before they were
//!   delivered are counted ([`FollowerStats::evicted`]) and reported in
//!   the self log once per episode (a run of batches with gaps), naming the
//!   sink and the count. The sink sees them too, as [`Read::Gap`] items.
//! - **A clean stop.** When told to stop, the follower delivers what was
//!   published until then (the daemon's stop entry included), within the
//!   daemon's drain time, then returns.
//! - **No effect on others.** It reads the ring like any reader: writers
//!   never wait for it, and memory is one read batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, BackoffPolicy};
use super::cursor::{read_cursor, write_cursor, ForwarderCursor};
use super::{FollowOptions, Sink, SinkError};
use crate::ring::{Read, ReadBatch, ReadStatus};
use crate::sources::Pipeline;

/// Where a follower starts when nothing says where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the next entry appended.
    Next,
    /// With the oldest entry the ring holds.
    Oldest,
}

/// A position in a ring: the next seq to deliver, in the ring with this
/// id. Seqs of different rings are not comparable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub ring_id: u64,
    pub next_seq: u64,
}

/// What a follower counted, shared with whoever reports it (metrics,
/// `/api/v1/stats`).
#[derive(Debug, Default)]
pub struct FollowerStats {
    /// Entries delivered.
    pub delivered: AtomicU64,
    /// Message bytes delivered.
    pub bytes: AtomicU64,
    /// Deliveries that succeeded.
    pub batches: AtomicU64,
    /// Deliveries retried.
    pub retries: AtomicU64,
    /// Entries the ring evicted before they were delivered.
    pub evicted: AtomicU64,
    /// Entries the destination refused for good.
    pub rejected: AtomicU64,
    /// The next seq to deliver.
    pub next_seq: AtomicU64,
    /// The receive time (ns) of the last entry delivered, 0 before the
    /// first: with the ring's newest entry it gives the lag in seconds.
    pub last_delivered_time: AtomicU64,
    /// Refusals for good, by reason (the sink's words, such as
    /// `too_far_behind`, `rate_limited`, `relp_500`).
    pub rejected_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Batches that ran into entries evicted before delivery (episodes are
    /// runs of them; each episode is reported once in the self log).
    pub eviction_episodes: AtomicU64,
}

impl FollowerStats {
    /// How far behind the ring's newest entry the sink is: entries
    /// appended since its position (those its filter would skip included,
    /// until it has read past them), and the age in seconds of the oldest
    /// entry it has not delivered (0 when caught up).
    pub fn lag(&self, ring: &crate::ring::Ring) -> (u64, f64) {
        let next = self.next_seq.load(Ordering::Relaxed);
        let published = ring.published_seq();
        if next >= published {
            return (0, 0.0);
        }
        let all = crate::filter::Filter::default();
        let mut cursor = ring.cursor(next.max(ring.oldest_seq()), &all);
        let mut batch = ReadBatch::new();
        cursor.read(&mut batch, 1);
        let oldest_time = batch.iter().find_map(|i| match i {
            Read::Entry(e) => Some(e.time),
            Read::Gap { .. } => None,
        });
        let age = oldest_time
            .map(|t| crate::timefmt::now_ns().saturating_sub(t) as f64 / 1e9)
            .unwrap_or(0.0);
        (published - next, age)
    }

    /// Refusals by reason, sorted by reason.
    pub fn rejected_reasons(&self) -> Vec<(String, u64)> {
        let map = self
            .rejected_by_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Drives one sink; see the module docs.
pub struct Follower {
    pipeline: Pipeline,
    name: String,
    options: FollowOptions,
    position: Position,
    stats: Arc<FollowerStats>,
}

impl Follower {
    /// A follower for `sink`, starting where its cursor file or its own
    /// state says, else at [`FollowOptions::start`]; decided now.
    pub fn new(pipeline: Pipeline, sink: &dyn Sink) -> Result<Follower, String> {
        let name = sink.name();
        let options = sink.options();
        let ring = pipeline.ring();
        let saved = match &options.cursor_file {
            Some(path) => read_cursor(path, &name)
                .map_err(|e| format!("sink {name}: {e}"))?
                .map(|c| Position {
                    ring_id: c.ring_id,
                    next_seq: c.last_acked_seq.saturating_add(1),
                }),
            None => None,
        };
        let saved = saved.or_else(|| sink.resume());
        let next_seq = match saved {
            Some(p) if p.ring_id == ring.id() => p.next_seq,
            Some(p) => {
                pipeline.selflog().warn(format!(
                    "sink {name}: the ring was replaced since it stopped (at seq {} of ring {}); \
                     it starts again from the oldest entry",
                    p.next_seq,
                    crate::serve::memlogq::ring_id_text(p.ring_id)
                ));
                ring.oldest_seq()
            }
            None => match options.start {
                Start::Next => ring.published_seq(),
                Start::Oldest => ring.oldest_seq(),
            },
        };
        let stats = Arc::new(FollowerStats::default());
        stats.next_seq.store(next_seq, Ordering::Relaxed);
        Ok(Follower {
            position: Position {
                ring_id: ring.id(),
                next_seq,
            },
            pipeline,
            name,
            options,
            stats,
        })
    }

    /// What this follower counts.
    pub fn stats(&self) -> Arc<FollowerStats> {
        self.stats.clone()
    }

    /// Delivers until `stop` is cancelled and what was published by then is
    /// delivered; an error when the sink fails for good.
    pub async fn run(
        mut self,
        mut sink: Box<dyn Sink>,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let ring = self.pipeline.ring().clone();
        let filter = self.options.filter.clone();
        sink.resuming(&ring, self.position);
        let mut cursor = ring.cursor(self.position.next_seq, &filter);
        let mut batch = ReadBatch::new();
        // Gaps reported in the current episode: a run of batches with gaps.
        let mut episode: Option<u64> = None;
        let mut stop_at: Option<u64> = None;
        let max = self.options.max_entries.max(1);
        let mut backoff = Backoff::new(BackoffPolicy::default());
        let mut rng = fastrand::Rng::new();
        // Whether the last cursor write failed (reported once per streak).
        let mut cursor_failing = false;
        loop {
            if stop_at.is_none() && stop.is_cancelled() {
                stop_at = Some(ring.published_seq());
            }
            if stop_at.is_some_and(|end| cursor.position() >= end) {
                return Ok(());
            }
            let status = cursor.read(&mut batch, max);
            if status == ReadStatus::CaughtUp || batch.is_empty() {
                self.position.next_seq = cursor.position();
                // Entries the filter skipped are not lag.
                self.stats
                    .next_seq
                    .store(self.position.next_seq, Ordering::Relaxed);
                if status == ReadStatus::CaughtUp {
                    if stop_at.is_some() {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = cursor.wait() => {}
                        _ = stop.cancelled(), if stop_at.is_none() => {}
                    }
                }
                continue;
            }
            if !self.options.max_delay.is_zero()
                && batch.len() < max
                && batch.bytes_len() < self.options.max_bytes
                && stop_at.is_none()
            {
                // A small batch: give more entries a moment to arrive,
                // then read from the batch's start again.
                let from = batch_first_seq(&batch).unwrap_or(cursor.position());
                tokio::select! {
                    _ = tokio::time::sleep(self.options.max_delay) => {}
                    _ = stop.cancelled() => {}
                }
                cursor.seek(from);
                cursor.read(&mut batch, max);
            }
            let next = cursor.position();
            let first = batch_first_seq(&batch).unwrap_or(next);
            // Deliver, retrying from the ring while it holds the entries.
            let mut attempt = 0u32;
            loop {
                let items: Vec<Read<'_>> = trim_to_bytes(&batch, self.options.max_bytes);
                let end = items_end(&items).unwrap_or(next);
                let missed: u64 = items
                    .iter()
                    .map(|i| match i {
                        Read::Gap { missed, .. } => *missed,
                        Read::Entry(_) => 0,
                    })
                    .sum();
                let position = Position {
                    ring_id: self.position.ring_id,
                    next_seq: end,
                };
                match sink.deliver(&items, position).await {
                    Ok(delivered) => {
                        let mut last_time = 0;
                        let (n, bytes) = items.iter().fold((0u64, 0u64), |(n, b), i| match i {
                            Read::Entry(e) => {
                                last_time = e.time;
                                (n + 1, b + e.msg.len() as u64)
                            }
                            Read::Gap { .. } => (n, b),
                        });
                        let s = &self.stats;
                        s.delivered.fetch_add(n, Ordering::Relaxed);
                        s.bytes.fetch_add(bytes, Ordering::Relaxed);
                        s.batches.fetch_add(1, Ordering::Relaxed);
                        if last_time > 0 {
                            s.last_delivered_time.store(last_time, Ordering::Relaxed);
                        }
                        let rejected: u64 = delivered.rejected.iter().map(|(_, n)| n).sum();
                        if rejected > 0 {
                            s.rejected.fetch_add(rejected, Ordering::Relaxed);
                            let mut map = s
                                .rejected_by_reason
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            for (reason, n) in &delivered.rejected {
                                *map.entry(reason.clone()).or_default() += n;
                            }
                        }
                        s.next_seq.store(end, Ordering::Relaxed);
                        drop(items);
                        if missed > 0 {
                            s.evicted.fetch_add(missed, Ordering::Relaxed);
                            if episode.is_none() {
                                s.eviction_episodes.fetch_add(1, Ordering::Relaxed);
                            }
                            *episode.get_or_insert(0) += missed;
                        } else if let Some(lost) = episode.take() {
                            self.report_loss(lost);
                        }
                        backoff.reset();
                        self.position.next_seq = end;
                        if let (Some(path), Some(last)) =
                            (&self.options.cursor_file, end.checked_sub(1))
                        {
                            let cursor = ForwarderCursor {
                                forwarder: self.name.clone(),
                                ring_id: self.position.ring_id,
                                last_acked_seq: last,
                            };
                            // A cursor that cannot be written (disk full)
                            // does not stop delivery: the position is
                            // kept in memory, and a restart before the
                            // next good write sends the batches since the
                            // last good one again.
                            match write_cursor(path, &cursor) {
                                Ok(()) => cursor_failing = false,
                                Err(e) if !cursor_failing => {
                                    cursor_failing = true;
                                    self.pipeline.selflog().warn(format!(
                                        "sink {}: {e}; delivery goes on, but a restart now \
                                         would send again what was delivered since the last \
                                         good write",
                                        self.name
                                    ));
                                }
                                Err(_) => {}
                            }
                        }
                        break;
                    }
                    Err(SinkError::Fatal(e)) => {
                        if let Some(lost) = episode.take() {
                            self.report_loss(lost);
                        }
                        return Err(format!("sink {}: {e}", self.name));
                    }
                    Err(SinkError::Retry { reason, after }) => {
                        drop(items);
                        if stop.is_cancelled() {
                            // The daemon stops: the position is not moved,
                            // so the batch is delivered after a restart.
                            return Ok(());
                        }
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        let wait = backoff.next_delay(after, &mut rng);
                        if attempt == 0 {
                            self.pipeline.selflog().warn(format!(
                                "sink {}: delivery failed, retrying while the ring holds the \
                                 entries: {reason}",
                                self.name
                            ));
                        }
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.cancelled() => return Ok(()),
                        }
                        // Read the batch again: what was evicted meanwhile
                        // is now a gap.
                        cursor.seek(first);
                        cursor.read(&mut batch, max);
                    }
                }
            }
            cursor.seek(self.position.next_seq);
            if episode.is_some() && cursor.has_new() {
                continue;
            }
            if let Some(lost) = episode.take() {
                self.report_loss(lost);
            }
        }
    }

    fn report_loss(&self, lost: u64) {
        self.pipeline.selflog().warn(format!(
            "sink {}: the ring evicted {lost} entries before they were delivered (it read slower \
             than entries arrived, or its destination was down for longer than the ring holds)",
            self.name
        ));
    }
}

fn batch_first_seq(batch: &ReadBatch) -> Option<u64> {
    batch.iter().next().map(|i| match i {
        Read::Entry(e) => e.seq,
        Read::Gap { first_seq, .. } => first_seq,
    })
}

/// The seq just after the last item.
fn items_end(items: &[Read<'_>]) -> Option<u64> {
    items.last().map(|i| match i {
        Read::Entry(e) => e.seq + 1,
        Read::Gap { first_seq, missed } => first_seq + missed,
    })
}

/// The leading items of `batch` that fit `max_bytes` of messages (at least
/// one).
fn trim_to_bytes(batch: &ReadBatch, max_bytes: usize) -> Vec<Read<'_>> {
    let mut bytes = 0usize;
    let mut out = Vec::with_capacity(batch.len());
    for item in batch.iter() {
        if let Read::Entry(e) = &item {
            bytes += e.msg.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
        }
        out.push(item);
    }
    out
}
