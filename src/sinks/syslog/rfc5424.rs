//! Entries as RFC 5424 syslog messages.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`
//!
//! | field | from | rules (RFC 5424 section 6) |
//! |-------|------|----------------------------|
//! | PRI | facility * 8 + severity | severity: the entry's level, else a `level` or `severity` label (a name such as `err`/`warning` or a number 0-7), else `err` for stderr and `info` for stdout, else the configured default (`notice`); facility: a `facility` label (a name such as `daemon`/`local3` or a number 0-23), else the configured default (`user`) |
//! | TIMESTAMP | [`ship_time`] | UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (6 fraction digits, the most the RFC allows; cut, not rounded) |
//! | HOSTNAME | configured | printable US-ASCII (33-126), at most 255 |
//! | APP-NAME | the source name | printable US-ASCII, at most 48 |
//! | PROCID | a `procid` or `pid` label | printable US-ASCII, at most 128 |
//! | MSGID | a `msgid` label | printable US-ASCII, at most 32 |
//! | STRUCTURED-DATA | labels `sd.<SD-ID>.<PARAM-NAME>` | one element per SD-ID (`[id name="value" ...]`); the param name is what follows the last `.` (SD-IDs such as `x@32473.1` may hold dots); names are printable US-ASCII without `=`, space, `]`, `"`, at most 32; values escape `"`, `\` and `]` with a backslash |
//! | MSG | the message bytes, unchanged | RFC 5424's MSG-ANY (no BOM is added, as logger(1) and rsyslog send it); a message that does not fit `max_message_bytes` is cut, at a UTF-8 boundary when it is UTF-8 |
//!
//! In every header field, a character outside its charset becomes `_` and
//! the field is cut at its length limit; an empty field is written as the
//! nil value `-`. So a source named `my app` ships as APP-NAME `my_app`,
//! and a source of 60 characters ships its first 48.

use crate::entry::EntryRef;
use crate::sinks::ship::ship_time;
use crate::timefmt::write_rfc3339_nanos;

/// Facility names, by number (RFC 5424 table 1, as rsyslog names them).
pub const FACILITY_NAMES: [&str; 24] = [
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

const APP_NAME_MAX: usize = 48;
const HOSTNAME_MAX: usize = 255;
const PROCID_MAX: usize = 128;
const MSGID_MAX: usize = 32;
const SD_NAME_MAX: usize = 32;

/// How entries are formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogFormat {
    /// HOSTNAME, already in its charset (see [`SyslogFormat::new`]).
    hostname: String,
    /// Facility when the entry has no `facility` label (0-23).
    pub default_facility: u8,
    /// Severity when nothing about the entry gives one (0-7).
    pub default_severity: u8,
    /// A whole message (header and MSG, without framing) is cut to this.
    pub max_message_bytes: usize,
}

