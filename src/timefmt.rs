//! Time in and out: the one place where ringtail renders entry times and
//! parses the times and durations people type.
//!
//! **Rendering** ([`write_rfc3339_nanos`], [`write_rfc3339_secs`]) turns ns
//! since the Unix epoch into RFC 3339 UTC text such as
//! `2018-07-08T09:16:53.123456789Z`. It runs once per entry on every dump,
//! so it appends to a caller's buffer without allocating and without
//! `format!`. The fraction always has nine digits: the text is fixed-width,
//! sorts as text, and parses with any RFC 3339 parser (Go's `RFC3339Nano`
//! layout, which memlogd used, accepts it; it would merely have trimmed
//! trailing zeros).
//!
//! **Parsing** ([`parse_time`], [`parse_duration`]) follows Loki's rules so
//! that the HTTP, Loki and socket front ends agree on what a user means:
//!
//! - a value containing `.` is float Unix seconds (`1531041413.25`);
//! - an integer of at most 10 digits is Unix seconds; a longer one is Unix
//!   nanoseconds, except that with [`TimeRules::millis`] a 13-digit integer
//!   is milliseconds (for ringtail's own APIs, where a parameter says so);
//! - a duration such as `10m`, `2h`, `1d`, `500ms`, `30s`, `1w`, `1h30m` is
//!   "that long before now" (with [`TimeRules::relative`]), and `now` is now;
//! - anything else must be RFC 3339, with or without a fraction, with `Z`
//!   or a numeric offset.
//!
//! Times before 1970 are refused: every ringtail time is unsigned ns.

use std::fmt;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// "00" to "99", for writing two digits at once.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
fn pair(out: &mut [u8], at: usize, v: u32) {
    let i = (v as usize) * 2;
    out[at] = DIGIT_PAIRS[i];
    out[at + 1] = DIGIT_PAIRS[i + 1];
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to days >= 0, which is all a u64 of ns
/// can reach; unsigned arithmetic lets every division become a multiply).
#[inline]
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

thread_local! {
    /// The last whole second rendered on this thread and its text: entries
    /// of a dump mostly share their second with the one before.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; 19])> = const {
        std::cell::Cell::new((u64::MAX, [0; 19]))
    };
}

/// Fills `buf[..19]` with `YYYY-MM-DDTHH:MM:SS` for whole seconds since the
/// epoch (u64 ns end in the year 2554, so four year digits always do).
#[inline]
fn date_time(buf: &mut [u8; 30], secs: u64) {
    let (last, text) = LAST_SECOND.get();
    if last == secs {
        buf[..19].copy_from_slice(&text);
        return;
    }
    date_time_uncached(buf, secs);
    let mut text = [0u8; 19];
    text.copy_from_slice(&buf[..19]);
    LAST_SECOND.set((secs, text));
}

fn date_time_uncached(buf: &mut [u8; 30], secs: u64) {
    let days = secs / 86_400;
    let sod = (secs % 86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let y = y.min(9999) as u32;
    pair(buf, 0, y / 100);
    pair(buf, 2, y % 100);
    buf[4] = b'-';
    pair(buf, 5, m);
    buf[7] = b'-';
    pair(buf, 8, d);
    buf[10] = b'T';
    pair(buf, 11, sod / 3600);
    buf[13] = b':';
    pair(buf, 14, (sod / 60) % 60);
    buf[16] = b':';
    pair(buf, 17, sod % 60);
}

/// Appends `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (30 bytes) for `ns` since the
/// Unix epoch.
#[inline]
pub fn write_rfc3339_nanos(out: &mut Vec<u8>, ns: u64) {
    let mut buf = [0u8; 30];
    date_time(&mut buf, ns / NANOS_PER_SEC);
    let frac = (ns % NANOS_PER_SEC) as u32;
    buf[19] = b'.';
    buf[20] = b'0' + (frac / 100_000_000) as u8;
    let rest = frac % 100_000_000;
    pair(&mut buf, 21, rest / 1_000_000);
    pair(&mut buf, 23, (rest / 10_000) % 100);
    pair(&mut buf, 25, (rest / 100) % 100);
    pair(&mut buf, 27, rest % 100);
    buf[29] = b'Z';
    out.extend_from_slice(&buf);
}

/// Appends `YYYY-MM-DDTHH:MM:SSZ` (20 bytes): whole seconds, the fraction
/// dropped (not rounded), as LinuxKit's logwrite files have it.
#[inline]
pub fn write_rfc3339_secs(out: &mut Vec<u8>, ns: u64) {
    let mut buf = [0u8; 30];
    date_time(&mut buf, ns / NANOS_PER_SEC);
    buf[19] = b'Z';
    out.extend_from_slice(&buf[..20]);
}

/// The RFC 3339 text of `ns` with nine fraction digits, as a `String` (for
/// messages and tests; hot paths use [`write_rfc3339_nanos`]).
pub fn rfc3339_nanos(ns: u64) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339_nanos(&mut out, ns);
    String::from_utf8(out).expect("the formatter writes ASCII")
}

