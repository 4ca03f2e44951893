//! ringtail's own events (start, stop, bad registrations, fd exhaustion,
//! gaps served) as entries with source `ringtail`, in the same ring as
//! everything else, so every reader sees them in order with the lines they
//! explain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::entry::Level;
use crate::entry::{Flags, Origin};
use crate::ring::{OriginHandle, Ring};

/// The source name of ringtail's own entries.
pub const SOURCE: &str = "ringtail";

/// Appends ringtail's own events to the ring. Cheap to clone.
#[derive(Clone)]
pub struct SelfLog {
    ring: Arc<Ring>,
    origin: OriginHandle,
    /// Entries appended, shared by the clones: lets a reader tell its own
    /// lines from ringtail's in the ring's appended total.
    appended: Arc<AtomicU64>,
}

impl SelfLog {
    /// Registers the `ringtail` source.
    pub fn new(ring: Arc<Ring>) -> Result<SelfLog, crate::ring::RingError> {
        let origin = ring.origin(Origin::new(SOURCE))?;
        Ok(SelfLog {
            ring,
            origin,
            appended: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Appends one event; returns its seq.
    pub fn log(&self, level: Level, msg: impl AsRef<str>) -> u64 {
        let flags = Flags::default().with_level(Some(level));
        self.appended.fetch_add(1, Ordering::Relaxed);
        self.ring
            .append(&self.origin, flags, msg.as_ref().as_bytes())
    }

    /// Entries this self log (and its clones) appended.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    pub fn info(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Info, msg)
    }

    pub fn warn(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Warning, msg)
    }

    pub fn error(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Error, msg)
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }
}

/// How often a [`Throttle`] reports at most, by default.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps one kind of self-log event (a refused source, a reader's gaps, an
/// accept error) from flooding the ring: in each interval the first
/// `burst` events are reported at once, later ones are counted, and the
/// next report carries the totals since the previous one. Counted events
/// are not lost when no further event comes: [`Throttle::due`] says when
/// to ask [`Throttle::pending`] for them (a timer, or at shutdown).
///
/// The one throttle every component uses, so that every such self-log
/// entry follows the same rule.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    burst: u32,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// When the current interval started (`None` before the first event).
    window: Option<Instant>,
    /// Reports made in the current interval.
    reported: u32,
    /// Events counted since the last report, and what they carried.
    events: u64,
    amount: u64,
}

/// What a throttled report covers: `events` events since the previous
/// report (this one included), carrying `amount` in all (lines missed,
/// connections refused, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub events: u64,
    pub amount: u64,
}

impl Report {
    /// `" (N times since the last report)"` when it covers more than one
    /// event, for the end of a message.
    pub fn times(&self) -> String {
        if self.events > 1 {
            format!(" ({} times since the last report)", self.events)
        } else {
            String::new()
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(REPORT_INTERVAL, 1)
    }
}

impl Throttle {
    /// At most `burst` (at least 1) reports per `interval`.
    pub fn new(interval: Duration, burst: u32) -> Throttle {
        Throttle {
            interval,
            burst: burst.max(1),
            state: Mutex::new(ThrottleState::default()),
        }
    }

    /// Counts one event carrying `amount`; returns the report to write now,
    /// if one is due.
    pub fn note(&self, amount: u64) -> Option<Report> {
        self.note_many(1, amount)
    }

    /// Counts `events` events carrying `amount` in all.
    pub fn note_many(&self, events: u64, amount: u64) -> Option<Report> {
        if events == 0 {
            return None;
        }
        let mut s = self.lock();
        let now = Instant::now();
        if s.window
            .is_none_or(|w| now.duration_since(w) >= self.interval)
        {
            s.window = Some(now);
            s.reported = 0;
        }
        s.events += events;
        s.amount += amount;
        if s.reported >= self.burst {
            return None;
        }
        s.reported += 1;
        Some(Self::take(&mut s))
    }

    /// When the events counted since the last report may be reported, if
    /// there are any.
    pub fn due(&self) -> Option<Instant> {
        let s = self.lock();
        (s.events > 0).then(|| s.window.map_or_else(Instant::now, |w| w + self.interval))
    }

    /// The events counted since the last report, as a report, if any.
    pub fn pending(&self) -> Option<Report> {
        let mut s = self.lock();
        (s.events > 0).then(|| Self::take(&mut s))
    }

    fn take(s: &mut ThrottleState) -> Report {
        let r = Report {
            events: s.events,
            amount: s.amount,
        };
        s.events = 0;
        s.amount = 0;
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_the_first_event_then_totals_once_per_interval() {
        let t = Throttle::new(Duration::from_secs(3600), 1);
        assert_eq!(
            t.note(5),
            Some(Report {
                events: 1,
                amount: 5
            })
        );
        assert_eq!(t.note(2), None);
        assert_eq!(t.note_many(3, 4), None);
        assert!(t.due().is_some());
        assert_eq!(
            t.pending(),
            Some(Report {
                events: 4,
                amount: 6
            })
        );
        assert_eq!(t.pending(), None);
        assert!(t.due().is_none());
        assert_eq!(
            Report {
                events: 4,
                amount: 6
            }
            .times(),
            " (4 times since the last report)"
        );
        let t = Throttle::new(Duration::ZERO, 1);
        assert_eq!(
            t.note(1),
            Some(Report {
                events: 1,
                amount: 1
            })
        );
        assert_eq!(
            t.note(1),
            Some(Report {
                events: 1,
                amount: 1
            })
        );
        // A burst: three reports at once, then counting.
        let t = Throttle::new(Duration::from_secs(3600), 3);
        for _ in 0..3 {
            assert_eq!(
                t.note(1),
                Some(Report {
                    events: 1,
                    amount: 1
                })
            );
        }
        assert_eq!(t.note(1), None);
        assert_eq!(
            t.pending(),
            Some(Report {
                events: 1,
                amount: 1
            })
        );
    }
}
