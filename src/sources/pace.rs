//! Pacing: during a burst, fd sources wait a little for followers that read
//! as fast as they can but have fallen behind.
//!
//! The ring never waits for readers: a follower that the writers lap gets an
//! exact gap. That is right for a reader that stopped reading, but a burst
//! also outruns a reader that only needs a moment: 200,000 lines written at
//! once into a 5,000-line ring lap a follower whose client parses at 80 % of
//! the ingest rate. An fd source can afford to wait where the ring cannot:
//! while it does not read, the kernel holds the writer's output in the pipe,
//! and the writer blocks only once that is full.
//!
//! What this module promises:
//! - A follower counts only while it is *active*: its client took bytes
//!   within the last [`ACTIVE`]. A client that stops reading stops
//!   counting, so it can never hold writers up for longer than that.
//! - Sources wait only while an active follower is more than [`LAGGING`] of
//!   a ring behind ([`Ring::behind`]); a wait ends as soon as any follower
//!   makes progress, or after one [`SLICE`].
//! - Waiting is paid from a budget that refills at a set share of wall time
//!   (`--follower-pacing`, default 10 %) and holds at most [`BURST`]: however
//!   readers behave, they slow ingest by at most that share on average.
//!   With the budget spent, followers fall behind and get gaps, as without
//!   pacing.
//! - A source pays one atomic load per read when no follower is registered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::ring::Ring;

/// A follower whose client took nothing for this long no longer counts.
pub const ACTIVE: Duration = Duration::from_millis(20);
/// Sources wait while an active follower is this far behind (a share of the
/// nearer capacity limit): half a ring leaves the other half as slack for
/// the chunks already being read.
pub const LAGGING: f64 = 0.5;
/// The longest single wait; pacing is charged to the budget a slice at a
/// time, whoever of the sources starts it.
pub const SLICE: Duration = Duration::from_millis(1);
/// The most waiting the budget holds: enough for a burst of a few hundred
/// milliseconds.
pub const BURST: Duration = Duration::from_millis(250);
/// The default share of time sources may spend waiting (`--follower-pacing`).
pub const DEFAULT_PERCENT: u8 = 10;

/// Shared by the fd sources, which wait, and the followers, which report.
pub struct Pacer {
    ring: Arc<Ring>,
    /// The budget's refill rate, a share of wall time; 0 turns pacing off.
    share: f64,
    /// [`ACTIVE`] and [`BURST`] in ns (tests lengthen them).
    active: u64,
    burst: f64,
    /// Registered followers (at most the query socket's client limit).
    followers: Mutex<Vec<Arc<Progress>>>,
    registered: AtomicUsize,
    /// Notified whenever a follower's client takes bytes.
    progress: Event,
    budget: Mutex<Budget>,
    /// The end of the current slice in ns since `epoch`: sources arriving
    /// before then wait without paying again.
    slice_end: AtomicU64,
    epoch: Instant,
    waited_ns: AtomicU64,
    /// Wall time during which at least one source waited, in ns: the share
    /// the budget bounds (several sources waiting at once pause ingest
    /// once, not once each).
    paused: Mutex<Paused>,
}

/// The union of the sources' waits.
#[derive(Default)]
struct Paused {
    /// Sources waiting now.
    waiting: usize,
    /// When the current pause began (ns since the epoch).
    since: u64,
    /// Closed pauses, in ns.
    total: u64,
}

/// What one follower last reported.
struct Progress {
    /// The seq of the first entry its client does not have yet.
    next: AtomicU64,
    /// When its client last took bytes, in ns since the pacer's epoch.
    at: AtomicU64,
}

/// A token bucket of waiting time, in ns.
struct Budget {
    left: f64,
    refilled_at: u64,
}

impl Pacer {
    /// A pacer for `ring` that may spend `percent` % of wall time waiting
    /// (0 turns pacing off; values over 50 count as 50).
    pub fn new(ring: Arc<Ring>, percent: u8) -> Pacer {
        Pacer::with_limits(ring, percent, ACTIVE, BURST)
    }

    /// A pacer with other limits than [`ACTIVE`] and [`BURST`].
    pub fn with_limits(ring: Arc<Ring>, percent: u8, active: Duration, burst: Duration) -> Pacer {
        let burst = burst.as_nanos() as f64;
        Pacer {
            ring,
            share: f64::from(percent.min(50)) / 100.0,
            active: active.as_nanos() as u64,
            burst,
            followers: Mutex::new(Vec::new()),
            registered: AtomicUsize::new(0),
            progress: Event::new(),
            budget: Mutex::new(Budget {
                left: burst,
                refilled_at: 0,
            }),
            slice_end: AtomicU64::new(0),
            epoch: Instant::now(),
            waited_ns: AtomicU64::new(0),
            paused: Mutex::new(Paused::default()),
        }
    }