/// Now, in ns since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Which of the optional input forms a parameter accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRules {
    /// A 13-digit integer is Unix milliseconds (instead of nanoseconds).
    pub millis: bool,
    /// A duration (`10m`) means that long before now, and `now` is now.
    pub relative: bool,
}

impl TimeRules {
    /// Loki's rules: no milliseconds, no relative times.
    pub const LOKI: TimeRules = TimeRules {
        millis: false,
        relative: false,
    };
    /// ringtail's own parameters (`--since 10m`, `since=1531041413000`).
    pub const RINGTAIL: TimeRules = TimeRules {
        millis: true,
        relative: true,
    };
}

/// Why a time or duration did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// Nothing was given.
    Empty,
    /// Not any of the accepted forms.
    Unrecognized { input: String, rules: TimeRules },
    /// Well-formed but before 1970 or too far in the future to hold in
    /// 64-bit nanoseconds (after the year 2554).
    OutOfRange { input: String },
    /// A duration with a bad number or unit.
    BadDuration { input: String },
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Empty => f.write_str(
                "empty time: expected RFC 3339 (2018-07-08T09:16:53Z), Unix seconds, or a duration like 10m",
            ),
            TimeError::Unrecognized { input, rules } => {
                write!(
                    f,
                    "cannot read {input:?} as a time: expected RFC 3339 (2018-07-08T09:16:53.5Z), \
                     Unix seconds (1531041413 or 1531041413.5), Unix nanoseconds (19 digits)"
                )?;
                if rules.millis {
                    f.write_str(", Unix milliseconds (13 digits)")?;
                }
                if rules.relative {
                    f.write_str(", or a time ago such as 30s, 10m, 2h, 1d, 1w or 500ms")?;
                }
                Ok(())
            }
            TimeError::OutOfRange { input } => write!(
                f,
                "time {input:?} is out of range: it must be between 1970 and 2554"
            ),
            TimeError::BadDuration { input } => write!(
                f,
                "cannot read {input:?} as a duration: expected a number with a unit \
                 (ms, s, m, h, d, w, y), such as 500ms, 30s, 10m, 1h30m, or float seconds such as 1.5"
            ),
        }
    }
}

impl std::error::Error for TimeError {}

/// Parses a point in time (rules in the module docs) into ns since the
/// epoch; relative forms count back from `now_ns`.
pub fn parse_time(input: &str, now_ns: u64, rules: TimeRules) -> Result<u64, TimeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(TimeError::Empty);
    }
    let out_of_range = || TimeError::OutOfRange {
        input: input.to_string(),
    };
    let unrecognized = || TimeError::Unrecognized {
        input: input.to_string(),
        rules,
    };
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let v: u64 = s.parse().map_err(|_| out_of_range())?;
        return match s.len() {
            0..=10 => v.checked_mul(NANOS_PER_SEC).ok_or_else(out_of_range),
            13 if rules.millis => v.checked_mul(1_000_000).ok_or_else(out_of_range),
            _ => Ok(v),
        };
    }
    if s.contains('.') && !s.contains(['T', 't', ':']) {
        return parse_float_seconds(s).ok_or_else(unrecognized);
    }
    if rules.relative {
        if s.eq_ignore_ascii_case("now") {
            return Ok(now_ns);
        }
        if let Ok(ago) = parse_duration(s) {
            return now_ns.checked_sub(ago).ok_or_else(out_of_range);
        }
    }
    if s.len() >= 20 && s.as_bytes()[4] == b'-' {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| unrecognized())?;
        let ns = t.unix_timestamp_nanos();
        return u64::try_from(ns).map_err(|_| out_of_range());
    }
    Err(unrecognized())
}