impl SyslogFormat {
    /// `hostname` is sanitised like every header field; defaults: facility
    /// `user`, severity `notice` (what syslog assumes for a message
    /// without PRI), no practical size limit.
    pub fn new(hostname: &str) -> SyslogFormat {
        let mut h = String::new();
        push_field(&mut h, hostname, HOSTNAME_MAX, is_print_ascii);
        SyslogFormat {
            hostname: h,
            default_facility: 1,
            default_severity: 5,
            max_message_bytes: usize::MAX,
        }
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Appends the message for `e` to `out`; returns whether MSG was cut.
    pub fn format(&self, e: &EntryRef<'_>, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let pri = u32::from(facility_of(e).unwrap_or(self.default_facility).min(23)) * 8
            + u32::from(severity_of(e).unwrap_or(self.default_severity).min(7));
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.extend_from_slice(b">1 ");
        let mut ts = Vec::with_capacity(30);
        write_rfc3339_nanos(&mut ts, ship_time(e));
        out.extend_from_slice(&ts[..26]);
        out.extend_from_slice(b"Z ");

        let mut header = String::with_capacity(128);
        header.push_str(&self.hostname);
        header.push(' ');
        push_field(&mut header, &e.origin.source, APP_NAME_MAX, is_print_ascii);
        header.push(' ');
        let label = |k: &str| e.origin.label(k).unwrap_or("");
        let procid = e.origin.label("procid").unwrap_or_else(|| label("pid"));
        push_field(&mut header, procid, PROCID_MAX, is_print_ascii);
        header.push(' ');
        push_field(&mut header, label("msgid"), MSGID_MAX, is_print_ascii);
        header.push(' ');
        write_structured_data(&mut header, e);
        out.extend_from_slice(header.as_bytes());

        if e.msg.is_empty() {
            return false;
        }
        out.push(b' ');
        let room = self.max_message_bytes.saturating_sub(out.len() - start);
        if e.msg.len() <= room {
            out.extend_from_slice(e.msg);
            return false;
        }
        let mut cut = room;
        if let Ok(text) = std::str::from_utf8(e.msg) {
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        out.extend_from_slice(&e.msg[..cut]);
        true
    }
}

fn is_print_ascii(c: char) -> bool {
    ('!'..='~').contains(&c)
}

fn is_sd_name_char(c: char) -> bool {
    is_print_ascii(c) && !matches!(c, '=' | ']' | '"')
}

/// Appends `value` under a field's charset and length, or `-` if empty.
fn push_field(out: &mut String, value: &str, max: usize, allowed: fn(char) -> bool) {
    let start = out.len();
    for c in value.chars().take(max) {
        out.push(if allowed(c) { c } else { '_' });
    }
    if out.len() == start {
        out.push('-');
    }
}

/// `[id k="v" ...]...` from `sd.<id>.<name>` labels, or `-`.
fn write_structured_data(out: &mut String, e: &EntryRef<'_>) {
    let start = out.len();
    let mut current_id: Option<&str> = None;
    // Labels are sorted by key, so one SD-ID's params are adjacent.
    for (key, value) in e.origin.labels() {
        let Some(rest) = key.strip_prefix("sd.") else {
            continue;
        };
        let Some((id, name)) = rest.rsplit_once('.') else {
            continue;
        };
        if id.is_empty() || name.is_empty() {
            continue;
        }
        if current_id != Some(id) {
            if current_id.is_some() {
                out.push(']');
            }
            out.push('[');
            push_field(out, id, SD_NAME_MAX, is_sd_name_char);
            current_id = Some(id);
        }
        out.push(' ');
        push_field(out, name, SD_NAME_MAX, is_sd_name_char);
        out.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    if current_id.is_some() {
        out.push(']');
    }
    if out.len() == start {
        out.push('-');
    }
}

/// A severity from a name (`err`, `warning`, ringtail's level names) or a
/// number 0-7.
pub fn parse_severity(s: &str) -> Option<u8> {
    crate::entry::Level::parse(s).map(crate::entry::Level::severity)
}

/// A facility from a name (see [`FACILITY_NAMES`]) or a number 0-23.
pub fn parse_facility(s: &str) -> Option<u8> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 23).then_some(n);
    }
    let lower = s.to_ascii_lowercase();
    FACILITY_NAMES
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u8)
        .or(match lower.as_str() {
            "auth-priv" => Some(10),
            "audit" => Some(13),
            "alert" => Some(14),
            "clock" => Some(15),
            _ => None,
        })
}

fn severity_of(e: &EntryRef<'_>) -> Option<u8> {
    use crate::entry::Stream;
    e.flags
        .level()
        .map(crate::entry::Level::severity)
        .or_else(|| e.origin.label("level").and_then(parse_severity))
        .or_else(|| e.origin.label("severity").and_then(parse_severity))
        .or(match e.flags.stream() {
            Some(Stream::Stderr) => Some(3),
            Some(Stream::Stdout) => Some(6),
            None => None,
        })
}

fn facility_of(e: &EntryRef<'_>) -> Option<u8> {
    e.origin.label("facility").and_then(parse_facility)
}

