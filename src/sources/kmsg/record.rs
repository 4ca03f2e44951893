//! One `/dev/kmsg` record, parsed.
//!
//! The format (Linux `Documentation/ABI/testing/dev-kmsg`):
//!
//! ```text
//! 6,185,256158,-;acpi PNP0A08:00: _OSC: OS supports [...]\n
//!  SUBSYSTEM=acpi\n
//!  DEVICE=+acpi:PNP0A08:00\n
//! ```
//!
//! - A prefix of comma-separated fields up to the first `;`: priority
//!   (facility * 8 + level, the facility up to 8 bits), sequence number,
//!   timestamp in microseconds, flags. Kernel 3.5 had no flags field;
//!   later kernels may append fields (`caller=T42` with
//!   `CONFIG_PRINTK_CALLER`): extra fields are ignored, as the ABI asks.
//! - Flags: `-` a whole record, `c` a fragment of a line (more follows),
//!   `+` (kernels before 4.x) a fragment continuing the previous one.
//!   Other flag characters are ignored. Fragments are reported, not
//!   joined: the ABI itself warns that the hints are unreliable and may
//!   interleave with other records.
//! - The text up to the first LF. The kernel escapes unprintable bytes and
//!   `\` itself as `\xNN`; they are unescaped here, and a backslash not
//!   followed by `x` and two hex digits is kept as it is.
//! - Continuation lines starting with a space: ` KEY=value` (`SUBSYSTEM`,
//!   `DEVICE`, and whatever the kernel adds), values unescaped like the
//!   text. Lines without `=` are skipped; the first line that does not
//!   start with a space ends the record. At most [`MAX_FIELDS`] are kept.
//!
//! A record whose prefix cannot be read is an error ([`RecordError`]);
//! the caller stores its bytes as a bare message or counts it.

use std::borrow::Cow;

use crate::sources::syslog::Priority;

/// The most continuation fields kept from one record.
pub const MAX_FIELDS: usize = 32;

/// The fragment hint of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// `-`: a whole line.
    Whole,
    /// `c`: part of a line; the rest follows in later records.
    Start,
    /// `+`: continues the previous fragment (older kernels).
    Continuation,
}

/// A parsed record, borrowing from the read buffer; text and values are
/// copied only when they held escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Kernel messages have facility `kern` (0); records written to
    /// `/dev/kmsg` by programs have another (the kernel forbids 0 to them).
    pub priority: Priority,
    pub seq: u64,
    /// Microseconds since boot on the kernel's printk clock (which, like
    /// CLOCK_MONOTONIC, does not run during suspend).
    pub ts_usec: u64,
    pub fragment: Fragment,
    pub text: Cow<'a, [u8]>,
    /// `(KEY, value)` from the continuation lines, in order.
    pub fields: Vec<(&'a [u8], Cow<'a, [u8]>)>,
}

impl Record<'_> {
    /// The value of a continuation field.
    pub fn field(&self, key: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &v[..])
    }

    /// `SUBSYSTEM=` (`acpi`, `pci`, `usb`).
    pub fn subsystem(&self) -> Option<&[u8]> {
        self.field(b"SUBSYSTEM")
    }

    /// `DEVICE=`: `b8:0` (block), `c4:1` (char), `n2` (netdev ifindex),
    /// `+acpi:PNP0A08:00` (subsystem:name).
    pub fn device(&self) -> Option<&[u8]> {
        self.field(b"DEVICE")
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a /dev/kmsg record has no ';' ending its prefix")]
    NoPrefixEnd,
    #[error("a /dev/kmsg record's priority is not a number up to 2047")]
    BadPriority,
    #[error("a /dev/kmsg record's sequence number is missing or not a number")]
    BadSeq,
    #[error("a /dev/kmsg record's timestamp is missing or not a number")]
    BadTimestamp,
}

