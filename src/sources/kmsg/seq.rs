//! Which kernel records are new, which were missed, and when a backlog
//! record was written.
//!
//! Every `/dev/kmsg` record has a 64-bit sequence number, one more than
//! the previous record's. A [`SeqTracker`] keeps the next number it
//! expects, as journald keeps it in `/run/systemd/journal/kernel-seqnum`:
//! - a record below it was already stored (by this run, or by a previous
//!   run whose `next_expected` was saved and passed back at start): skip;
//! - a record above it means `seq - expected` records were overwritten
//!   before they were read ("Missed N kernel messages", one entry);
//! - `EPIPE` from `read()` says the same thing before the jump is seen;
//!   it is counted ([`SeqTracker::overruns`]), and the next record's jump
//!   gives the number.
//!
//! Saved numbers are only valid within one boot: the kernel starts again
//! at 0. Keep the boot id (`/proc/sys/kernel/random/boot_id`) next to a
//! saved `next_expected` and start fresh when it differs (journald's file
//! is in `/run`, a tmpfs cleared at boot, for the same reason).

/// What one record's sequence number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// A record not stored yet; `missed` records before it were lost.
    New { missed: u64 },
    /// Already stored (a previous run read it): skip it.
    AlreadySeen,
}

/// The next sequence number expected from `/dev/kmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqTracker {
    /// `None` until the first record when nothing was saved; wider than a
    /// seq so that the record after `u64::MAX` still counts as seen.
    next: Option<u128>,
    overruns: u64,
}

impl SeqTracker {
    /// A tracker that counts records lost before the first one it sees
    /// when `next_expected` is given (0 on a first start after boot makes
    /// the first record's seq the number lost before ringtail started, as
    /// journald reports it), and counts nothing before the first record
    /// when it is `None`.
    pub fn new(next_expected: Option<u64>) -> SeqTracker {
        SeqTracker {
            next: next_expected.map(u128::from),
            overruns: 0,
        }
    }

    /// Checks one record's seq and, if it is new, moves past it.
    pub fn check(&mut self, seq: u64) -> SeqCheck {
        let seq = u128::from(seq);
        let missed = match self.next {
            Some(next) if seq < next => return SeqCheck::AlreadySeen,
            Some(next) => (seq - next) as u64,
            None => 0,
        };
        self.next = Some(seq + 1);
        SeqCheck::New { missed }
    }

    /// Notes an `EPIPE` from `read()`: the reader was overrun; the next
    /// record's jump says by how much.
    pub fn overrun(&mut self) {
        self.overruns += 1;
    }

    /// How many times reading was overrun.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// The number to save so that a restart stores nothing twice
    /// (saturating at `u64::MAX`).
    pub fn next_expected(&self) -> Option<u64> {
        self.next.map(|n| u64::try_from(n).unwrap_or(u64::MAX))
    }
}

/// The wall-clock time of a record, from its `ts_usec` and the two clocks
/// read now: `realtime_now - (monotonic_now - ts)`.
///
/// Compute it with clocks read at the moment the record is read (or once
/// per batch of reads), not with a boot time computed once at start: the
/// printk clock, like CLOCK_MONOTONIC, stops during suspend while the
/// wall clock goes on, so a boot time computed once puts every record
/// after a suspend too early by the time suspended (the error of
/// `dmesg -T`). Records written before a suspend and read after it still
/// come out late by the time suspended; only the kernel could tell.
///
/// journald does not compute this at all: an entry's wall-clock time is
/// when journald read it, and `ts_usec` is kept as
/// `_SOURCE_MONOTONIC_TIMESTAMP` (and, since systemd 254, also as
/// `_SOURCE_BOOTTIME_TIMESTAMP`).
pub fn wall_clock_ns(ts_usec: u64, monotonic_now_ns: i64, realtime_now_ns: i64) -> i64 {
    let ts_ns = i64::try_from(ts_usec.saturating_mul(1000)).unwrap_or(i64::MAX);
    let age = monotonic_now_ns.saturating_sub(ts_ns).max(0);
    realtime_now_ns.saturating_sub(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_duplicates() {
        let mut t = SeqTracker::new(Some(0));
        assert_eq!(t.check(0), SeqCheck::New { missed: 0 });
        assert_eq!(t.check(1), SeqCheck::New { missed: 0 });
        // Overrun: EPIPE, then the next record jumps.
        t.overrun();
        assert_eq!(t.check(10), SeqCheck::New { missed: 8 });
        assert_eq!(t.overruns(), 1);
        assert_eq!(t.next_expected(), Some(11));
        // A restart resumes from the saved number.
        let mut t = SeqTracker::new(t.next_expected());
        for seq in 0..=10 {
            assert_eq!(t.check(seq), SeqCheck::AlreadySeen);
        }
        assert_eq!(t.check(11), SeqCheck::New { missed: 0 });
    }

    #[test]
    fn first_record() {
        // Fresh after boot: records already overwritten are reported.
        let mut t = SeqTracker::new(Some(0));
        assert_eq!(t.check(500), SeqCheck::New { missed: 500 });
        // Or not, when the caller does not want them.
        let mut t = SeqTracker::new(None);
        assert_eq!(t.check(500), SeqCheck::New { missed: 0 });
        assert_eq!(t.check(502), SeqCheck::New { missed: 1 });
        // The end of the number space does not overflow.
        let mut t = SeqTracker::new(None);
        assert_eq!(t.check(u64::MAX), SeqCheck::New { missed: 0 });
        assert_eq!(t.check(u64::MAX), SeqCheck::AlreadySeen);
    }

    #[test]
    fn wall_clock_of_a_backlog_record() {
        let s = 1_000_000_000i64;
        // A record 5 s after boot, read 100 s after boot at wall time 10,000 s.
        assert_eq!(wall_clock_ns(5_000_000, 100 * s, 10_000 * s), 9_905 * s);
        // A record stamped after "now" (clocks read before the record):
        // never in the future.
        assert_eq!(wall_clock_ns(200_000_000, 100 * s, 10_000 * s), 10_000 * s);
        // Absurd timestamps saturate.
        assert_eq!(wall_clock_ns(u64::MAX, 100 * s, 10_000 * s), 10_000 * s);
        assert_eq!(wall_clock_ns(0, i64::MAX, i64::MIN), i64::MIN);
    }
}
