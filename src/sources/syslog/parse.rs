//! One syslog message, from bytes to fields.
//!
//! [`parse`] reads every form ringtail meets and never fails: whatever it
//! cannot read as a header stays in the message, byte for byte (invalid
//! UTF-8 and all). The result borrows from the input; only a structured
//! data value with escapes in it is copied.
//!
//! | form | example | what is read |
//! |---|---|---|
//! | RFC 5424 | `<165>1 2003-10-11T22:14:15.003Z host app 1234 ID47 [id k="v"] msg` | every field; SD as `(id, name, value)` with `\"` `\\` `\]` unescaped; a BOM at the start of MSG removed |
//! | RFC 3164 | `<34>Oct 11 22:14:15 host su[12]: msg` | timestamp, hostname (see [`Hostnames`]), tag and pid |
//! | glibc, busybox, util-linux `logger` on `/dev/log` | `<27>Dec  2 05:47:46 app[12212]: msg`, `<13>Dec  2 05:47:46 app: msg` | the same with no hostname |
//! | Python's `SysLogHandler` | `<132>pyapp[12097]: msg\0` | no timestamp; a tag when the formatter writes one |
//! | no PRI | `app: msg` | as above with PRI 13 (user.notice), [`PriStatus::Missing`] |
//! | a bad PRI | `<999>msg`, `<html>` | nothing: the whole input is the message, [`Format::Bare`], [`PriStatus::Invalid`] |
//!
//! Rules worth knowing:
//! - Trailing NUL, LF and CR bytes are removed first (glibc may end with
//!   `\0` or `\n`, Python's handler ends with `\0`).
//! - A PRI is `<` 1 to 3 digits `>` with a value up to 191.
//! - RFC 5424 is tried when the PRI is followed by `1 `; if its header does
//!   not hold (a bad timestamp, a field missing) the message is read as RFC
//!   3164 instead, as rsyslog's parser chain does. Malformed structured
//!   data, or more than [`MAX_SD_PARAMS`] parameters, is left in MSG.
//! - RFC 3164 timestamps are `Mmm dd hh:mm:ss` (day padded with a space or
//!   not); an RFC 3339 timestamp in the same place is read too (rsyslog
//!   forwards that way). They carry no year and no zone: the zone is the
//!   listener's ([`ParseOptions::time_zone`]) and the year is the latest
//!   one that puts the time no more than [`MAX_FUTURE`] after the receive
//!   time, so a December message read in January belongs to the previous
//!   year and one stamped a few seconds into next year (a sender's clock
//!   ahead at New Year) to the next. A date that exists in none of the
//!   three candidate years (Feb 29) gives no timestamp.
//! - The tag is the first word when it ends in `:` or `[pid]:` and that
//!   colon ends the input or is followed by a space; the word holds no
//!   space, NUL, `:` or `[`. So `http://x` has no tag, and a NUL inside a
//!   tag makes it no tag: the bytes stay in the message. One space after
//!   the colon is removed, further indentation kept.
//! - A hostname is only looked for after a timestamp (Python's handler
//!   sends `<11>text` with neither) and must be made of letters, digits and
//!   `.-_:`.
//!
//! # Why not the `syslog_loose` crate
//!
//! It was checked (version 0.23, by running it on the captured fixtures)
//! and is not used for any form:
//! - it takes `&str`, so a message with invalid UTF-8 would have to be
//!   converted lossily first, and non-UTF-8 bytes must be kept;
//! - on the glibc/busybox short form `<13>Dec  2 05:46:18 myprog: hello`
//!   it returns hostname `myprog` and no app name (it has no notion of a
//!   local socket without hostnames), and it keeps a trailing NUL in MSG;
//! - it parses `[x a="b"]` at the start of an RFC 3164 message as
//!   structured data, which 3164 does not have;
//! - it trims leading whitespace off the whole input and returns SD values
//!   still escaped;
//! - for RFC 5424 alone it would be correct on UTF-8 input, but a second
//!   parser for one form (with `chrono` and `nom` as new dependencies, next
//!   to `jiff`) would split the rules above in two places.
//!
//! Calendar work (valid dates, UTC offsets, time zones with DST) is done
//! by `jiff`: it reads the system's tz database, handles gaps and folds
//! explicitly (a local time in a DST gap or fold resolves as RFC 5545
//! "compatible": in a gap it is read with the offset before the gap, so
//! 02:30 becomes 03:30 summer time; in a fold it is the earlier of the
//! two), and it needs no second date library (`time` has no tz database; `chrono-tz`
//! compiles the database in and needs `chrono`).

