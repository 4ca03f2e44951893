//! A journald-style rate limit per sender.
//!
//! Each sender (a pid on `/dev/log`, a peer address on the network: the
//! key is the caller's choice) gets a window of [`RateLimit::interval`]
//! starting at its first message; within it the first
//! [`RateLimit::lines`] messages pass and the rest are suppressed and
//! counted. Promises:
//! - emergencies (severity 0) always pass and are not counted;
//! - every suppressed message is reported exactly once, as a count per
//!   sender, by [`RateLimiter::take_reports`] once the window it fell in
//!   has ended (call it on a timer, e.g. once a second, and store one
//!   "suppressed N messages from SENDER" entry per report), so a sender
//!   that goes quiet is still reported;
//! - at most `max_keys` senders are tracked. When a new sender finds the
//!   table full, senders whose window ended with nothing to report are
//!   forgotten first; if that frees nothing, the eighth with the oldest
//!   windows is evicted (so a flood of new senders costs O(1) amortised
//!   per message). An evicted sender's unreported count is kept in one
//!   total, reported as [`Report::Evicted`], and the sender starts afresh
//!   with a full burst if it comes back.
//!
//! journald differs in two ways: it reports when the sender's next
//! message opens a new window (a sender that stops is never reported),
//! and it scales the burst with free disk space, which has no meaning for
//! a ring.
//!
//! Times are nanoseconds on any clock that does not go backwards (use
//! CLOCK_MONOTONIC; a step of the wall clock must not open or stretch
//! windows).

use std::collections::HashMap;
use std::hash::Hash;

use super::Severity;
use crate::sources::RateLimit;

/// Whether a message passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Suppress,
}

/// A count of suppressed messages whose window has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report<'a, K> {
    /// `count` messages from this sender were suppressed.
    Sender(&'a K, u64),
    /// `count` messages were suppressed from senders evicted from the
    /// table before they could be reported one by one.
    Evicted(u64),
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start_ns: i64,
    passed: u64,
    suppressed: u64,
}

/// Rate-limit state for many senders.
pub struct RateLimiter<K> {
    limit: RateLimit,
    interval_ns: i64,
    max_keys: usize,
    windows: HashMap<K, Window>,
    evicted_suppressed: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `max_keys` is at least 1.
    pub fn new(limit: RateLimit, max_keys: usize) -> RateLimiter<K> {
        RateLimiter {
            limit,
            interval_ns: i64::try_from(limit.interval.as_nanos())
                .unwrap_or(i64::MAX)
                .max(1),
            max_keys: max_keys.max(1),
            windows: HashMap::new(),
            evicted_suppressed: 0,
        }
    }