/// The local host name for HOSTNAME, from the kernel; `-` if unknown.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Origin, Stream};

    // 2021-06-01T12:34:56.123456789Z
    const T: u64 = 1_622_550_896_123_456_789;

    fn format_with(f: &SyslogFormat, origin: &Origin, flags: Flags, msg: &[u8]) -> (String, bool) {
        let e = EntryRef {
            seq: 1,
            time: T,
            source_time: Default::default(),
            origin,
            flags,
            msg,
        };
        let mut out = Vec::new();
        let cut = f.format(&e, &mut out);
        (String::from_utf8_lossy(&out).into_owned(), cut)
    }

    fn format(origin: &Origin, flags: Flags, msg: &[u8]) -> String {
        format_with(&SyslogFormat::new("host-1"), origin, flags, msg).0
    }

    #[test]
    fn plain_entry() {
        assert_eq!(
            format(&Origin::new("web.out"), Flags::default(), b"hello"),
            "<13>1 2021-06-01T12:34:56.123456Z host-1 web.out - - - hello"
        );
        assert_eq!(
            format(&Origin::new(""), Flags::default(), b""),
            "<13>1 2021-06-01T12:34:56.123456Z host-1 - - - -"
        );
    }

    #[test]
    fn pri_from_level_labels_and_stream() {
        let o = Origin::new("a");
        let level = Flags::default().with_level(crate::entry::Level::from_severity(3));
        assert!(format(&o, level, b"x").starts_with("<11>1 "));
        let stderr = Flags::default().with_stream(Some(Stream::Stderr));
        assert!(format(&o, stderr, b"x").starts_with("<11>1 "));
        let stdout = Flags::default().with_stream(Some(Stream::Stdout));
        assert!(format(&o, stdout, b"x").starts_with("<14>1 "));
        let o = Origin::new("a")
            .with_label("facility", "local3")
            .with_label("severity", "warn");
        assert!(format(&o, Flags::default(), b"x").starts_with("<156>1 "));
        let o = Origin::new("a")
            .with_label("facility", "23")
            .with_label("level", "7");
        assert!(format(&o, Flags::default(), b"x").starts_with("<191>1 "));
        // Nonsense labels fall back to the defaults.
        let o = Origin::new("a")
            .with_label("facility", "99")
            .with_label("level", "loud");
        assert!(format(&o, Flags::default(), b"x").starts_with("<13>1 "));
    }

    #[test]
    fn header_fields_follow_their_charset_and_length() {
        let o = Origin::new(format!("my app é {}", "x".repeat(60)))
            .with_label("pid", "42")
            .with_label("msgid", "ID 47");
        let text = format(&o, Flags::default(), b"m");
        let fields: Vec<&str> = text.split(' ').collect();
        assert_eq!(fields[3].len(), 48);
        assert!(fields[3].starts_with("my_app___xxx"));
        assert_eq!(fields[4], "42");
        assert_eq!(fields[5], "ID_47");
        let f = SyslogFormat::new("bad host\n");
        assert_eq!(f.hostname(), "bad_host_");
        assert_eq!(SyslogFormat::new("").hostname(), "-");
    }

    #[test]
    fn structured_data_from_labels() {
        let o = Origin::new("a")
            .with_label("sd.origin.ip", "10.0.0.1")
            .with_label("sd.origin.software", "ring\"tail]\\")
            .with_label("sd.x@32473.1.flag", "on")
            .with_label("sd.bad", "ignored: no param name")
            .with_label("other", "not sd");
        assert_eq!(
            format(&o, Flags::default(), b"m"),
            "<13>1 2021-06-01T12:34:56.123456Z host-1 a - - \
             [origin ip=\"10.0.0.1\" software=\"ring\\\"tail\\]\\\\\"][x@32473.1 flag=\"on\"] m"
        );
    }

    #[test]
    fn long_messages_are_cut_at_utf8_boundaries() {
        let mut f = SyslogFormat::new("h");
        let o = Origin::new("a");
        let header_len = format_with(&f, &o, Flags::default(), b"").0.len() + 1;
        f.max_message_bytes = header_len + 4;
        let (text, cut) = format_with(&f, &o, Flags::default(), "aééb".as_bytes());
        assert!(cut);
        assert!(text.ends_with(" aé"), "{text}");
        let (text, cut) = format_with(&f, &o, Flags::default(), "abcé".as_bytes());
        assert!(cut);
        assert!(text.ends_with(" abc"), "{text}");
        let (text, cut) = format_with(&f, &o, Flags::default(), "aéb".as_bytes());
        assert!(!cut);
        assert!(text.ends_with(" aéb"), "{text}");
        // Bytes that are not UTF-8 are cut where the limit falls.
        let mut out = Vec::new();
        let e = EntryRef {
            seq: 1,
            time: T,
            source_time: Default::default(),
            origin: &o,
            flags: Flags::default(),
            msg: b"\xff\xfe\xfd\xfc",
        };
        assert!(!f.format(&e, &mut out));
        assert!(out.ends_with(b" \xff\xfe\xfd\xfc"));
        let e = EntryRef {
            msg: b"\xff\xfe\xfd\xfc\xfb",
            ..e
        };
        out.clear();
        assert!(f.format(&e, &mut out));
        assert!(out.ends_with(b" \xff\xfe\xfd\xfc"));
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_severity("error"), Some(3));
        assert_eq!(parse_severity("ERR"), Some(3));
        assert_eq!(parse_severity("8"), None);
        assert_eq!(parse_facility("authpriv"), Some(10));
        assert_eq!(parse_facility("LOCAL7"), Some(23));
        assert_eq!(parse_facility("24"), None);
    }
}
