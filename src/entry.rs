//! The one entry model that travels from sources through the ring to every
//! reader and sink.
//!
//! An entry is split in two on purpose: what is the same for every line of a
//! source (its name and labels, an [`Origin`]) is interned once by the ring,
//! and what differs per line (seq, time, [`Flags`], message bytes) is stored
//! per entry. That keeps a 100-byte line at about 128 bytes of memory.
//!
//! [`EntryRef`] is the borrowed view readers get from a ring batch;
//! [`Entry`] is its owned form for callers that keep entries around.

use std::fmt;
use std::sync::Arc;

/// Where entries come from: the source name given at registration
/// (`onboot.001-dhcpcd.out`) plus labels that hold for all of its lines
/// (container id, image, syslog app, ...).
///
/// Labels are kept sorted by key with unique keys, so two origins built from
/// the same pairs in any order compare equal and intern to one id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    /// The source name. Never contains NUL; any invalid UTF-8 from the wire was
    /// escaped as `\xNN` when the name was parsed.
    pub source: String,
    /// Sorted, de-duplicated `(key, value)` pairs.
    labels: Vec<(String, String)>,
}

impl Origin {
    /// An origin with only a source name.
    pub fn new(source: impl Into<String>) -> Self {
        Origin {
            source: source.into(),
            labels: Vec::new(),
        }
    }

    /// Adds or replaces a label, keeping labels sorted.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_label(key, value);
        self
    }

    /// Adds or replaces a label, keeping labels sorted.
    pub fn set_label(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.labels.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.labels[i].1 = value,
            Err(i) => self.labels.insert(i, (key, value)),
        }
    }

    /// The labels, sorted by key.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }

    /// Builds a source name from untrusted wire bytes: valid UTF-8 is kept,
    /// anything else (and NUL) is escaped as `\xNN`, and the result is cut at
    /// `max_len` bytes on a character boundary.
    pub fn source_from_bytes(raw: &[u8], max_len: usize) -> String {
        let mut out = String::with_capacity(raw.len().min(max_len));
        for chunk in raw.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\0' {
                    out.push_str("\\x00");
                } else {
                    out.push(c);
                }
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        if out.len() > max_len {
            let mut cut = max_len;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

/// Which output stream of a program a line came from, where known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// How severe an entry is: the eight syslog severities, used as an
/// entry's `level` wherever one is known (syslog, kmsg, Loki pushes with a
/// `level` label, HTTP ingest, ringtail's own entries).
///
/// One type for every way in and out: [`Level::parse`] reads the names
/// and the aliases other systems write (`err`, `warn`, `fatal`, `trace`,
/// ...), [`Level::as_str`] prints the name Grafana colours by (`error`,
/// `warning`, `info`, ...), and the number is the syslog severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// The printed names, by severity.
pub const LEVEL_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
];

impl Level {
    /// Every level, most severe first (by syslog severity).
    pub const ALL: [Level; 8] = [
        Level::Emerg,
        Level::Alert,
        Level::Crit,
        Level::Error,
        Level::Warning,
        Level::Notice,
        Level::Info,
        Level::Debug,
    ];

    /// What [`Level::parse`] accepts, for error messages.
    pub const EXPECTED: &'static str = "emerg, alert, crit, error, warning, notice, info, debug \
         (or err, warn, critical, fatal, panic, information, trace, ...), or 0-7";

    /// The level of syslog severity `severity` (0..=7).
    pub fn from_severity(severity: u8) -> Option<Level> {
        Level::ALL.get(usize::from(severity)).copied()
    }

    /// The syslog severity: 0 (emerg) ..= 7 (debug).
    pub fn severity(self) -> u8 {
        self as u8
    }

