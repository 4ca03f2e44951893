//! Syslog priorities: the facility and severity packed in `<PRI>`, and the
//! names ringtail gives them.
//!
//! PRI = facility * 8 + severity. A syslog PRI is 0..=191 (facilities
//! 0..=23); the kernel's `/dev/kmsg` packs the same way but allows
//! facilities up to 255, so a [`Facility`] holds any byte and only the 24
//! standard ones have a name.

use crate::entry::LEVEL_NAMES;

/// Facility names by number, as syslog(3), rsyslog and journald spell them.
/// 13 and 14 are the BSD "log audit" and "log alert" facilities, named
/// `security` and `console` as rsyslog does; 15 is Solaris' second cron.
const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Where a message says it comes from (`kern`, `daemon`, `local3`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Facility(u8);

impl Facility {
    pub const KERN: Facility = Facility(0);
    pub const USER: Facility = Facility(1);

    /// Any number; only 0..=23 have a [`name`](Facility::name).
    pub const fn from_code(code: u8) -> Facility {
        Facility(code)
    }

    pub const fn code(self) -> u8 {
        self.0
    }

    /// The conventional name, or `None` past `local7` (only `/dev/kmsg`
    /// can carry such facilities; show the number instead).
    pub fn name(self) -> Option<&'static str> {
        FACILITY_NAMES.get(self.0 as usize).copied()
    }

    /// The facility with this name (`"local3"`), as used in configuration.
    pub fn from_name(name: &str) -> Option<Facility> {
        FACILITY_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Facility(i as u8))
    }
}

/// How urgent a message is: 0 (emerg) to 7 (debug).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Severity(u8);

impl Severity {
    pub const EMERG: Severity = Severity(0);
    pub const ALERT: Severity = Severity(1);
    pub const CRIT: Severity = Severity(2);
    pub const ERR: Severity = Severity(3);
    pub const WARNING: Severity = Severity(4);
    pub const NOTICE: Severity = Severity(5);
    pub const INFO: Severity = Severity(6);
    pub const DEBUG: Severity = Severity(7);

    /// The severity in the low three bits of `code`.
    pub const fn from_low_bits(code: u32) -> Severity {
        Severity((code & 7) as u8)
    }

    pub const fn code(self) -> u8 {
        self.0
    }

    /// ringtail's level name (`emerg` .. `debug`, with `error` for 3 so
    /// that Grafana's level colouring and `level="error"` work); the same
    /// table as [`crate::entry::Flags::level_name`].
    pub fn level_name(self) -> &'static str {
        LEVEL_NAMES[self.0 as usize]
    }
}

/// A facility and a severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Priority {
    pub facility: Facility,
    pub severity: Severity,
}

impl Priority {
    /// What a message without a PRI gets: user.notice (13), as in rsyslog
    /// and busybox (journald uses user.info).
    pub const DEFAULT: Priority = Priority {
        facility: Facility::USER,
        severity: Severity::NOTICE,
    };

    /// Splits a packed PRI. Syslog PRIs stop at 191; `/dev/kmsg` values up
    /// to 2047 (8 bits of facility) are accepted too.
    pub fn from_code(code: u32) -> Option<Priority> {
        if code > 0x7ff {
            return None;
        }
        Some(Priority {
            facility: Facility((code >> 3) as u8),
            severity: Severity::from_low_bits(code),
        })
    }

    /// The packed PRI (facility * 8 + severity).
    pub fn code(self) -> u32 {
        (self.facility.0 as u32) << 3 | self.severity.0 as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_syslog_tables() {
        let p = Priority::from_code(165).unwrap();
        assert_eq!(p.facility.name(), Some("local4"));
        assert_eq!(p.severity.level_name(), "notice");
        assert_eq!(p.code(), 165);
        assert_eq!(
            Priority::from_code(3).unwrap().severity.level_name(),
            "error"
        );
        assert_eq!(Facility::from_code(10).name(), Some("authpriv"));
        assert_eq!(Facility::from_code(15).name(), Some("solaris-cron"));
        assert_eq!(Facility::from_code(24).name(), None);
        assert_eq!(Facility::from_name("local7"), Some(Facility::from_code(23)));
        assert_eq!(Priority::DEFAULT.code(), 13);
        assert_eq!(Priority::from_code(2048), None);
    }
}
