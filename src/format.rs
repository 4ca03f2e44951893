//! Output formats: the one place that renders entries as text lines, used
//! by the CLI (`ringtail read -o ...`) and by every server.
//!
//! Each call appends one whole line, `\n` included, to a caller's buffer,
//! without allocating per entry: dumps of a million entries go through here.
//!
//! | format    | line |
//! |-----------|------|
//! | `json`    | memlogd's query output: `{"time":"<RFC 3339 ns>","source":"...","msg":"..."}` |
//! | `text`    | older memlogd: `<RFC 3339 ns>,<source>;<msg>` |
//! | `logread` | LinuxKit logread: `<RFC 3339 ns>;<source>;<msg>` |
//! | `raw`     | the message bytes only |
//! | `etw`     | Docker's etwlogs message: `container_name: N, image_name: I, container_id: C, image_id: D, source: stdout, log: msg` |
//! | `ndjson`  | every field: `{"seq":N,"time":"...","time_ns":N,"source":"...",...,"msg":"..."}`; an entry with a source time adds `"source_time":"...","source_time_ns":N`, and `"relayed":true` when that is the time it was logged on another host ([`SourceTime`]) |
//!
//! # Bytes that are not UTF-8, and other awkward bytes
//!
//! Messages are bytes. Nothing is replaced silently:
//!
//! - `json`, `ndjson`: valid UTF-8 is written as JSON text (control
//!   characters, `"` and `\` escaped as JSON requires); each byte that is
//!   not part of valid UTF-8 is written as the four characters `\xNN`
//!   (in JSON source: `"\\xff"`), so the line stays readable. In `ndjson`
//!   such an entry also carries `"msg_b64"`: the exact bytes in standard
//!   base64, so a program can always recover the message. (`msg_b64` is
//!   present exactly when the message is not valid UTF-8.)
//! - `text`, `logread`, `etw`: valid UTF-8 as is, invalid bytes as `\xNN`,
//!   and a newline inside a message or source as `\n` (two characters), so
//!   that one entry is always one line. In `text` and `logread` a `;` in
//!   the source is written `\;` (logread's convention; memlogd's parsers
//!   split at the first unescaped `;`). Backslashes are not doubled: these
//!   formats are for people and for old parsers, `ndjson` is the exact one.
//! - `raw`: the message bytes exactly as stored, then `\n`.
//!
//! # Gaps
//!
//! [`write_gap`] renders "this reader missed N entries". In `ndjson` it is
//! a record of its own, `{"gap":{"first_seq":N,"missed":N}}`; in every
//! other format it is a line that looks like an entry from source
//! `ringtail` (so memlogd clients, which know nothing of gaps, show it):
//! `missed 1234 lines (first seq 5678): this reader fell behind and the
//! ring evicted them`.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine as _;

use crate::entry::{EntryRef, Flags, Origin, SourceTime};
use crate::timefmt::write_rfc3339_nanos;

/// An output format. `json` is memlogd's and the default.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// memlogd's JSON lines: time, source, msg.
    #[default]
    Json,
    /// Older memlogd text lines: `time,source;msg`.
    Text,
    /// LinuxKit logread: `time;source;msg`.
    Logread,
    /// The message only.
    Raw,
    /// Docker's etwlogs message format.
    Etw,
    /// Every field, with seq, and explicit gap records.
    Ndjson,
}

impl Format {
    /// Every format, in the order of the docs.
    pub const ALL: [Format; 6] = [
        Format::Json,
        Format::Text,
        Format::Logread,
        Format::Raw,
        Format::Etw,
        Format::Ndjson,
    ];