use std::borrow::Cow;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::priority::Priority;

/// The most structured-data parameters read from one message; more than
/// this and the whole SD stays in MSG (each parameter becomes a label, and
/// a flood of labels from one datagram would cost more than it tells).
pub const MAX_SD_PARAMS: usize = 64;

/// How far after the receive time an RFC 3164 timestamp may be when its
/// year is inferred.
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Whether the sender puts a hostname after an RFC 3164 timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostnames {
    /// Network senders (UDP, TCP): a hostname-like word after the
    /// timestamp is the hostname, unless it is the tag.
    Expected,
    /// A local socket (`/dev/log`): glibc, busybox and Python send none,
    /// so a first word is the hostname only when a tag follows it, as in
    /// what `logger --rfc3164 -u` sends (`<155>Dec  2 05:47:45 vm myapp[1]: m`).
    Local,
}

/// How a listener reads messages.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    pub hostnames: Hostnames,
    /// The zone of RFC 3164 timestamps, which carry none: usually the
    /// system's zone for a local socket, and the senders' for a network
    /// listener.
    pub time_zone: TimeZone,
}

/// Which form the message was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    /// RFC 3164 and the local forms without hostname or timestamp.
    Rfc3164,
    /// No header could be read (a bad PRI): the whole input is the message.
    Bare,
}

/// What the PRI at the start said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriStatus {
    /// A valid `<PRI>`.
    Given,
    /// No `<` at the start: the priority is [`Priority::DEFAULT`].
    Missing,
    /// A `<` that does not start a valid PRI (`<999>`, `<>`, `<html>`):
    /// the priority is [`Priority::DEFAULT`] and the message is
    /// [`Format::Bare`].
    Invalid,
}

/// One structured-data parameter, or an element without parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdParam<'a> {
    /// The SD-ID (`timeQuality`, `meta@32473`).
    pub id: &'a [u8],
    /// The parameter name; `None` for an element with no parameters
    /// (`[exampleSDID@32473]`).
    pub name: Option<&'a [u8]>,
    /// The value with its escapes removed (empty for an element without
    /// parameters). Borrowed unless it had escapes.
    pub value: Cow<'a, [u8]>,
}

/// A parsed message, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub priority: Priority,
    pub pri: PriStatus,
    pub format: Format,
    /// The message's own time in nanoseconds since the Unix epoch, when it
    /// had one that could be read.
    pub timestamp_ns: Option<i64>,
    pub hostname: Option<&'a [u8]>,
    /// RFC 5424 APP-NAME or the RFC 3164 tag.
    pub app_name: Option<&'a [u8]>,
    /// RFC 5424 PROCID or the pid in `tag[pid]:`.
    pub procid: Option<&'a [u8]>,
    /// RFC 5424 MSGID.
    pub msgid: Option<&'a [u8]>,
    /// In order of appearance.
    pub structured_data: Vec<SdParam<'a>>,
    /// The rest, bytes as received (less a leading BOM in RFC 5424).
    pub msg: &'a [u8],
}

impl Message<'_> {
    fn bare(input: &[u8], pri: PriStatus) -> Message<'_> {
        Message {
            priority: Priority::DEFAULT,
            pri,
            format: Format::Bare,
            timestamp_ns: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: Vec::new(),
            msg: input,
        }
    }
}

/// Reads one message. `received_ns` (the receive time, nanoseconds since
/// the epoch) decides the year of an RFC 3164 timestamp.
pub fn parse<'a>(input: &'a [u8], options: &ParseOptions, received_ns: i64) -> Message<'a> {
    let input = trim_end(input);
    let (priority, pri, rest) = match read_pri(input) {
        Pri::Given(priority, rest) => (priority, PriStatus::Given, rest),
        Pri::Missing => (Priority::DEFAULT, PriStatus::Missing, input),
        Pri::Invalid => return Message::bare(input, PriStatus::Invalid),
    };
    if let Some(mut m) = rfc5424(rest) {
        m.priority = priority;
        m.pri = pri;
        return m;
    }
    let mut m = rfc3164(rest, options, received_ns);
    m.priority = priority;
    m.pri = pri;
    m
}

