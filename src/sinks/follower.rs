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
//! - **Acknowledged parts count at once.** A sink may say that only the
//!   first part of a batch is done ([`Delivered::through`]): the follower
//!   counts that part, moves its position and writes its cursor file
//!   before it hands over the rest, so the cursor follows a destination
//!   that acknowledges message by message (RELP) instead of waiting for
//!   the end of a long batch.
//! - **A state for people**: idle, sending, backing off (with the reason
//!   and when the next attempt is due), failed, stopped
//!   ([`FollowerStats::state`]), shown by `/api/v1/stats` and the
//!   dashboard.
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
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, BackoffPolicy};
use super::cursor::{read_cursor, write_cursor, ForwarderCursor};
use super::{Delivered, FollowOptions, Sink, SinkError};
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

/// What a follower is doing now, as `/api/v1/stats` and the dashboard show
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FollowerState {
    /// Caught up: waiting for entries it wants.
    Idle = 0,
    /// A batch is being filled or delivered.
    Sending = 1,
    /// A delivery failed; waiting to try again (see
    /// [`FollowerStats::last_error`]).
    BackingOff = 2,
    /// The sink failed for good and stopped (see
    /// [`FollowerStats::last_error`]).
    Failed = 3,
    /// The daemon stopped it.
    Stopped = 4,
}

impl FollowerState {
    /// The word the API uses: `idle`, `sending`, `backing_off`, `failed`,
    /// `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowerState::Idle => "idle",
            FollowerState::Sending => "sending",
            FollowerState::BackingOff => "backing_off",
            FollowerState::Failed => "failed",
            FollowerState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> FollowerState {
        match v {
            1 => FollowerState::Sending,
            2 => FollowerState::BackingOff,
            3 => FollowerState::Failed,
            4 => FollowerState::Stopped,
            _ => FollowerState::Idle,
        }
    }
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
    /// A [`FollowerState`], set by the follower as it goes.
    state: AtomicU8,
    /// While backing off: when (ns since the epoch) the next attempt is
    /// due; 0 otherwise.
    retry_at: AtomicU64,
    /// Why the last delivery failed, while the follower backs off or after
    /// it failed for good; cleared by the next delivery that succeeds.
    last_error: Mutex<Option<String>>,
}