/// Parses one record as returned by one `read()`.
pub fn parse_record(buf: &[u8]) -> Result<Record<'_>, RecordError> {
    let semi = memchr::memchr(b';', buf).ok_or(RecordError::NoPrefixEnd)?;
    let mut prefix = buf[..semi].split(|&b| b == b',');
    let priority = prefix
        .next()
        .and_then(number)
        .and_then(|p| u32::try_from(p).ok())
        .and_then(Priority::from_code)
        .ok_or(RecordError::BadPriority)?;
    let seq = prefix.next().and_then(number).ok_or(RecordError::BadSeq)?;
    let ts_usec = prefix
        .next()
        .and_then(number)
        .ok_or(RecordError::BadTimestamp)?;
    let fragment = match prefix.next() {
        Some(f) if f.contains(&b'c') => Fragment::Start,
        Some(f) if f.contains(&b'+') => Fragment::Continuation,
        _ => Fragment::Whole,
    };

    let body = &buf[semi + 1..];
    let (text, mut rest) = match memchr::memchr(b'\n', body) {
        Some(end) => (&body[..end], &body[end + 1..]),
        None => (body, &body[body.len()..]),
    };
    let mut fields = Vec::new();
    while let [b' ', line @ ..] = rest {
        let (line, next) = match memchr::memchr(b'\n', line) {
            Some(end) => (&line[..end], &line[end + 1..]),
            None => (line, &line[line.len()..]),
        };
        rest = next;
        if let Some(eq) = memchr::memchr(b'=', line) {
            if eq > 0 && fields.len() < MAX_FIELDS {
                fields.push((&line[..eq], unescape(&line[eq + 1..])));
            }
        }
    }
    Ok(Record {
        priority,
        seq,
        ts_usec,
        fragment,
        text: unescape(text),
        fields,
    })
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `\xNN` to the byte NN; anything else unchanged. Borrows when there is
/// nothing to unescape.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', &s[i..]) {
        let at = i + off;
        let escaped = match s.get(at + 1..at + 4) {
            Some([b'x', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                let v = out.get_or_insert_with(|| Vec::with_capacity(s.len()));
                v.extend_from_slice(&s[copied..at]);
                v.push(byte);
                copied = at + 4;
                i = at + 4;
            }
            None => i = at + 1,
        }
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut v) => {
            v.extend_from_slice(&s[copied..]);
            Cow::Owned(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::syslog::{Facility, Severity};

    /// Records read from this machine's /dev/kmsg (kernel 6.18, read as
    /// root with O_NONBLOCK, one read() each) and stored as they came.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/kmsg/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn real_records() {
        let raw = fixture("kernel_first");
        let r = parse_record(&raw).unwrap();
        assert_eq!((r.seq, r.ts_usec), (0, 0));
        assert_eq!(r.priority.facility, Facility::KERN);
        assert_eq!(r.priority.severity.level_name(), "notice");
        assert_eq!(r.fragment, Fragment::Whole);
        assert!(r.text.starts_with(b"Linux version "));
        assert!(!r.text.ends_with(b"\n"));
        assert!(r.fields.is_empty());

        let raw = fixture("kernel_warning");
        let r = parse_record(&raw).unwrap();
        assert_eq!(r.priority.severity, Severity::WARNING);
        assert_eq!(
            &r.text[..],
            b"[Firmware Bug]: TSC doesn't count with P0 frequency!"
        );

        let raw = fixture("continuation_acpi");
        let r = parse_record(&raw).unwrap();
        assert_eq!((r.seq, r.ts_usec), (185, 256158));
        assert_eq!(r.subsystem(), Some(&b"acpi"[..]));
        assert_eq!(r.device(), Some(&b"+acpi:PNP0A08:00"[..]));
        assert!(r.text.starts_with(b"acpi PNP0A08:00: _OSC: "));

        let raw = fixture("escape_tab");
        let r = parse_record(&raw).unwrap();
        assert_eq!(
            &r.text[..],
            b"rcu: \tRCU restricting CPUs from NR_CPUS=256 to nr_cpu_ids=2."
        );
    }

    #[test]
    fn synthetic_edge_cases() {
        // A program's record (facility daemon), the ABI document's example.
        let r = parse_record(b"30,340,5690716,-;udevd[80]: starting version 181\n").unwrap();
        assert_eq!(r.priority.facility.name(), Some("daemon"));
        assert_eq!(r.priority.severity, Severity::INFO);
        // Escapes in text and values; a lone backslash and a bad escape kept.
        let r =
            parse_record(b"6,1,2,-;a\\x5cb \\xff \\x4 \\q end\\\n SUBSYSTEM=x\\x3dy\n DEVICE=n2\n")
                .unwrap();
        assert_eq!(&r.text[..], b"a\\b \xff \\x4 \\q end\\");
        assert_eq!(r.subsystem(), Some(&b"x=y"[..]));
        assert_eq!(r.device(), Some(&b"n2"[..]));
        // Unknown prefix fields and unknown keys; no final LF; a line
        // without '=' and a line not starting with a space.
        let r =
            parse_record(b"4,9,10,-,caller=T42,future;text\n NEW_KEY=v\n junk\n=x\nnot a field")
                .unwrap();
        assert_eq!(&r.text[..], b"text");
        assert_eq!(r.field(b"NEW_KEY"), Some(&b"v"[..]));
        assert_eq!(r.fields.len(), 1);
        // Kernel 3.5: no flags field.
        let r = parse_record(b"6,3,4;old kernel").unwrap();
        assert_eq!(
            (r.fragment, &r.text[..]),
            (Fragment::Whole, &b"old kernel"[..])
        );
        // Fragments.
        assert_eq!(
            parse_record(b"6,3,4,c;part").unwrap().fragment,
            Fragment::Start
        );
        assert_eq!(
            parse_record(b"6,3,4,+;more").unwrap().fragment,
            Fragment::Continuation
        );
        assert_eq!(
            parse_record(b"6,3,4,?;x").unwrap().fragment,
            Fragment::Whole
        );
        // Facility above local7 (8 bits allowed by the ABI).
        let r = parse_record(b"2047,1,1,-;x").unwrap();
        assert_eq!(
            (r.priority.facility.code(), r.priority.facility.name()),
            (255, None)
        );
        // Too many fields: the first MAX_FIELDS are kept.
        let mut raw = b"6,1,1,-;t\n".to_vec();
        for i in 0..MAX_FIELDS + 5 {
            raw.extend_from_slice(format!(" K{i}=v\n").as_bytes());
        }
        assert_eq!(parse_record(&raw).unwrap().fields.len(), MAX_FIELDS);
        // Empty text.
        assert_eq!(&parse_record(b"6,1,1,-;\n").unwrap().text[..], b"");
    }

    #[test]
    fn bad_prefixes() {
        assert_eq!(
            parse_record(b"no prefix at all"),
            Err(RecordError::NoPrefixEnd)
        );
        assert_eq!(parse_record(b";x"), Err(RecordError::BadPriority));
        assert_eq!(parse_record(b"2048,1,1,-;x"), Err(RecordError::BadPriority));
        assert_eq!(parse_record(b"-1,1,1,-;x"), Err(RecordError::BadPriority));
        assert_eq!(parse_record(b"6;x"), Err(RecordError::BadSeq));
        assert_eq!(
            parse_record(b"6,99999999999999999999999,1,-;x"),
            Err(RecordError::BadSeq)
        );
        assert_eq!(parse_record(b"6,1;x"), Err(RecordError::BadTimestamp));
        assert_eq!(parse_record(b"6,1,1.5,-;x"), Err(RecordError::BadTimestamp));
        assert_eq!(parse_record(b"").map(|_| ()), Err(RecordError::NoPrefixEnd));
    }
}