/// The messages in one `/dev/log` datagram. busybox and some libcs send
/// several, each ended by a NUL; a datagram is cut at every NUL followed by
/// `<` (the start of the next PRI), so a stray NUL inside a message does
/// not cut it in two (busybox's syslogd cuts at every NUL). Pieces that
/// are empty once trailing NUL, LF and CR are removed are skipped.
pub fn split_datagram(datagram: &[u8]) -> SplitDatagram<'_> {
    SplitDatagram { rest: datagram }
}

/// Iterator returned by [`split_datagram`].
pub struct SplitDatagram<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SplitDatagram<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let rest = self.rest;
            let cut = memchr::memchr_iter(0, rest).find(|&i| rest.get(i + 1) == Some(&b'<'));
            let piece = match cut {
                Some(i) => {
                    self.rest = &rest[i + 1..];
                    &rest[..i]
                }
                None => {
                    self.rest = &[];
                    rest
                }
            };
            if !trim_end(piece).is_empty() {
                return Some(piece);
            }
        }
        None
    }
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b'\0' | b'\n' | b'\r'] = s {
        s = head;
    }
    s
}

enum Pri<'a> {
    Given(Priority, &'a [u8]),
    Missing,
    Invalid,
}

fn read_pri(input: &[u8]) -> Pri<'_> {
    let Some(after) = input.strip_prefix(b"<") else {
        return Pri::Missing;
    };
    let digits = after
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || after.get(digits) != Some(&b'>') {
        return Pri::Invalid;
    }
    let value = after[..digits]
        .iter()
        .fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    if value > 191 {
        return Pri::Invalid;
    }
    match Priority::from_code(value) {
        Some(p) => Pri::Given(p, &after[digits + 1..]),
        None => Pri::Invalid,
    }
}

/// The word up to the next space and what follows that space (empty at
/// the end). `None` when the word is empty.
fn word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(b' ', s).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    // The rest is sliced from `s` even when empty, so every field the
    // parser returns borrows from the input (the fuzz target checks this).
    Some((&s[..end], &s[(end + 1).min(s.len())..]))
}

fn nil_or(field: &[u8]) -> Option<&[u8]> {
    (field != b"-").then_some(field)
}

fn rfc5424(rest: &[u8]) -> Option<Message<'_>> {
    let rest = rest.strip_prefix(b"1 ")?;
    let (ts, rest) = word(rest)?;
    let timestamp_ns = if ts == b"-" { None } else { Some(rfc3339(ts)?) };
    let (hostname, rest) = word(rest)?;
    let (app_name, rest) = word(rest)?;
    let (procid, rest) = word(rest)?;
    let (msgid, rest) = word(rest)?;
    let (structured_data, msg) = match rest {
        [] => (Vec::new(), rest),
        [b'-'] => (Vec::new(), &rest[1..]),
        [b'-', b' ', msg @ ..] => (Vec::new(), msg),
        [b'[', ..] => match structured_data(rest) {
            Some((sd, [])) => (sd, &rest[rest.len()..]),
            Some((sd, [b' ', msg @ ..])) => (sd, msg),
            _ => (Vec::new(), rest),
        },
        _ => (Vec::new(), rest),
    };
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    Some(Message {
        priority: Priority::DEFAULT,
        pri: PriStatus::Given,
        format: Format::Rfc5424,
        timestamp_ns,
        hostname: nil_or(hostname),
        app_name: nil_or(app_name),
        procid: nil_or(procid),
        msgid: nil_or(msgid),
        structured_data,
        msg,
    })
}