impl FollowerStats {
    /// What the follower is doing now.
    pub fn state(&self) -> FollowerState {
        FollowerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Why the last delivery failed, while that matters (backing off,
    /// failed).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// While backing off, how long until the next attempt.
    pub fn retry_in(&self) -> Option<std::time::Duration> {
        if self.state() != FollowerState::BackingOff {
            return None;
        }
        let at = self.retry_at.load(Ordering::Relaxed);
        Some(std::time::Duration::from_nanos(
            at.saturating_sub(crate::timefmt::now_ns()),
        ))
    }

    fn set_state(&self, state: FollowerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Backing off for `wait` after a failure for `reason`.
    fn backing_off(&self, reason: &str, wait: std::time::Duration) {
        let wait_ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.retry_at.store(
            crate::timefmt::now_ns().saturating_add(wait_ns),
            Ordering::Relaxed,
        );
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        self.set_state(FollowerState::BackingOff);
    }

    fn failed(&self, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        self.set_state(FollowerState::Failed);
    }

    fn succeeded(&self) {
        let mut e = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_some() {
            *e = None;
        }
        self.retry_at.store(0, Ordering::Relaxed);
    }
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
        let result = self.deliver_all(sink.as_mut(), &stop).await;
        match &result {
            Ok(()) => self.stats.set_state(FollowerState::Stopped),
            Err(e) => self.stats.failed(e),
        }
        result
    }

    async fn deliver_all(
        &mut self,
        sink: &mut dyn Sink,
        stop: &CancellationToken,
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
                    self.stats.set_state(FollowerState::Idle);
                    tokio::select! {
                        _ = cursor.wait() => {}
                        _ = stop.cancelled(), if stop_at.is_none() => {}
                    }
                }
                continue;
            }
            self.stats.set_state(FollowerState::Sending);
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
            // Deliver, retrying from the ring while it holds the entries. A
            // sink may deliver a batch in parts (`Delivered::through`):
            // each part moves the position and the cursor file at once,
            // and the rest of the same batch goes next.
            let mut attempt = 0u32;
            'attempts: loop {
                let items: Vec<Read<'_>> = trim_to_bytes(&batch, self.options.max_bytes);
                let mut done = 0;
                while done < items.len() {
                    let part = &items[done..];
                    let position = Position {
                        ring_id: self.position.ring_id,
                        next_seq: items_end(part).unwrap_or(self.position.next_seq),
                    };
                    let outcome = match sink.deliver(part, position).await {
                        Ok(delivered) => match prefix_len(part, delivered.through) {
                            0 => Err(SinkError::Retry {
                                reason: "the sink acknowledged none of the batch".into(),
                                after: None,
                            }),
                            k => Ok((delivered, k)),
                        },
                        Err(e) => Err(e),
                    };
                    let (reason, after) = match outcome {
                        Ok((delivered, k)) => {
                            self.delivered(&part[..k], &delivered, &mut episode);
                            self.save_cursor(&mut cursor_failing);
                            backoff.reset();
                            attempt = 0;
                            done += k;
                            continue;
                        }
                        Err(SinkError::Fatal(e)) => {
                            if let Some(lost) = episode.take() {
                                self.report_loss(lost);
                            }
                            return Err(format!("sink {}: {e}", self.name));
                        }
                        Err(SinkError::Retry { reason, after }) => (reason, after),
                    };
                    drop(items);
                    if stop.is_cancelled() {
                        // The daemon stops: the position is not moved past
                        // what was delivered, so the rest is delivered
                        // after a restart.
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
                    self.stats.backing_off(&reason, wait);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => return Ok(()),
                    }
                    self.stats.set_state(FollowerState::Sending);
                    // Read the rest of the batch again: what was evicted
                    // meanwhile is now a gap.
                    cursor.seek(self.position.next_seq);
                    cursor.read(&mut batch, max);
                    continue 'attempts;
                }
                break;
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

    /// Counts `part`, which the sink delivered, and moves the position
    /// past it.
    fn delivered(&mut self, part: &[Read<'_>], delivered: &Delivered, episode: &mut Option<u64>) {
        let s = &self.stats;
        let (mut n, mut bytes, mut missed, mut last_time) = (0u64, 0u64, 0u64, 0u64);
        for item in part {
            match item {
                Read::Entry(e) => {
                    n += 1;
                    bytes += e.msg.len() as u64;
                    last_time = e.time;
                }
                Read::Gap { missed: m, .. } => missed += m,
            }
        }
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
        let end = items_end(part).unwrap_or(self.position.next_seq);
        s.next_seq.store(end, Ordering::Relaxed);
        s.succeeded();
        if missed > 0 {
            s.evicted.fetch_add(missed, Ordering::Relaxed);
            if episode.is_none() {
                s.eviction_episodes.fetch_add(1, Ordering::Relaxed);
            }
            *episode.get_or_insert(0) += missed;
        } else if let Some(lost) = episode.take() {
            self.report_loss(lost);
        }
        self.position.next_seq = end;
    }

    /// Writes the position to the cursor file, if there is one.
    fn save_cursor(&self, failing: &mut bool) {
        let (Some(path), Some(last)) = (
            &self.options.cursor_file,
            self.position.next_seq.checked_sub(1),
        ) else {
            return;
        };
        let cursor = ForwarderCursor {
            forwarder: self.name.clone(),
            ring_id: self.position.ring_id,
            last_acked_seq: last,
        };
        // A cursor that cannot be written (disk full) does not stop
        // delivery: the position is kept in memory, and a restart before
        // the next good write sends the batches since the last good one
        // again.
        match write_cursor(path, &cursor) {
            Ok(()) => *failing = false,
            Err(e) if !*failing => {
                *failing = true;
                self.pipeline.selflog().warn(format!(
                    "sink {}: {e}; delivery goes on, but a restart now would send again what \
                     was delivered since the last good write",
                    self.name
                ));
            }
            Err(_) => {}
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

/// How many leading items of `part` a delivery that is done through
/// `through` covers (all of them for `None`).
fn prefix_len(part: &[Read<'_>], through: Option<u64>) -> usize {
    match through {
        None => part.len(),
        Some(t) => part
            .iter()
            .take_while(|i| items_end(std::slice::from_ref(i)).is_some_and(|end| end <= t + 1))
            .count(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Ring, RingConfig};
    use crate::selflog::SelfLog;
    use crate::sinks::cursor::read_cursor;
    use crate::sinks::Delivering;

    /// Per delivery: the batch's first seq, and the cursor file's seq then.
    type Seen = Vec<(u64, Option<u64>)>;

    /// A sink that acknowledges `step` entries per delivery (the rest of
    /// the batch is for the next one) and records, at each delivery, the
    /// batch's first seq and what the cursor file said then.
    struct InParts {
        step: usize,
        cursor_file: std::path::PathBuf,
        /// Deliveries that acknowledge nothing (before a `seq` of the batch).
        stalls: u32,
        seen: Arc<Mutex<Seen>>,
    }

    impl Sink for InParts {
        fn name(&self) -> String {
            "parts".into()
        }

        fn options(&self) -> FollowOptions {
            FollowOptions {
                start: Start::Oldest,
                cursor_file: Some(self.cursor_file.clone()),
                filter: crate::filter::FilterBuilder::new()
                    .source("app")
                    .build()
                    .unwrap(),
                max_entries: 1000,
                ..FollowOptions::default()
            }
        }

        fn deliver<'a>(&'a mut self, batch: &'a [Read<'a>], _next: Position) -> Delivering<'a> {
            Box::pin(async move {
                let seqs: Vec<u64> = batch
                    .iter()
                    .filter_map(|i| match i {
                        Read::Entry(e) => Some(e.seq),
                        Read::Gap { .. } => None,
                    })
                    .collect();
                let saved = read_cursor(&self.cursor_file, "parts")
                    .unwrap()
                    .map(|c| c.last_acked_seq);
                self.seen.lock().unwrap().push((seqs[0], saved));
                if self.stalls > 0 {
                    self.stalls -= 1;
                    return Ok(Delivered {
                        through: Some(seqs[0] - 1),
                        ..Delivered::default()
                    });
                }
                Ok(Delivered {
                    through: seqs
                        .get(self.step - 1)
                        .copied()
                        .filter(|_| seqs.len() > self.step),
                    ..Delivered::default()
                })
            })
        }
    }

    fn run_in_parts(step: usize, stalls: u32) -> (Seen, Vec<u64>, Arc<FollowerStats>) {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(Ring::open(&RingConfig::new(10_000)).unwrap());
        let selflog = SelfLog::new(ring.clone()).unwrap();
        let pipeline = Pipeline::new(ring.clone(), selflog, Default::default());
        let app = ring.origin(crate::entry::Origin::new("app")).unwrap();
        let other = ring.origin(crate::entry::Origin::new("other")).unwrap();
        let mut app_seqs = Vec::new();
        for i in 0..25u32 {
            let (h, msg) = if i % 5 == 4 {
                (&other, "skip")
            } else {
                (&app, "ship")
            };
            let seq = ring.append(h, crate::entry::Flags::default(), msg.as_bytes());
            if i % 5 != 4 {
                app_seqs.push(seq);
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = InParts {
            step,
            cursor_file: dir.path().join("parts.cursor"),
            stalls,
            seen: seen.clone(),
        };
        let follower = Follower::new(pipeline, &sink).unwrap();
        let stats = follower.stats();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let running = rt.spawn(follower.run(Box::new(sink), stop.clone()));
        rt.block_on(async {
            // A stop ends retries at once, so it comes only once all is
            // delivered.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while stats.delivered.load(Ordering::Relaxed) < 20 {
                assert!(std::time::Instant::now() < deadline, "not delivered");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            stop.cancel();
            running.await.unwrap().unwrap();
        });
        let seen = seen.lock().unwrap().clone();
        (seen, app_seqs, stats)
    }

    #[test]
    fn a_sink_that_delivers_in_parts_moves_the_cursor_part_by_part() {
        let (seen, app, stats) = run_in_parts(3, 0);
        // 20 entries of `app`, 3 at a time: 7 deliveries, each starting
        // right after the part before, with the cursor file already saying
        // so.
        assert_eq!(seen.len(), 7, "{seen:?}");
        for (k, (first, saved)) in seen.iter().enumerate() {
            assert_eq!(*first, app[k * 3], "delivery {k}: {seen:?}");
            let before = k.checked_sub(1).map(|p| app[p * 3 + 2]);
            assert_eq!(*saved, before, "delivery {k}: {seen:?}");
        }
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 20);
        assert_eq!(stats.batches.load(Ordering::Relaxed), 7);
        assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
        assert_eq!(stats.state(), FollowerState::Stopped);
    }

    #[test]
    fn a_part_that_acknowledges_nothing_is_retried() {
        let (seen, app, stats) = run_in_parts(100, 2);
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen
            .iter()
            .all(|(first, saved)| *first == app[0] && saved.is_none()));
        assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 20);
        assert_eq!(stats.last_error(), None, "cleared by the delivery");
    }
}
