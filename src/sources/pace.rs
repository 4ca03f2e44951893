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
//! - Ingest is paused (at least one source waiting) for at most
//!   `--follower-pacing` percent (default 10) of any stretch of wall time
//!   plus the same percentage of [`BURST_WINDOW`]: at most 10 % of T + 1 s
//!   in any window T. A token bucket of pause time refills at that share
//!   of wall time and holds the share of one [`BURST_WINDOW`]; what a
//!   pause really lasted (the union of the sources' waits, timer overruns
//!   included) is charged as it runs, so the bucket can go at most one
//!   slice into debt, repaid before the next pause. With the budget spent,
//!   followers fall behind and get gaps, as without pacing.
//! - A source pays one atomic load per read when no follower is registered.
//!
//! What it cannot bound is the CPU followers use: a follower that keeps up
//! renders every line instead of skipping the ones it would have missed,
//! and on a machine with fewer cores than busy writers and followers that
//! work competes with ingest, paced or not.

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
/// The budget holds the configured share of this much wall time: a burst
/// may be paced for up to 100 ms at the default 10 %.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);
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
    epoch: Instant,
    waited_ns: AtomicU64,
}

/// What one follower last reported.
struct Progress {
    /// The seq of the first entry its client does not have yet.
    next: AtomicU64,
    /// When its client last took bytes, in ns since the pacer's epoch.
    at: AtomicU64,
}

/// A token bucket of pause time, and the pause it is paying for. Times
/// are ns since the pacer's epoch.
struct Budget {
    /// Pause time left; below zero after a pause overran it (debt).
    left: f64,
    refilled_at: u64,
    /// The end of the current slice: sources arriving before then join the
    /// pause without starting a new slice.
    slice_end: u64,
    /// Sources waiting now; ingest is paused while it is above zero.
    waiting: usize,
    /// Up to when the running pause has been charged.
    charged_to: u64,
    /// All pause time so far: the union of the sources' waits.
    paused_total: u64,
}

impl Budget {
    /// Refills the bucket up to `now` and charges the running pause.
    fn settle(&mut self, now: u64, share: f64, cap: f64) {
        let earned = now.saturating_sub(self.refilled_at) as f64 * share;
        self.left = (self.left + earned).min(cap);
        self.refilled_at = now;
        if self.waiting > 0 {
            let paused = now.saturating_sub(self.charged_to);
            self.left -= paused as f64;
            self.paused_total += paused;
            self.charged_to = now;
        }
    }
}

impl Pacer {
    /// A pacer for `ring` that may pause ingest for `percent` % of wall
    /// time (0 turns pacing off; values over 50 count as 50).
    pub fn new(ring: Arc<Ring>, percent: u8) -> Pacer {
        Pacer::with_limits(ring, percent, ACTIVE, BURST_WINDOW)
    }

    /// A pacer with other limits than [`ACTIVE`] and [`BURST_WINDOW`].
    pub fn with_limits(
        ring: Arc<Ring>,
        percent: u8,
        active: Duration,
        burst_window: Duration,
    ) -> Pacer {
        let share = f64::from(percent.min(50)) / 100.0;
        let burst = burst_window.as_nanos() as f64 * share;
        Pacer {
            ring,
            share,
            active: active.as_nanos() as u64,
            burst,
            followers: Mutex::new(Vec::new()),
            registered: AtomicUsize::new(0),
            progress: Event::new(),
            budget: Mutex::new(Budget {
                left: burst,
                refilled_at: 0,
                slice_end: 0,
                waiting: 0,
                charged_to: 0,
                paused_total: 0,
            }),
            epoch: Instant::now(),
            waited_ns: AtomicU64::new(0),
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
    /// `--follower-pacing` bounds.
    pub fn paused(&self) -> Duration {
        let mut b = self.lock_budget();
        b.settle(self.now(), self.share, self.burst);
        Duration::from_nanos(b.paused_total)
    }

    /// The configured share of wall time, in percent (0: off).
    pub fn percent(&self) -> u8 {
        (self.share * 100.0).round() as u8
    }

    fn pause_begins(&self, now: u64) {
        let mut b = self.lock_budget();
        b.settle(now, self.share, self.burst);
        if b.waiting == 0 {
            b.charged_to = now;
        }
        b.waiting += 1;
    }

    fn pause_ends(&self, now: u64) {
        let mut b = self.lock_budget();
        b.settle(now, self.share, self.burst);
        b.waiting -= 1;
    }

    fn lock_budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an active follower is more than [`LAGGING`] behind.
    fn lagging(&self) -> bool {
        let now = self.now();
        self.lock_followers().iter().any(|f| {
            now.saturating_sub(f.at.load(Ordering::Relaxed)) <= self.active
                && self.ring.behind(f.next.load(Ordering::Relaxed)) > LAGGING
        })
    }

    /// The end of the slice to wait in (ns since the epoch), starting a new
    /// one if none is running; `None` when the budget is spent (or in debt
    /// from an overrun).
    fn slice(&self) -> Option<u64> {
        let now = self.now();
        let mut b = self.lock_budget();
        b.settle(now, self.share, self.burst);
        if now < b.slice_end {
            return Some(b.slice_end);
        }
        if b.left <= 0.0 {
            return None;
        }
        b.slice_end = now + SLICE.as_nanos() as u64;
        Some(b.slice_end)
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
    fn the_budget_bounds_pausing() {
        let r = ring(16);
        let p = Pacer::new(r, 10);
        // Pause (as a waiting source does) in slices until refused: what
        // was paused is the bucket (10 % of BURST_WINDOW) plus the refill
        // over the time taken, plus at most the one slice that overran it.
        let t0 = p.now();
        let mut slices = 0;
        let mut longest = 0;
        while p.slice().is_some() {
            slices += 1;
            let begun = p.now();
            p.pause_begins(begun);
            std::thread::sleep(SLICE);
            let ended = p.now();
            p.pause_ends(ended);
            longest = longest.max(ended - begun);
        }
        let wall = Duration::from_nanos(p.now() - t0);
        let paused = p.paused();
        let bound = BURST_WINDOW / 10 + wall / 10;
        assert!(slices > 0);
        // A sleep may overrun its slice on a busy machine: the last one is
        // the debt.
        let overrun = Duration::from_nanos(longest);
        assert!(
            paused <= bound + overrun,
            "paused {paused:?} over {wall:?}: more than {bound:?} plus one pause ({overrun:?})"
        );
        // Refused now, and until the debt is repaid.
        assert!(p.slice().is_none());
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