    /// The name ringtail prints (and Grafana colours by).
    pub fn as_str(self) -> &'static str {
        LEVEL_NAMES[self as usize]
    }

    /// Reads a level name, an alias, or a severity number, ignoring case:
    /// the names of [`LEVEL_NAMES`]; `emergency`, `panic` (emerg);
    /// `critical`, `fatal` (crit); `err` (error); `warn` (warning);
    /// `information`, `informational` (info); `dbg`, `trace` (debug);
    /// `0`-`7`.
    pub fn parse(text: &str) -> Option<Level> {
        let t = text.trim();
        if let [d @ b'0'..=b'7'] = t.as_bytes() {
            return Level::from_severity(d - b'0');
        }
        let lower = t.to_ascii_lowercase();
        let level = match lower.as_str() {
            "emerg" | "emergency" | "panic" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" | "critical" | "fatal" => Level::Crit,
            "error" | "err" => Level::Error,
            "warning" | "warn" => Level::Warning,
            "notice" => Level::Notice,
            "info" | "information" | "informational" => Level::Info,
            "debug" | "dbg" | "trace" => Level::Debug,
            _ => return None,
        };
        Some(level)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a level (see [`Level::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a level; use one of {expected}", expected = Level::EXPECTED)]
pub struct NotALevel(pub String);

impl std::str::FromStr for Level {
    type Err = NotALevel;
    fn from_str(s: &str) -> Result<Level, NotALevel> {
        Level::parse(s).ok_or_else(|| NotALevel(s.to_string()))
    }
}

/// Per-entry facts packed in one byte, as stored in the ring.
///
/// bit 0 `partial`, bit 1 `truncated`, bits 2-3 stream (0 none, 1 stdout,
/// 2 stderr), bits 4-7 level (0 none, 1 + syslog severity).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    const PARTIAL: u8 = 1;
    const TRUNCATED: u8 = 2;
    const STREAM_SHIFT: u8 = 2;
    const LEVEL_SHIFT: u8 = 4;

    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// This entry is one piece of a line longer than the line-length limit;
    /// the pieces have consecutive seqs and the last piece has no flag.
    pub fn partial(self) -> bool {
        self.0 & Self::PARTIAL != 0
    }

    /// The rest of this line was dropped (`--long-lines truncate`).
    pub fn truncated(self) -> bool {
        self.0 & Self::TRUNCATED != 0
    }

    pub fn stream(self) -> Option<Stream> {
        match (self.0 >> Self::STREAM_SHIFT) & 3 {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }

    /// The entry's level, where known.
    pub fn level(self) -> Option<Level> {
        match self.0 >> Self::LEVEL_SHIFT {
            0 => None,
            l => Level::from_severity((l - 1).min(7)),
        }
    }

    pub fn with_partial(self, on: bool) -> Flags {
        Flags(if on {
            self.0 | Self::PARTIAL
        } else {
            self.0 & !Self::PARTIAL
        })
    }

    pub fn with_truncated(self, on: bool) -> Flags {
        Flags(if on {
            self.0 | Self::TRUNCATED
        } else {
            self.0 & !Self::TRUNCATED
        })
    }

    pub fn with_stream(self, stream: Option<Stream>) -> Flags {
        let v = match stream {
            None => 0,
            Some(Stream::Stdout) => 1,
            Some(Stream::Stderr) => 2,
        };
        Flags((self.0 & !(3 << Self::STREAM_SHIFT)) | (v << Self::STREAM_SHIFT))
    }

    pub fn with_level(self, level: Option<Level>) -> Flags {
        let v = level.map_or(0, |l| l.severity() + 1);
        Flags((self.0 & 0x0f) | (v << Self::LEVEL_SHIFT))
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flags")
            .field("partial", &self.partial())
            .field("truncated", &self.truncated())
            .field("stream", &self.stream())
            .field("level", &self.level())
            .finish()
    }
}

/// The producer's own timestamp of an entry, where it gave one, beside the
/// receive time the ring assigns.
///
/// Two kinds, because producers' clocks deserve different trust:
/// - [`Kept`](SourceTime::Kept): a timestamp the message carried (a syslog
///   header, Docker's `time_nano`). Shown to readers next to the receive
///   time; the entry's time stays the receive time, as rsyslog and journald
///   do (a local program's clock or zone is often wrong).
/// - [`Original`](SourceTime::Original): the entry was logged elsewhere at
///   this time and relayed here (Loki push, a forwarding ringtail). It *is*
///   the entry's time for queries, metrics and forwarders
///   ([`EntryRef::event_time`]); the receive time still orders the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SourceTime {
    #[default]
    None,
    /// ns since the Unix epoch, as the message said.
    Kept(u64),
    /// ns since the Unix epoch on the host that logged the entry.
    Original(u64),
}

impl SourceTime {
    /// The timestamp, of either kind.
    pub fn ns(self) -> Option<u64> {
        match self {
            SourceTime::None => None,
            SourceTime::Kept(t) | SourceTime::Original(t) => Some(t),
        }
    }

    /// The ring's stored form: 0 for none, else the time (at most 2^63 - 1
    /// ns, the year 2262) with bit 63 set for `Original`.
    pub(crate) fn to_word(self) -> u64 {
        const MAX: u64 = (1 << 63) - 1;
        match self {
            SourceTime::None => 0,
            SourceTime::Kept(t) => t.min(MAX),
            SourceTime::Original(t) => t.min(MAX) | 1 << 63,
        }
    }

    /// The inverse of [`to_word`](Self::to_word) for a stamped entry.
    pub(crate) fn from_word(word: u64) -> SourceTime {
        let t = word & !(1 << 63);
        if word >> 63 == 1 {
            SourceTime::Original(t)
        } else {
            SourceTime::Kept(t)
        }
    }
}

/// One log record as a reader sees it, borrowed from a read batch.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    /// Assigned by the ring: strictly increasing, never reused.
    pub seq: u64,
    /// Receive time, ns since the Unix epoch; non-decreasing in seq order.
    pub time: u64,
    /// The producer's own timestamp, where it gave one.
    pub source_time: SourceTime,
    pub origin: &'a Origin,
    pub flags: Flags,
    /// The message, without its line terminator; not assumed to be UTF-8.
    pub msg: &'a [u8],
}

impl EntryRef<'_> {
    pub fn source(&self) -> &str {
        &self.origin.source
    }

    /// When the entry happened: its [`SourceTime::Original`] time for a
    /// relayed entry, else the receive time. Never later than the receive
    /// time (a relaying host's clock that runs ahead is clamped), so a time
    /// query finds every entry of `[start, end)` among receive times
    /// `[start, end + Ring::max_relay_lag())`.
    pub fn event_time(&self) -> u64 {
        match self.source_time {
            SourceTime::Original(t) => t.min(self.time),
            _ => self.time,
        }
    }

    pub fn to_owned(&self) -> Entry {
        Entry {
            seq: self.seq,
            time: self.time,
            source_time: self.source_time,
            origin: Arc::new(self.origin.clone()),
            flags: self.flags,
            msg: self.msg.to_vec(),
        }
    }
}

/// The owned form of [`EntryRef`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time: u64,
    pub source_time: SourceTime,
    pub origin: Arc<Origin>,
    pub flags: Flags,
    pub msg: Vec<u8>,
}

impl Entry {
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            seq: self.seq,
            time: self.time,
            source_time: self.source_time,
            origin: &self.origin,
            flags: self.flags,
            msg: &self.msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let f = Flags::default()
            .with_partial(true)
            .with_stream(Some(Stream::Stderr))
            .with_level(Some(Level::Error));
        assert!(f.partial());
        assert!(!f.truncated());
        assert_eq!(f.stream(), Some(Stream::Stderr));
        assert_eq!(f.level(), Some(Level::Error));
        assert_eq!(f.level().map(Level::as_str), Some("error"));
        let g = f.with_partial(false).with_truncated(true).with_level(None);
        assert!(!g.partial() && g.truncated());
        assert_eq!(g.stream(), Some(Stream::Stderr));
        assert_eq!(g.level(), None);
        assert_eq!(Flags::from_bits(f.bits()), f);
    }

    #[test]
    fn levels_parse_names_aliases_and_numbers_and_print_names() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
            assert_eq!(Level::parse(&l.severity().to_string()), Some(l));
            assert_eq!(Level::parse(&l.as_str().to_uppercase()), Some(l));
            assert_eq!(Level::from_severity(l.severity()), Some(l));
        }
        for (alias, l) in [
            ("err", Level::Error),
            ("WARN", Level::Warning),
            ("fatal", Level::Crit),
            ("critical", Level::Crit),
            ("panic", Level::Emerg),
            ("trace", Level::Debug),
            ("informational", Level::Info),
        ] {
            assert_eq!(Level::parse(alias), Some(l), "{alias}");
        }
        assert_eq!(Level::parse("8"), None);
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(Level::from_severity(8), None);
        let e = "loud".parse::<Level>().unwrap_err().to_string();
        assert!(
            e.contains("\"loud\" is not a level") && e.contains("warning"),
            "{e}"
        );
    }

    #[test]
    fn labels_sorted_and_unique() {
        let a = Origin::new("x").with_label("b", "2").with_label("a", "1");
        let b = Origin::new("x")
            .with_label("a", "0")
            .with_label("b", "2")
            .with_label("a", "1");
        assert_eq!(a, b);
        assert_eq!(a.label("a"), Some("1"));
        assert_eq!(a.label("c"), None);
    }

    #[test]
    fn source_names_from_untrusted_bytes() {
        assert_eq!(Origin::source_from_bytes(b"web.out", 64), "web.out");
        assert_eq!(Origin::source_from_bytes(b"a\xffb\0", 64), "a\\xffb\\x00");
        assert_eq!(Origin::source_from_bytes("héllo".as_bytes(), 2), "h");
    }
}