    /// The name used on the command line and in requests.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Logread => "logread",
            Format::Raw => "raw",
            Format::Etw => "etw",
            Format::Ndjson => "ndjson",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown output format {:?}: expected one of json, text, logread, raw, etw, ndjson",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Appends one entry as one line (with its `\n`) in `format`.
#[inline]
pub fn write_entry(out: &mut Vec<u8>, format: Format, e: &EntryRef<'_>) {
    match format {
        Format::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            write_rfc3339_nanos(out, e.time);
            out.extend_from_slice(b"\",\"source\":");
            json_str(out, e.origin.source.as_bytes());
            out.extend_from_slice(b",\"msg\":");
            json_str(out, e.msg);
            out.extend_from_slice(b"}\n");
        }
        Format::Text => {
            write_rfc3339_nanos(out, e.time);
            out.push(b',');
            text(out, e.origin.source.as_bytes(), true);
            out.push(b';');
            text(out, e.msg, false);
            out.push(b'\n');
        }
        Format::Logread => {
            write_rfc3339_nanos(out, e.time);
            out.push(b';');
            text(out, e.origin.source.as_bytes(), true);
            out.push(b';');
            text(out, e.msg, false);
            out.push(b'\n');
        }
        Format::Raw => {
            out.extend_from_slice(e.msg);
            out.push(b'\n');
        }
        Format::Etw => write_etw(out, e),
        Format::Ndjson => write_ndjson(out, e),
    }
}

fn write_etw(out: &mut Vec<u8>, e: &EntryRef<'_>) {
    let label = |k: &str| e.origin.label(k).unwrap_or("").as_bytes();
    out.extend_from_slice(b"container_name: ");
    text(out, label("container_name"), false);
    out.extend_from_slice(b", image_name: ");
    text(out, label("image_name"), false);
    out.extend_from_slice(b", container_id: ");
    text(out, label("container_id"), false);
    out.extend_from_slice(b", image_id: ");
    text(out, label("image_id"), false);
    out.extend_from_slice(b", source: ");
    out.extend_from_slice(e.flags.stream().map_or("", |s| s.as_str()).as_bytes());
    out.extend_from_slice(b", log: ");
    text(out, e.msg, false);
    out.push(b'\n');
}