    /// Decides one message from `sender` at `now_ns`.
    pub fn check(&mut self, sender: &K, severity: Severity, now_ns: i64) -> Verdict {
        if severity == Severity::EMERG {
            return Verdict::Pass;
        }
        let interval_ns = self.interval_ns;
        if !self.windows.contains_key(sender) {
            if self.windows.len() >= self.max_keys {
                self.make_room(now_ns);
            }
            self.windows.insert(
                sender.clone(),
                Window {
                    start_ns: now_ns,
                    passed: 0,
                    suppressed: 0,
                },
            );
        }
        let Some(w) = self.windows.get_mut(sender) else {
            return Verdict::Pass;
        };
        if now_ns.saturating_sub(w.start_ns) >= interval_ns && w.suppressed == 0 {
            // Nothing to report from the old window: open a new one now.
            // (With something to report, the window stays until
            // take_reports hands the count out, and the sender stays
            // limited until then: the report and the next burst come in
            // that order.)
            *w = Window {
                start_ns: now_ns,
                passed: 0,
                suppressed: 0,
            };
        }
        if w.passed < self.limit.lines {
            w.passed += 1;
            Verdict::Pass
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Hands out the count of every window that ended by `now_ns` with
    /// messages suppressed, and forgets senders whose window ended.
    pub fn take_reports(&mut self, now_ns: i64, mut report: impl FnMut(Report<'_, K>)) {
        if self.evicted_suppressed > 0 {
            report(Report::Evicted(self.evicted_suppressed));
            self.evicted_suppressed = 0;
        }
        let interval_ns = self.interval_ns;
        self.windows.retain(|sender, w| {
            if now_ns.saturating_sub(w.start_ns) < interval_ns {
                return true;
            }
            if w.suppressed > 0 {
                report(Report::Sender(sender, w.suppressed));
            }
            false
        });
    }

    /// Senders tracked now.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }

    fn make_room(&mut self, now_ns: i64) {
        let interval_ns = self.interval_ns;
        self.windows
            .retain(|_, w| now_ns.saturating_sub(w.start_ns) < interval_ns || w.suppressed > 0);
        if self.windows.len() < self.max_keys {
            return;
        }
        let evict = (self.max_keys / 8).max(1);
        let mut starts: Vec<i64> = self.windows.values().map(|w| w.start_ns).collect();
        let (_, &mut cutoff, _) = starts.select_nth_unstable(evict - 1);
        let mut left = evict;
        let mut evicted_suppressed = 0;
        self.windows.retain(|_, w| {
            if left > 0 && w.start_ns <= cutoff {
                left -= 1;
                evicted_suppressed += w.suppressed;
                false
            } else {
                true
            }
        });
        self.evicted_suppressed += evicted_suppressed;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: i64 = 1_000_000_000;

    fn limiter(lines: u64, max_keys: usize) -> RateLimiter<u32> {
        RateLimiter::new(
            RateLimit {
                lines,
                interval: Duration::from_secs(30),
            },
            max_keys,
        )
    }

    fn reports(l: &mut RateLimiter<u32>, now: i64) -> Vec<(Option<u32>, u64)> {
        let mut out = Vec::new();
        l.take_reports(now, |r| {
            out.push(match r {
                Report::Sender(k, n) => (Some(*k), n),
                Report::Evicted(n) => (None, n),
            })
        });
        out.sort();
        out
    }

    #[test]
    fn burst_then_suppress_then_report_then_burst() {
        let mut l = limiter(3, 100);
        let info = Severity::INFO;
        let v: Vec<Verdict> = (0..5).map(|i| l.check(&7, info, i)).collect();
        assert_eq!(
            v,
            [
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Suppress,
                Verdict::Suppress
            ]
        );
        // Another sender has its own budget.
        assert_eq!(l.check(&8, info, 5), Verdict::Pass);
        // Nothing is reported before the window ends.
        assert!(reports(&mut l, 29 * S).is_empty());
        assert_eq!(l.check(&7, info, 29 * S), Verdict::Suppress);
        // The window ended: one report of 3, then a new burst.
        assert_eq!(reports(&mut l, 30 * S), vec![(Some(7), 3)]);
        assert_eq!(l.check(&7, info, 30 * S + 1), Verdict::Pass);
        assert!(reports(&mut l, 31 * S).is_empty(), "reported once only");
    }

    #[test]
    fn a_sender_that_stops_is_still_reported() {
        let mut l = limiter(1, 100);
        l.check(&1, Severity::ERR, 0);
        l.check(&1, Severity::ERR, 1);
        assert_eq!(reports(&mut l, 3600 * S), vec![(Some(1), 1)]);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn emergencies_are_never_limited() {
        let mut l = limiter(1, 100);
        for i in 0..100 {
            assert_eq!(l.check(&1, Severity::EMERG, i), Verdict::Pass);
        }
        assert_eq!(l.check(&1, Severity::ALERT, 100), Verdict::Pass);
        assert_eq!(l.check(&1, Severity::ALERT, 101), Verdict::Suppress);
        assert_eq!(reports(&mut l, 60 * S), vec![(Some(1), 1)]);
    }

    #[test]
    fn quiet_windows_reopen_without_a_report() {
        let mut l = limiter(2, 100);
        l.check(&1, Severity::INFO, 0);
        assert_eq!(l.check(&1, Severity::INFO, 40 * S), Verdict::Pass);
        assert_eq!(l.check(&1, Severity::INFO, 40 * S + 1), Verdict::Pass);
        assert_eq!(l.check(&1, Severity::INFO, 40 * S + 2), Verdict::Suppress);
        assert_eq!(reports(&mut l, 70 * S), vec![(Some(1), 1)]);
    }

    #[test]
    fn the_table_is_bounded_and_evicted_counts_are_kept() {
        let mut l = limiter(1, 16);
        // Sender 0 is limited, then 10,000 other senders arrive in the
        // same window.
        l.check(&0, Severity::INFO, 0);
        assert_eq!(l.check(&0, Severity::INFO, 0), Verdict::Suppress);
        for k in 1..10_000u32 {
            l.check(&k, Severity::INFO, i64::from(k));
            assert!(l.tracked() <= 16);
        }
        let r = reports(&mut l, 10 * S);
        assert_eq!(r, vec![(None, 1)], "sender 0 was evicted; its count kept");
        // Ended windows with nothing to report are dropped before anyone
        // is evicted.
        let mut l = limiter(5, 4);
        for k in 0..4 {
            l.check(&k, Severity::INFO, 0);
        }
        l.check(&99, Severity::INFO, 31 * S);
        assert_eq!(l.tracked(), 1);
        assert!(reports(&mut l, 31 * S).is_empty());
    }
}