/// SD-ELEMENTs up to the first byte that does not continue them.
fn structured_data(mut s: &[u8]) -> Option<(Vec<SdParam<'_>>, &[u8])> {
    let mut out = Vec::new();
    while let Some(after) = s.strip_prefix(b"[") {
        let (id, mut rest) = sd_name(after)?;
        let mut params = 0;
        loop {
            match rest {
                [b']', tail @ ..] => {
                    if params == 0 {
                        out.push(SdParam {
                            id,
                            name: None,
                            value: Cow::Borrowed(&[]),
                        });
                    }
                    rest = tail;
                    break;
                }
                [b' ', tail @ ..] => {
                    let (name, tail) = sd_name(tail)?;
                    let tail = tail.strip_prefix(b"=\"")?;
                    let (value, tail) = sd_value(tail)?;
                    out.push(SdParam {
                        id,
                        name: Some(name),
                        value,
                    });
                    if out.len() > MAX_SD_PARAMS {
                        return None;
                    }
                    params += 1;
                    rest = tail;
                }
                _ => return None,
            }
        }
        s = rest;
    }
    Some((out, s))
}

/// SD-NAME: 1 to 32 printable ASCII bytes other than `=`, space, `]`, `"`.
fn sd_name(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = s
        .iter()
        .take(33)
        .take_while(|&&b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
        .count();
    if len == 0 || len > 32 {
        return None;
    }
    Some((&s[..len], &s[len..]))
}

/// PARAM-VALUE up to the closing quote; `\"`, `\\` and `\]` lose their
/// backslash, any other backslash stays (RFC 5424 6.3.3).
fn sd_value(s: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let mut owned: Option<Vec<u8>> = None;
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => {
                let value = match owned {
                    None => Cow::Borrowed(&s[..i]),
                    Some(mut v) => {
                        v.extend_from_slice(&s[start..i]);
                        Cow::Owned(v)
                    }
                };
                return Some((value, &s[i + 1..]));
            }
            b'\\' if matches!(s.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let v = owned.get_or_insert_with(Vec::new);
                v.extend_from_slice(&s[start..i]);
                start = i + 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

fn rfc3164<'a>(input: &'a [u8], options: &ParseOptions, received_ns: i64) -> Message<'a> {
    let mut rest = input;
    let mut timestamp_ns = None;
    let mut hostname = None;
    if let Some((ts, after)) = timestamp_3164(input, &options.time_zone, received_ns) {
        timestamp_ns = ts;
        rest = after;
        if let Some((host, after)) = hostname_word(rest) {
            let is_hostname = tag(rest).is_none()
                && match options.hostnames {
                    Hostnames::Expected => true,
                    Hostnames::Local => tag(after).is_some(),
                };
            if is_hostname {
                hostname = Some(host);
                rest = after;
            }
        }
    }
    let (app_name, procid) = match tag(rest) {
        Some(tag) => {
            rest = tag.rest;
            (Some(tag.name), tag.pid)
        }
        None => (None, None),
    };
    Message {
        priority: Priority::DEFAULT,
        pri: PriStatus::Given,
        format: Format::Rfc3164,
        timestamp_ns,
        hostname,
        app_name,
        procid,
        msgid: None,
        structured_data: Vec::new(),
        msg: rest,
    }
}

/// A hostname-like first word followed by a space.
fn hostname_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(b' ', s)?;
    let host = &s[..end];
    let ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    ok.then(|| (host, &s[end + 1..]))
}

/// A tag found at the start of the text after the header.
struct Tag<'a> {
    name: &'a [u8],
    pid: Option<&'a [u8]>,
    /// The message after the colon and one space.
    rest: &'a [u8],
}

/// `TAG:` or `TAG[PID]:` followed by a space or the end.
fn tag(s: &[u8]) -> Option<Tag<'_>> {
    let end = s
        .iter()
        .position(|&b| matches!(b, b':' | b'[' | b' ' | b'\0' | b'\t'))?;
    if end == 0 {
        return None;
    }
    let name = &s[..end];
    let (pid, after) = match s[end] {
        b':' => (None, &s[end + 1..]),
        b'[' => {
            let inner = &s[end + 1..];
            let close = inner
                .iter()
                .position(|&b| matches!(b, b']' | b' ' | b'\0'))?;
            if inner[close] != b']' {
                return None;
            }
            let after = inner[close + 1..].strip_prefix(b":")?;
            (Some(&inner[..close]), after)
        }
        _ => return None,
    };
    let rest = match after {
        [] => after,
        [b' ', msg @ ..] => msg,
        _ => return None,
    };
    Some(Tag { name, pid, rest })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An RFC 3164 timestamp (or an RFC 3339 one in its place) followed by a