/// Exact decimal seconds (`1531041413.123456789`) to ns; digits past the
/// ninth are dropped. Also takes exponent forms (`1.5e9`) through `f64`.
fn parse_float_seconds(s: &str) -> Option<u64> {
    if let Some((whole, frac)) = s.split_once('.') {
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !whole.is_empty() && digits(whole) && digits(frac) && whole.len() <= 11 {
            let secs: u64 = whole.parse().ok()?;
            let mut ns = 0u64;
            for i in 0..9 {
                let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
                ns = ns * 10 + d;
            }
            return secs.checked_mul(NANOS_PER_SEC)?.checked_add(ns);
        }
    }
    let v: f64 = s.parse().ok()?;
    if !(v.is_finite() && v >= 0.0 && v < (u64::MAX / NANOS_PER_SEC) as f64) {
        return None;
    }
    Some((v * NANOS_PER_SEC as f64) as u64)
}

/// Parses a duration into ns: one or more `<integer><unit>` parts
/// (`1h30m`) with units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, `w`, `y`
/// (365 days), or a plain float number of seconds (`1.5`, `30`).
pub fn parse_duration(input: &str) -> Result<u64, TimeError> {
    let s = input.trim();
    let bad = || TimeError::BadDuration {
        input: input.to_string(),
    };
    if s.is_empty() {
        return Err(TimeError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_float_seconds(s)
            .or_else(|| s.parse::<u64>().ok()?.checked_mul(NANOS_PER_SEC))
            .ok_or_else(bad);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: u64 = match &s[ustart..i] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            "w" => 7 * 86_400 * NANOS_PER_SEC,
            "y" => 365 * 86_400 * NANOS_PER_SEC,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt_nanos(ns: u64) -> String {
        rfc3339_nanos(ns)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            fmt_nanos(1_531_041_413_123_456_789),
            "2018-07-08T09:16:53.123456789Z"
        );
        // Leap day, end of a leap year, a century that is not a leap year.
        assert_eq!(
            fmt_nanos(951_782_400 * NANOS_PER_SEC + 1),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            fmt_nanos(1_735_689_599 * NANOS_PER_SEC + 999_999_999),
            "2024-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            fmt_nanos(4_107_542_400 * NANOS_PER_SEC),
            "2100-03-01T00:00:00.000000000Z"
        );
        assert_eq!(fmt_nanos(u64::MAX), "2554-07-21T23:34:33.709551615Z");
        let mut v = Vec::new();
        write_rfc3339_secs(&mut v, 1_531_041_413_999_999_999);
        assert_eq!(v, b"2018-07-08T09:16:53Z");
    }

    #[test]
    fn formatting_agrees_with_the_time_crate() {
        // About every day up to 2550 (u64 ns end in 2554): compare with `time`.
        let fmt = time::format_description::well_known::Rfc3339;
        let mut secs: u64 = 0;
        while secs < 580 * 365 * 86_400 {
            let ns = secs * NANOS_PER_SEC + 7;
            let ours = fmt_nanos(ns);
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128).unwrap();
            let theirs = t.format(&fmt).unwrap();
            // `time` trims the fraction; compare the date and time part.
            assert_eq!(&ours[..19], &theirs[..19], "at {secs}");
            assert_eq!(parse_time(&ours, 0, TimeRules::LOKI), Ok(ns));
            secs += 86_400 + 3_607;
        }
    }

    #[test]
    fn parses_integers_by_length() {
        let r = TimeRules::LOKI;
        assert_eq!(
            parse_time("1531041413", 0, r),
            Ok(1_531_041_413 * NANOS_PER_SEC)
        );
        assert_eq!(parse_time("0", 0, r), Ok(0));
        assert_eq!(
            parse_time("1531041413123456789", 0, r),
            Ok(1_531_041_413_123_456_789)
        );
        // 13 digits: ns under Loki's rules, ms under ringtail's.
        assert_eq!(parse_time("1531041413123", 0, r), Ok(1_531_041_413_123));
        assert_eq!(
            parse_time("1531041413123", 0, TimeRules::RINGTAIL),
            Ok(1_531_041_413_123_000_000)
        );
        assert!(matches!(
            parse_time("99999999999999999999999", 0, r),
            Err(TimeError::OutOfRange { .. })
        ));
    }

    #[test]
    fn parses_float_seconds_exactly() {
        let r = TimeRules::LOKI;
        assert_eq!(
            parse_time("1531041413.123456789", 0, r),
            Ok(1_531_041_413_123_456_789)
        );
        assert_eq!(
            parse_time("1531041413.5", 0, r),
            Ok(1_531_041_413_500_000_000)
        );
        assert_eq!(
            parse_time("1.0000000019", 0, r),
            Ok(NANOS_PER_SEC + 1),
            "digits past ns are dropped"
        );
        assert_eq!(parse_time("1.5e9", 0, r), Ok(1_500_000_000 * NANOS_PER_SEC));
        assert!(parse_time("1.2.3", 0, r).is_err());
        assert!(parse_time("-1.5", 0, r).is_err());
    }

    #[test]
    fn parses_rfc3339() {
        let r = TimeRules::LOKI;
        assert_eq!(
            parse_time("2018-07-08T09:16:53.123456789Z", 0, r),
            Ok(1_531_041_413_123_456_789)
        );
        assert_eq!(
            parse_time("2018-07-08T09:16:53Z", 0, r),
            Ok(1_531_041_413 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_time("2018-07-08T11:16:53.5+02:00", 0, r),
            Ok(1_531_041_413_500_000_000)
        );
        assert!(matches!(
            parse_time("1969-12-31T23:59:59Z", 0, r),
            Err(TimeError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_time("2018-07-08 09:16:53", 0, r),
            Err(TimeError::Unrecognized { .. })
        ));
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = 1_000_000 * NANOS_PER_SEC;
        let r = TimeRules::RINGTAIL;
        assert_eq!(parse_time("10m", now, r), Ok(now - 600 * NANOS_PER_SEC));
        assert_eq!(parse_time("500ms", now, r), Ok(now - 500_000_000));
        assert_eq!(parse_time("1w", now, r), Ok(now - 604_800 * NANOS_PER_SEC));
        assert_eq!(parse_time("now", now, r), Ok(now));
        assert!(matches!(
            parse_time("100w", now, r),
            Err(TimeError::OutOfRange { .. })
        ));
        // Without `relative`, a duration is not a time.
        let e = parse_time("10m", now, TimeRules::LOKI).unwrap_err();
        assert!(matches!(e, TimeError::Unrecognized { .. }));
        assert!(!e.to_string().contains("time ago"));
        assert!(parse_time("10m", now, r).is_ok());
        let e = parse_time("yesterday", now, r).unwrap_err();
        assert!(e.to_string().contains("10m"), "{e}");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(30 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1h30m"), Ok(5_400 * NANOS_PER_SEC));
        assert_eq!(parse_duration("2h"), Ok(7_200 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1d"), Ok(86_400 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400 * NANOS_PER_SEC));
        assert_eq!(parse_duration("250us"), Ok(250_000));
        assert_eq!(parse_duration("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_duration("30"), Ok(30 * NANOS_PER_SEC));
        for bad in ["", "m", "10x", "1h30", "-5s", "99999999999y", "1..5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("10x")
            .unwrap_err()
            .to_string()
            .contains("500ms"));
        assert_eq!(
            parse_time("", 0, TimeRules::RINGTAIL),
            Err(TimeError::Empty)
        );
    }
}
