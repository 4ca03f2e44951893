//! The follower: the one loop that drives every sink in the daemon.
//!
//! What a sink can rely on:
//! - **A position that survives restarts.** The follower's position is a
//!   seq in a ring with an id ([`Position`]). It starts from the sink's
//!   cursor file (written atomically: temp file, fsync, rename, after each
//!   delivery), else from the sink's own state ([`Sink::resume`]), else
//!   from [`Start`]. A saved position of another ring (the daemon restarted
//!   without `--ring-file`) is not trusted: the follower starts from the
//!   ring's oldest entry and says so.
//! - **Batches in seq order**, within the sink's caps (entries, bytes), a
//!   small batch waiting up to the sink's delay for more.
//! - **Retries that never give up while the ring holds the entries.** A
//!   delivery that fails with [`SinkError::Retry`] is retried with full
//!   jitter backoff, 0.5 s doubling to 5 min ([`backoff`]), or after the
//!   time the destination asked for. Each retry reads the batch from the
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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
}

/// Drives one sink; see the module docs.
pub struct Follower {
    pipeline: Pipeline,
    name: String,
    options: FollowOptions,
    position: Position,
    stats: Arc<FollowerStats>,
}

/// The first retry waits about this long (full jitter: up to it)...
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// ...doubling up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The longest wait before retry `attempt` (0 for the first retry): 0.5 s
/// doubling to 5 min. The follower waits a uniformly random time up to it
/// ("full jitter"), so that many forwarders recovering at once spread
/// out.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// A random duration in `[0, max]` (full jitter). Seeded per call from the
/// standard library's randomly keyed hasher: no cryptographic need here.
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::timefmt::now_ns());
    let frac = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(frac)
}

impl Follower {
    /// A follower for `sink`, starting where its cursor file or its own
    /// state says, else at [`FollowOptions::start`]; decided now.
    pub fn new(pipeline: Pipeline, sink: &dyn Sink) -> Result<Follower, String> {
        let name = sink.name();
        let options = sink.options();
        let ring = pipeline.ring();
        let saved = match &options.cursor_file {
            Some(path) => read_cursor(path)
                .map_err(|e| format!("sink {name}: cursor file {}: {e}", path.display()))?,
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
        let mut cursor = ring.cursor(self.position.next_seq, &filter);
        let mut batch = ReadBatch::new();
        // Gaps reported in the current episode: a run of batches with gaps.
        let mut episode: Option<u64> = None;
        let mut stop_at: Option<u64> = None;
        let max = self.options.max_entries.max(1);
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
                        let (n, bytes) = items.iter().fold((0u64, 0u64), |(n, b), i| match i {
                            Read::Entry(e) => (n + 1, b + e.msg.len() as u64),
                            Read::Gap { .. } => (n, b),
                        });
                        let s = &self.stats;
                        s.delivered.fetch_add(n, Ordering::Relaxed);
                        s.bytes.fetch_add(bytes, Ordering::Relaxed);
                        s.batches.fetch_add(1, Ordering::Relaxed);
                        let rejected: u64 = delivered.rejected.iter().map(|(_, n)| n).sum();
                        s.rejected.fetch_add(rejected, Ordering::Relaxed);
                        s.next_seq.store(end, Ordering::Relaxed);
                        drop(items);
                        if missed > 0 {
                            s.evicted.fetch_add(missed, Ordering::Relaxed);
                            *episode.get_or_insert(0) += missed;
                        } else if let Some(lost) = episode.take() {
                            self.report_loss(lost);
                        }
                        self.position.next_seq = end;
                        if let Some(path) = &self.options.cursor_file {
                            write_cursor(path, self.position).map_err(|e| {
                                format!(
                                    "sink {}: cannot write its cursor file {}: {e}",
                                    self.name,
                                    path.display()
                                )
                            })?;
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
                        let wait = after.unwrap_or_else(|| jitter(backoff(attempt)));
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

/// Reads a cursor file: `ringtail-cursor 1 <ring id hex> <next seq>`.
pub fn read_cursor(path: &Path) -> Result<Option<Position>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    match fields.as_slice() {
        ["ringtail-cursor", "1", id, seq] => {
            let ring_id = crate::serve::memlogq::parse_ring_id(id)
                .ok_or_else(|| format!("bad ring id {id:?}; remove the file to start afresh"))?;
            let next_seq = seq
                .parse()
                .map_err(|_| format!("bad seq {seq:?}; remove the file to start afresh"))?;
            Ok(Some(Position { ring_id, next_seq }))
        }
        _ => Err("not a ringtail cursor file; remove it to start afresh".into()),
    }
}

/// Writes a cursor file atomically: a temporary file in the same directory,
/// fsync, rename over the old one, fsync the directory.
pub fn write_cursor(path: &Path, position: Position) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp: PathBuf = path.to_path_buf();
    tmp.as_mut_os_string().push(".tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(
            f,
            "ringtail-cursor 1 {} {}",
            crate::serve::memlogq::ring_id_text(position.ring_id),
            position.next_seq
        )?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(1)) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn cursor_files_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        assert_eq!(read_cursor(&path), Ok(None));
        let p = Position {
            ring_id: 0xabcdef,
            next_seq: 42,
        };
        write_cursor(&path, p).unwrap();
        assert_eq!(read_cursor(&path), Ok(Some(p)));
        std::fs::write(&path, "hello").unwrap();
        assert!(read_cursor(&path)
            .unwrap_err()
            .contains("not a ringtail cursor"));
    }
}