fn write_ndjson(out: &mut Vec<u8>, e: &EntryRef<'_>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(num.format(e.seq).as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    write_rfc3339_nanos(out, e.time);
    out.extend_from_slice(b"\",\"time_ns\":");
    out.extend_from_slice(num.format(e.time).as_bytes());
    if let Some(t) = e.source_time.ns() {
        out.extend_from_slice(b",\"source_time\":\"");
        write_rfc3339_nanos(out, t);
        out.extend_from_slice(b"\",\"source_time_ns\":");
        out.extend_from_slice(num.format(t).as_bytes());
        if matches!(e.source_time, SourceTime::Original(_)) {
            out.extend_from_slice(b",\"relayed\":true");
        }
    }
    out.extend_from_slice(b",\"source\":");
    json_str(out, e.origin.source.as_bytes());
    if let Some(s) = e.flags.stream() {
        out.extend_from_slice(b",\"stream\":\"");
        out.extend_from_slice(s.as_str().as_bytes());
        out.push(b'"');
    }
    let labels = e.origin.labels();
    if !labels.is_empty() {
        out.extend_from_slice(b",\"labels\":{");
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, k.as_bytes());
            out.push(b':');
            json_str(out, v.as_bytes());
        }
        out.push(b'}');
    }
    if let Some(l) = e.flags.level().map(crate::entry::Level::as_str) {
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(l.as_bytes());
        out.push(b'"');
    }
    if e.flags.partial() {
        out.extend_from_slice(b",\"partial\":true");
    }
    if e.flags.truncated() {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.extend_from_slice(b",\"msg\":");
    if !json_str(out, e.msg) {
        out.extend_from_slice(b",\"msg_b64\":\"");
        let start = out.len();
        let len = base64::encoded_len(e.msg.len(), true).expect("message fits in memory");
        out.resize(start + len, 0);
        base64::engine::general_purpose::STANDARD
            .encode_slice(e.msg, &mut out[start..])
            .expect("buffer sized by encoded_len");
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// The origin of the in-band gap lines.
static GAP_ORIGIN: LazyLock<Origin> = LazyLock::new(|| Origin::new(crate::selflog::SOURCE));

/// The text of an in-band gap line.
pub fn gap_message(first_seq: u64, missed: u64) -> String {
    format!(
        "missed {missed} lines (first seq {first_seq}): this reader fell behind and the ring evicted them"
    )
}

/// Appends the news that `missed` entries from `first_seq` on are gone, as
/// one line (see the module docs); `now_ns` is the time shown on the
/// in-band line of the memlogd formats.
pub fn write_gap(out: &mut Vec<u8>, format: Format, first_seq: u64, missed: u64, now_ns: u64) {
    if format == Format::Ndjson {
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"gap\":{\"first_seq\":");
        out.extend_from_slice(num.format(first_seq).as_bytes());
        out.extend_from_slice(b",\"missed\":");
        out.extend_from_slice(num.format(missed).as_bytes());
        out.extend_from_slice(b"}}\n");
        return;
    }
    // Gaps are rare; this allocation is not on the per-entry path.
    let msg = gap_message(first_seq, missed);
    let entry = EntryRef {
        seq: 0,
        time: now_ns,
        source_time: SourceTime::None,
        origin: &GAP_ORIGIN,
        flags: Flags::default().with_level(Some(crate::entry::Level::Warning)),
        msg: msg.as_bytes(),
    };
    write_entry(out, format, &entry);
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero iff some byte of `v` is zero.
#[inline(always)]
fn has_zero(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Non-zero iff some byte of `v` equals `b`.
#[inline(always)]
fn has_byte(v: u64, b: u8) -> u64 {
    has_zero(v ^ (LO * u64::from(b)))
}

/// Checks `s` for a byte that `bad` flags: 32-byte blocks with
/// branch-free compares (the compiler turns them into SIMD), then 8-byte
/// words with `bad_word` (SWAR), then single bytes. A plain log line thus
/// costs one pass, and short fields such as source names stay cheap too.
#[inline(always)]
fn any_bad(s: &[u8], bad: impl Fn(u8) -> bool, bad_word: impl Fn(u64) -> u64) -> bool {
    let mut blocks = s.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |acc, &b| acc | bad(b)) {
            return true;
        }
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        if bad_word(u64::from_le_bytes(w.try_into().expect("chunks of 8"))) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| bad(b))
}

/// Whether `s` can go into a JSON string as is: printable ASCII without
/// `"` or `\`.
#[inline]
fn json_plain(s: &[u8]) -> bool {
    !any_bad(
        s,
        |b| !(0x20..0x80).contains(&b) | (b == b'"') | (b == b'\\'),
        // Bytes >= 0x80; bytes < 0x20 (the "has less than" trick of Bit
        // Twiddling Hacks: exact as a yes/no); quote; backslash.
        |x| {
            (x & HI)
                | (x.wrapping_sub(LO * 0x20) & !x & HI)
                | has_byte(x, b'"')
                | has_byte(x, b'\\')
        },
    )
}

/// JSON escapes for bytes below 0x20, `"` and `\`; 0 means "as is".
static JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` (valid UTF-8) with JSON escapes, without quotes.
fn json_escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc = JSON_ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&s[run..i]);
        if esc == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&s[run..]);
}

/// Appends `s` as a quoted JSON string; bytes that are not valid UTF-8
/// become the text `\xNN`. Returns whether `s` was valid UTF-8.
#[inline]
pub fn json_str(out: &mut Vec<u8>, s: &[u8]) -> bool {
    out.push(b'"');
    let valid = if json_plain(s) {
        out.extend_from_slice(s);
        true
    } else {
        json_str_slow(out, s)
    };
    out.push(b'"');
    valid
}

#[cold]
fn json_str_slow(out: &mut Vec<u8>, s: &[u8]) -> bool {
    let mut valid = true;
    for chunk in s.utf8_chunks() {
        json_escape_valid(out, chunk.valid().as_bytes());
        for &b in chunk.invalid() {
            valid = false;
            out.extend_from_slice(&[
                b'\\',
                b'\\',
                b'x',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        }
    }
    valid
}

/// Whether `s` can go into a text line as is: ASCII without newline (and
/// without `;` when `semicolons` must be escaped).
#[inline]
fn text_plain(s: &[u8], semicolons: bool) -> bool {
    let semi = if semicolons { b';' } else { b'\n' };
    !any_bad(
        s,
        |b| (b >= 0x80) | (b == b'\n') | (b == semi),
        |x| (x & HI) | has_byte(x, b'\n') | has_byte(x, semi),
    )
}

/// Appends `s` for a text format: see the module docs.
#[inline]
fn text(out: &mut Vec<u8>, s: &[u8], semicolons: bool) {
    if text_plain(s, semicolons) {
        out.extend_from_slice(s);
    } else {
        text_slow(out, s, semicolons);
    }
}

#[cold]
fn text_slow(out: &mut Vec<u8>, s: &[u8], semicolons: bool) {
    for chunk in s.utf8_chunks() {
        let v = chunk.valid().as_bytes();
        let mut run = 0;
        for (i, &b) in v.iter().enumerate() {
            let esc: &[u8] = match b {
                b'\n' => b"\\n",
                b';' if semicolons => b"\\;",
                _ => continue,
            };
            out.extend_from_slice(&v[run..i]);
            out.extend_from_slice(esc);
            run = i + 1;
        }
        out.extend_from_slice(&v[run..]);
        for &b in chunk.invalid() {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Stream;

    const T: u64 = 1_531_041_413_123_456_789;
    const TS: &str = "2018-07-08T09:16:53.123456789Z";

    fn line(format: Format, origin: &Origin, flags: Flags, msg: &[u8]) -> String {
        let e = EntryRef {
            seq: 42,
            time: T,
            source_time: crate::entry::SourceTime::None,
            origin,
            flags,
            msg,
        };
        let mut out = Vec::new();
        write_entry(&mut out, format, &e);
        String::from_utf8(out).expect("every format writes UTF-8 here")
    }

    fn plain(format: Format, source: &str, msg: &[u8]) -> String {
        line(format, &Origin::new(source), Flags::default(), msg)
    }

    #[test]
    fn memlogd_json() {
        let l = plain(
            Format::Json,
            "onboot.001-dhcpcd.out",
            b"eth0: carrier acquired",
        );
        assert_eq!(
            l,
            format!("{{\"time\":\"{TS}\",\"source\":\"onboot.001-dhcpcd.out\",\"msg\":\"eth0: carrier acquired\"}}\n")
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "eth0: carrier acquired");
    }

    #[test]
    fn json_escaping_round_trips_through_serde() {
        let nasty =
            "quote \" backslash \\ tab \t nl \n cr \r nul \0 bell \x07 del \x7f é 日本 \u{2028}";
        for format in [Format::Json, Format::Ndjson] {
            let l = plain(format, "src\"\\\n", nasty.as_bytes());
            assert!(l.ends_with("}\n") && l.matches('\n').count() == 1, "{l}");
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["msg"], nasty);
            assert_eq!(v["source"], "src\"\\\n");
            assert!(v.get("msg_b64").is_none());
        }
        // The fast path: every length around the 8-byte word boundary.
        for n in 0..40 {
            let mut m = vec![b'a'; n];
            for k in 0..n {
                m[k] = b'"';
                let l = plain(Format::Json, "s", &m);
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                assert_eq!(v["msg"].as_str().unwrap().as_bytes(), &m[..]);
                m[k] = 0x1f;
                let l = plain(Format::Json, "s", &m);
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                assert_eq!(v["msg"].as_str().unwrap().as_bytes(), &m[..]);
                m[k] = 0xff;
                let l = plain(Format::Json, "s", &m);
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                let want = format!("{}\\xff{}", "a".repeat(k), "a".repeat(n - k - 1));
                assert_eq!(v["msg"], want);
                let l = plain(Format::Logread, "s", &m);
                assert!(l.ends_with(&format!(";s;{want}\n")), "{l}");
                m[k] = b'\n';
                let l = plain(Format::Text, "s", &m);
                let want = format!("{}\\n{}", "a".repeat(k), "a".repeat(n - k - 1));
                assert!(l.ends_with(&format!(",s;{want}\n")), "{l}");
                m[k] = b'a';
            }
        }
    }

    #[test]
    fn invalid_utf8_is_explicit() {
        let msg = b"ok \xff\xfe then \xc3\xa9 and cut \xe6\x97";
        let l = plain(Format::Json, "s", msg);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "ok \\xff\\xfe then é and cut \\xe6\\x97");

        let l = plain(Format::Ndjson, "s", msg);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "ok \\xff\\xfe then é and cut \\xe6\\x97");
        let b64 = v["msg_b64"].as_str().unwrap();
        let back = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(back, msg);

        for f in [Format::Text, Format::Logread, Format::Etw] {
            let l = plain(f, "s", msg);
            assert!(
                l.contains("ok \\xff\\xfe then é and cut \\xe6\\x97\n"),
                "{f}: {l}"
            );
        }
        // Raw is exact.
        let e = EntryRef {
            seq: 1,
            time: T,
            source_time: crate::entry::SourceTime::None,
            origin: &Origin::new("s"),
            flags: Flags::default(),
            msg,
        };
        let mut out = Vec::new();
        write_entry(&mut out, Format::Raw, &e);
        assert_eq!(&out[..msg.len()], msg);
        assert_eq!(out.len(), msg.len() + 1);
    }

    #[test]
    fn text_formats() {
        assert_eq!(
            plain(Format::Text, "web.out", b"GET / 200"),
            format!("{TS},web.out;GET / 200\n")
        );
        assert_eq!(
            plain(Format::Logread, "web.out", b"GET / 200"),
            format!("{TS};web.out;GET / 200\n")
        );
        // `;` in the source is escaped, `;` in the message is not; newlines
        // never split an entry.
        assert_eq!(
            plain(Format::Logread, "a;b\nc", b"x;y\nz"),
            format!("{TS};a\\;b\\nc;x;y\\nz\n")
        );
        assert_eq!(
            plain(Format::Text, "a;b", b"x;y"),
            format!("{TS},a\\;b;x;y\n")
        );
        assert_eq!(plain(Format::Raw, "s", b"just this"), "just this\n");
        // The fast path across word boundaries.
        for n in 0..30 {
            let src = "s".repeat(n) + ";";
            let l = plain(Format::Logread, &src, b"m");
            assert_eq!(l, format!("{TS};{};m\n", "s".repeat(n) + "\\;"));
        }
    }

    #[test]
    fn etw_format() {
        let o = Origin::new("web")
            .with_label("container_name", "/web")
            .with_label("image_name", "nginx:1")
            .with_label("container_id", "c0ffee")
            .with_label("image_id", "sha256:abc");
        let l = line(
            Format::Etw,
            &o,
            Flags::default().with_stream(Some(Stream::Stderr)),
            b"oops",
        );
        assert_eq!(
            l,
            "container_name: /web, image_name: nginx:1, container_id: c0ffee, image_id: sha256:abc, source: stderr, log: oops\n"
        );
        assert_eq!(
            plain(Format::Etw, "x", b"m"),
            "container_name: , image_name: , container_id: , image_id: , source: , log: m\n"
        );
    }

    #[test]
    fn ndjson_has_every_field() {
        let o = Origin::new("web")
            .with_label("app", "nginx")
            .with_label("a\"b", "1");
        let flags = Flags::default()
            .with_stream(Some(Stream::Stdout))
            .with_level(Some(crate::entry::Level::Info))
            .with_partial(true)
            .with_truncated(true);
        let l = line(Format::Ndjson, &o, flags, b"hi");
        assert_eq!(
            l,
            format!(
                "{{\"seq\":42,\"time\":\"{TS}\",\"time_ns\":{T},\"source\":\"web\",\"stream\":\"stdout\",\
                 \"labels\":{{\"a\\\"b\":\"1\",\"app\":\"nginx\"}},\"level\":\"info\",\"partial\":true,\"truncated\":true,\"msg\":\"hi\"}}\n"
            )
        );
        let l = plain(Format::Ndjson, "s", b"");
        assert_eq!(
            l,
            format!(
                "{{\"seq\":42,\"time\":\"{TS}\",\"time_ns\":{T},\"source\":\"s\",\"msg\":\"\"}}\n"
            )
        );
    }

    #[test]
    fn gaps() {
        let mut out = Vec::new();
        write_gap(&mut out, Format::Ndjson, 5678, 1234, T);
        assert_eq!(out, b"{\"gap\":{\"first_seq\":5678,\"missed\":1234}}\n");
        let msg =
            "missed 1234 lines (first seq 5678): this reader fell behind and the ring evicted them";
        out.clear();
        write_gap(&mut out, Format::Json, 5678, 1234, T);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!("{{\"time\":\"{TS}\",\"source\":\"ringtail\",\"msg\":\"{msg}\"}}\n")
        );
        out.clear();
        write_gap(&mut out, Format::Logread, 5678, 1234, T);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{TS};ringtail;{msg}\n")
        );
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            let v = <Format as clap::ValueEnum>::to_possible_value(&f).unwrap();
            assert_eq!(v.get_name(), f.name());
            let j = serde_json::to_string(&f).unwrap();
            assert_eq!(j, format!("\"{}\"", f.name()));
        }
        assert!("xml"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("ndjson"));
    }
}