/// space or the end. The outer `Option` says whether a timestamp was there
/// at all; the inner one whether it names a real time.
fn timestamp_3164<'a>(
    s: &'a [u8],
    zone: &TimeZone,
    received_ns: i64,
) -> Option<(Option<i64>, &'a [u8])> {
    if s.first().is_some_and(u8::is_ascii_digit) {
        let (ts, rest) = word(s)?;
        return Some((Some(rfc3339(ts)?), rest));
    }
    let month = MONTHS
        .iter()
        .position(|m| s.len() >= 3 && s[..3].eq_ignore_ascii_case(&m[..]))? as i8
        + 1;
    let s = s[3..].strip_prefix(b" ")?;
    let (day, s) = match s {
        [b' ', d, b' ', rest @ ..] if d.is_ascii_digit() => (digit(*d), rest),
        [d1, d2, b' ', rest @ ..] if d1.is_ascii_digit() && d2.is_ascii_digit() => {
            (digit(*d1) * 10 + digit(*d2), rest)
        }
        [d, b' ', rest @ ..] if d.is_ascii_digit() => (digit(*d), rest),
        _ => return None,
    };
    let (hour, minute, second, rest) = match s {
        [h1, h2, b':', m1, m2, b':', s1, s2, rest @ ..] => (
            two_digits(*h1, *h2)?,
            two_digits(*m1, *m2)?,
            two_digits(*s1, *s2)?,
            rest,
        ),
        _ => return None,
    };
    let rest = match rest {
        [] => rest,
        [b' ', rest @ ..] => rest,
        _ => return None,
    };
    let ns = infer_year(month, day, hour, minute, second, zone, received_ns);
    Some((ns, rest))
}

fn digit(b: u8) -> i8 {
    (b - b'0') as i8
}

fn two_digits(a: u8, b: u8) -> Option<i8> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| digit(a) * 10 + digit(b))
}

/// The latest of next year, this year and last year (in `zone`, at the
/// receive time) that puts the local time at most [`MAX_FUTURE`] after
/// the receive time.
fn infer_year(
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    zone: &TimeZone,
    received_ns: i64,
) -> Option<i64> {
    let now = Timestamp::from_nanosecond(i128::from(received_ns)).ok()?;
    let latest = now.checked_add(MAX_FUTURE).ok()?;
    let year = zone.to_datetime(now).year();
    let second = second.min(59);
    for y in [year.checked_add(1)?, year, year.checked_sub(1)?] {
        let Ok(dt) = DateTime::new(y, month, day, hour, minute, second, 0) else {
            continue;
        };
        let Ok(ts) = zone.to_timestamp(dt) else {
            continue;
        };
        if ts <= latest {
            return i64::try_from(ts.as_nanosecond()).ok();
        }
    }
    None
}

/// An RFC 3339 timestamp (`2003-10-11T22:14:15.003Z`,
/// `2026-12-02T05:47:45.147903+00:00`): at most 9 fraction digits, a leap
/// second read as :59, `T` and `Z` in either case.
fn rfc3339(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8]) -> Option<i32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0, |v, &d| v * 10 + i32::from(d - b'0')))
    }
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = num(&s[0..4])? as i16;
    let month = num(&s[5..7])? as i8;
    let day = num(&s[8..10])? as i8;
    let hour = num(&s[11..13])? as i8;
    let minute = num(&s[14..16])? as i8;
    let second = (num(&s[17..19])? as i8).min(59);
    let mut rest = &s[19..];
    let mut nanos = 0i32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let len = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        nanos = num(&frac[..len])? * 10i32.pow(9 - len as u32);
        rest = &frac[len..];
    }
    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = i32::from(two_digits(*h1, *h2)?);
            let m = i32::from(two_digits(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let v = h * 3600 + m * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - i64::from(offset_seconds);
    let ns = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    i64::try_from(ns).ok()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`). Written out because every RFC
/// 5424 message comes here: a general calendar library's validation and
/// conversion took a sixth of a TCP listener's CPU (perf, `sysload tcp`),
/// this is a few integer operations. The unit tests compare it with jiff.
fn days_from_civil(year: i16, month: i8, day: i8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i16, month: i8) -> i8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests;