    /// Registers a follower whose client will read from `next` on.
    pub fn follower(self: &Arc<Self>, next: u64) -> Follower {
        let me = Arc::new(Progress {
            next: AtomicU64::new(next),
            at: AtomicU64::new(self.now()),
        });
        self.lock_followers().push(me.clone());
        self.registered.fetch_add(1, Ordering::Relaxed);
        Follower {
            pacer: self.clone(),
            me,
        }
    }

    /// Waits, within the budget, while an active follower lags. Called by a
    /// source before each read.
    pub async fn admit(&self) {
        if !self.engaged() {
            return;
        }
        // Boxed: this future is part of every source's, and an idle source
        // must stay small.
        Box::pin(self.wait_for_followers()).await
    }

    async fn wait_for_followers(&self) {
        loop {
            if !self.lagging() {
                return;
            }
            let Some(until) = self.slice() else {
                return;
            };
            let listener = self.progress.listen();
            // Progress between the check and the listen would go unheard.
            if !self.lagging() {
                return;
            }
            let started = self.now();
            self.pause_begins(started);
            let deadline = tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(until));
            tokio::select! {
                _ = listener => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            let ended = self.now();
            self.pause_ends(ended);
            self.waited_ns
                .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
        }
    }

    /// Whether any follower is registered: only then do sources store a
    /// read in [`step`](Self::step)s with a check between them.
    pub fn engaged(&self) -> bool {
        self.registered.load(Ordering::Relaxed) > 0 && self.share > 0.0
    }

    /// The most entries and message bytes a source appends between two
    /// checks: a quarter of the slack a follower has at [`LAGGING`], so
    /// that four sources appending at once cannot lap it even when one read
    /// holds thousands of short lines.
    pub fn step(&self) -> (usize, usize) {
        let g = self.ring.geometry();
        let slack = 1.0 - LAGGING;
        let entries = (g.slots as f64 * slack / 4.0) as usize;
        let bytes = (g.data_words as f64 * 8.0 * slack / 4.0) as usize;
        (entries.max(1), bytes.max(1))
    }

    /// Total time sources spent waiting (summed over sources).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    /// Wall time during which ingest was paused for followers (at least
    /// one source waiting), including a pause still running: the quantity
    /// `--follower-pacing` bounds, at most its share of wall time plus
    /// [`BURST`].
    pub fn paused(&self) -> Duration {
        let p = self.lock_paused();
        let running = if p.waiting > 0 {
            self.now().saturating_sub(p.since)
        } else {
            0
        };
        Duration::from_nanos(p.total + running)
    }

    /// The configured share of wall time, in percent (0: off).
    pub fn percent(&self) -> u8 {
        (self.share * 100.0).round() as u8
    }

    fn pause_begins(&self, now: u64) {
        let mut p = self.lock_paused();
        if p.waiting == 0 {
            p.since = now;
        }
        p.waiting += 1;
    }

    fn pause_ends(&self, now: u64) {
        let mut p = self.lock_paused();
        p.waiting -= 1;
        if p.waiting == 0 {
            p.total += now.saturating_sub(p.since);
        }
    }

    fn lock_paused(&self) -> std::sync::MutexGuard<'_, Paused> {
        self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an active follower is more than [`LAGGING`] behind.
    fn lagging(&self) -> bool {
        let now = self.now();
        self.lock_followers().iter().any(|f| {
            now.saturating_sub(f.at.load(Ordering::Relaxed)) <= self.active
                && self.ring.behind(f.next.load(Ordering::Relaxed)) > LAGGING
        })
    }

    /// The end of the slice to wait in (ns since the epoch), starting and
    /// paying for a new one if none is running; `None` when the budget is
    /// spent.
    fn slice(&self) -> Option<u64> {
        let now = self.now();
        let end = self.slice_end.load(Ordering::Acquire);
        if now < end {
            return Some(end);
        }
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        // Another source may have started one while this one waited.
        let end = self.slice_end.load(Ordering::Acquire);
        if now < end {
            return Some(end);
        }
        let earned = now.saturating_sub(budget.refilled_at) as f64 * self.share;
        budget.left = (budget.left + earned).min(self.burst);
        budget.refilled_at = now;
        let slice = SLICE.as_nanos() as f64;
        if budget.left < slice {
            return None;
        }
        budget.left -= slice;
        let end = now + SLICE.as_nanos() as u64;
        self.slice_end.store(end, Ordering::Release);
        Some(end)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn lock_followers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Progress>>> {
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A registered follower; dropping it unregisters.
pub struct Follower {
    pacer: Arc<Pacer>,
    me: Arc<Progress>,
}

impl Follower {
    /// Reports that the client has everything before `next`: called after
    /// each write the client took.
    pub fn progress(&self, next: u64) {
        self.me.next.store(next, Ordering::Relaxed);
        self.me.at.store(self.pacer.now(), Ordering::Relaxed);
        // Cheap when no source waits: one atomic load.
        self.pacer.progress.notify(usize::MAX);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut followers = self.pacer.lock_followers();
        if let Some(i) = followers.iter().position(|f| Arc::ptr_eq(f, &self.me)) {
            followers.swap_remove(i);
        }
        drop(followers);
        self.pacer.registered.fetch_sub(1, Ordering::Relaxed);
        // A source waiting on this follower need not wait out its slice.
        self.pacer.progress.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Origin};
    use crate::ring::RingConfig;

    fn ring(lines: u64) -> Arc<Ring> {
        Arc::new(Ring::open(&RingConfig::new(lines)).unwrap())
    }

    fn fill(ring: &Ring, n: usize) {
        let o = ring.origin(Origin::new("t")).unwrap();
        for _ in 0..n {
            ring.append(&o, Flags::default(), b"line");
        }
    }

    #[tokio::test]
    async fn no_follower_no_wait() {
        let r = ring(16);
        fill(&r, 15);
        let p = Pacer::new(r, 10);
        p.admit().await;
        assert_eq!(p.waited(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_lagging_follower_is_waited_for_until_it_progresses() {
        let r = ring(16);
        let p = Arc::new(Pacer::new(r.clone(), 10));
        let f = p.follower(1);
        fill(&r, 12);
        assert!(p.lagging(), "12 of 16 entries ahead of it");
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.admit().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the source waits for the follower");
        f.progress(13);
        waiter.await.unwrap();
        assert!(!p.lagging());
    }

    #[test]
    fn an_inactive_follower_does_not_count() {
        let r = ring(16);
        let p = Arc::new(Pacer::new(r.clone(), 10));
        let f = p.follower(1);
        fill(&r, 12);
        assert!(p.lagging());
        f.me.at.store(0, Ordering::Relaxed);
        std::thread::sleep(ACTIVE + Duration::from_millis(5));
        assert!(
            !p.lagging(),
            "its client took nothing for longer than ACTIVE"
        );
        drop(f);
        assert_eq!(p.registered.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_budget_bounds_waiting() {
        let r = ring(16);
        let p = Pacer::new(r, 10);
        // A full bucket pays for BURST / SLICE slices back to back.
        let slices = (BURST.as_nanos() / SLICE.as_nanos()) as usize;
        let mut paid = 0;
        while paid <= slices + 10 {
            // Expire the running slice so the next call pays for a new one.
            p.slice_end.store(0, Ordering::Release);
            if p.slice().is_none() {
                break;
            }
            paid += 1;
        }
        // The bucket also refilled by 10 % of the (short) time this took.
        assert!((slices..slices + 10).contains(&paid), "paid {paid} slices");
    }

    #[tokio::test]
    async fn sources_waiting_together_pause_ingest_once() {
        let r = ring(16);
        let p = Arc::new(Pacer::new(r.clone(), 10));
        let f = p.follower(1);
        fill(&r, 12);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.admit().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        f.progress(13);
        for w in waiters {
            w.await.unwrap();
        }
        // Three sources waited through the same pause: the summed wait is
        // about three times the wall time ingest was paused, never less.
        let (paused, waited) = (p.paused(), p.waited());
        assert!(paused > Duration::ZERO);
        assert!(waited >= paused, "{waited:?} < {paused:?}");
    }

    #[tokio::test]
    async fn pacing_off_never_waits() {
        let r = ring(16);
        let p = Arc::new(Pacer::new(r.clone(), 0));
        let _f = p.follower(1);
        fill(&r, 15);
        assert!(p.lagging());
        p.admit().await;
        assert_eq!(p.waited(), Duration::ZERO);
    }
}
