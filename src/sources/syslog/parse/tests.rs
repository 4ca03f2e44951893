//! Fixtures under tests/fixtures/syslog/ are bytes captured from real
//! clients on the build machine by tests/fixtures/syslog/capture.py (see
//! its doc and the README there); they were sent on 2026-12-02 around
//! 05:47:45 UTC, on a host named `vm` whose zone is UTC.

use super::*;
use crate::sources::syslog::{Facility, Severity};

/// The bytes of one fixture, kept for the whole test run.
fn fixture(name: &str) -> &'static [u8] {
    let path = format!(
        "{}/tests/fixtures/syslog/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Box::leak(bytes.into_boxed_slice())
}

fn ns(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_nanosecond() as i64
}

/// The capture's receive time.
fn captured_at() -> i64 {
    ns("2026-12-02T05:47:46Z")
}

fn local() -> ParseOptions {
    ParseOptions {
        hostnames: Hostnames::Local,
        time_zone: TimeZone::UTC,
    }
}

fn network() -> ParseOptions {
    ParseOptions {
        hostnames: Hostnames::Expected,
        time_zone: TimeZone::UTC,
    }
}

fn pri(code: u32) -> Priority {
    Priority::from_code(code).unwrap()
}

/// hostname, app name, procid, msgid, msg.
type Fields<'a> = (
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    &'a [u8],
);

/// The fields that tell forms apart, for compact assertions.
fn fields<'a>(m: &Message<'a>) -> Fields<'a> {
    (m.hostname, m.app_name, m.procid, m.msgid, m.msg)
}

#[test]
fn glibc_syslog_with_pid() {
    let raw = fixture("glibc_syslog_pid");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.format, Format::Rfc3164);
    assert_eq!(m.pri, PriStatus::Given);
    assert_eq!(m.priority, pri(27));
    assert_eq!(m.priority.facility.name(), Some("daemon"));
    assert_eq!(m.priority.severity.level_name(), "error");
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-02T05:47:46Z")));
    let (host, app, pid, msgid, msg) = fields(&m);
    assert_eq!(host, None);
    assert_eq!(app, Some(&b"glibcapp"[..]));
    assert!(pid.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit)));
    assert_eq!(msgid, None);
    assert_eq!(msg, b"glibc with pid");
}

#[test]
fn glibc_syslog_without_pid_is_not_a_hostname() {
    // syslog_loose reads this form as hostname "glibcapp": the reason the
    // crate is not used.
    let raw = fixture("glibc_syslog_nopid");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.priority, pri(191));
    assert_eq!(m.priority.facility.name(), Some("local7"));
    assert_eq!(m.priority.severity, Severity::DEBUG);
    assert_eq!(
        fields(&m),
        (
            None,
            Some(&b"glibcapp"[..]),
            None,
            None,
            &b"glibc without pid"[..]
        )
    );
    // The same bytes from the network: `glibcapp:` is still the tag.
    let m = parse(raw, &network(), captured_at());
    assert_eq!(m.hostname, None);
    assert_eq!(m.app_name, Some(&b"glibcapp"[..]));
}

#[test]
fn busybox_logger() {
    let m = parse(fixture("busybox_logger_default"), &local(), captured_at());
    assert_eq!(m.priority, pri(13));
    assert_eq!(
        fields(&m),
        (
            None,
            Some(&b"root"[..]),
            None,
            None,
            &b"busybox default tag"[..]
        )
    );
    let raw = fixture("busybox_logger_tag");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.priority.facility.name(), Some("local0"));
    assert_eq!(m.priority.severity.level_name(), "warning");
    assert_eq!(
        fields(&m),
        (
            None,
            Some(&b"bbtag"[..]),
            None,
            None,
            &b"busybox tagged"[..]
        )
    );
}

#[test]
fn util_linux_logger_on_local_sockets() {
    for name in ["logger_devlog", "logger_unix_default"] {
        let raw = fixture(name);
        let m = parse(raw, &local(), captured_at());
        assert_eq!(m.priority, pri(13), "{name}");
        assert_eq!(m.hostname, None, "{name}");
        assert_eq!(m.app_name, Some(&b"myapp"[..]), "{name}");
        assert!(m.timestamp_ns.is_some(), "{name}");
    }
    // `--rfc3164 -i` to a unix socket does send a hostname.
    let raw = fixture("logger_unix_rfc3164");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.priority.facility.name(), Some("local3"));
    assert_eq!(m.priority.severity.level_name(), "error");
    let (host, app, pid, _, msg) = fields(&m);
    assert_eq!(host, Some(&b"vm"[..]));
    assert_eq!(app, Some(&b"myapp"[..]));
    assert!(pid.is_some());
    assert_eq!(msg, b"rfc3164 over unix");
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-02T05:47:45Z")));
}

#[test]
fn non_utf8_bytes_are_kept() {
    let raw = fixture("logger_unix_non_utf8");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.app_name, Some(&b"bin"[..]));
    assert_eq!(m.msg, b"caf\xe9 \xff\xfe end");
}

#[test]
fn rfc5424_with_structured_data_and_escapes() {
    let raw = fixture("logger_unix_rfc5424_sd");
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.format, Format::Rfc5424);
    assert_eq!(m.priority.facility.name(), Some("daemon"));
    assert_eq!(m.priority.severity, Severity::WARNING);
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-02T05:47:45.147903Z")));
    assert_eq!(
        fields(&m),
        (
            Some(&b"vm"[..]),
            Some(&b"myapp"[..]),
            None,
            Some(&b"M1"[..]),
            &b"rfc5424 with sd"[..]
        )
    );
    type Row<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);
    let sd: Vec<Row> = m
        .structured_data
        .iter()
        .map(|p| (p.id, p.name, &p.value[..]))
        .collect();
    assert_eq!(
        sd,
        vec![
            (&b"timeQuality"[..], Some(&b"tzKnown"[..]), &b"1"[..]),
            (b"timeQuality", Some(b"isSynced"), b"0"),
            (b"meta@32473", Some(b"a"), b"b\"c"),
            (b"meta@32473", Some(b"path"), b"x\\y]z"),
        ]
    );
    assert!(matches!(m.structured_data[0].value, Cow::Borrowed(_)));
    assert!(matches!(m.structured_data[2].value, Cow::Owned(_)));
}

#[test]
fn rfc5424_from_udp_and_tcp() {
    let m = parse(
        fixture("logger_udp_rfc5424_msgid"),
        &network(),
        captured_at(),
    );
    assert_eq!(m.priority.facility.name(), Some("auth"));
    assert_eq!(m.priority.severity, Severity::CRIT);
    assert_eq!(m.msgid, Some(&b"ID47"[..]));
    assert_eq!(m.msg, b"with msgid");
    let m = parse(fixture("logger_udp_default"), &network(), captured_at());
    assert_eq!(m.format, Format::Rfc5424);
    assert_eq!(m.msg, b"hello over udp");
}

#[test]
fn rfc3164_from_the_network_has_a_hostname() {
    let m = parse(fixture("logger_udp_rfc3164"), &network(), captured_at());
    assert_eq!(
        fields(&m),
        (
            Some(&b"vm"[..]),
            Some(&b"myapp"[..]),
            None,
            None,
            &b"rfc3164 over udp"[..]
        )
    );
}

#[test]
fn python_handlers() {
    let m = parse(fixture("python_handler_unix"), &local(), captured_at());
    assert_eq!(m.priority.facility.name(), Some("local0"));
    assert_eq!(m.priority.severity, Severity::WARNING);
    assert_eq!(m.timestamp_ns, None);
    let (host, app, pid, _, msg) = fields(&m);
    assert_eq!((host, app), (None, Some(&b"pyapp"[..])));
    assert!(pid.is_some());
    assert_eq!(msg, b"python unix handler", "the trailing NUL is removed");

    // The default formatter writes no tag; "python" is not a hostname
    // either, as there is no timestamp.
    let m = parse(fixture("python_handler_udp"), &network(), captured_at());
    assert_eq!(m.priority, pri(11));
    assert_eq!(
        fields(&m),
        (None, None, None, None, &b"python udp handler"[..])
    );
}

#[test]
fn missing_and_invalid_pri() {
    let m = parse(b"app: hello", &local(), 0);
    assert_eq!(m.pri, PriStatus::Missing);
    assert_eq!(m.priority, Priority::DEFAULT);
    assert_eq!(m.format, Format::Rfc3164);
    assert_eq!(m.app_name, Some(&b"app"[..]));

    for bad in [
        &b"<999>hello"[..],
        b"<192>hello",
        b"<>hello",
        b"<1234>hello",
        b"<html>hi",
        b"<13",
    ] {
        let m = parse(bad, &local(), 0);
        assert_eq!(m.pri, PriStatus::Invalid, "{bad:?}");
        assert_eq!(m.format, Format::Bare, "{bad:?}");
        assert_eq!(m.priority, Priority::DEFAULT);
        assert_eq!(m.msg, bad, "the whole input is the message");
    }
    let m = parse(b"<0>x", &local(), 0);
    assert_eq!(m.priority.facility, Facility::KERN);
    assert_eq!(m.priority.severity, Severity::EMERG);
    assert_eq!(parse(b"<191>x", &local(), 0).priority, pri(191));
    assert_eq!(parse(b"<013>x", &local(), 0).priority, pri(13));
}

#[test]
fn trailing_nul_lf_cr_are_removed() {
    let m = parse(b"<13>app: hi\r\n\0\0", &local(), 0);
    assert_eq!(m.msg, b"hi");
    let m = parse(b"<13>app: \0", &local(), 0);
    assert_eq!(m.msg, b"");
    assert_eq!(parse(b"\0\n", &local(), 0).msg, b"");
}

#[test]
fn a_nul_in_the_tag_leaves_it_in_the_message() {
    let raw = b"<13>Dec  2 05:47:46 my\0app[1]: hi";
    let m = parse(raw, &local(), captured_at());
    assert_eq!(m.app_name, None);
    assert_eq!(m.msg, b"my\0app[1]: hi");
}

#[test]
fn tags_need_a_colon_and_a_space() {
    let m = parse(b"<13>http://example.com/ is down", &local(), 0);
    assert_eq!(m.app_name, None);
    assert_eq!(m.msg, b"http://example.com/ is down");
    let m = parse(b"<13>app[12]:", &local(), 0);
    assert_eq!(
        (m.app_name, m.procid, m.msg),
        (Some(&b"app"[..]), Some(&b"12"[..]), &b""[..])
    );
    let m = parse(b"<13>app:  indented", &local(), 0);
    assert_eq!(m.msg, b" indented", "one space is removed, the rest kept");
    let m = parse(b"<13>app[12 x]: y", &local(), 0);
    assert_eq!(m.app_name, None);
}

#[test]
fn local_sockets_take_a_hostname_only_before_a_tag() {
    let t = captured_at();
    let m = parse(b"<13>Dec  2 05:47:46 host app: msg", &local(), t);
    assert_eq!(
        fields(&m),
        (
            Some(&b"host"[..]),
            Some(&b"app"[..]),
            None,
            None,
            &b"msg"[..]
        )
    );
    let m = parse(b"<13>Dec  2 05:47:46 just some words", &local(), t);
    assert_eq!(
        fields(&m),
        (None, None, None, None, &b"just some words"[..])
    );
    let m = parse(b"<13>Dec  2 05:47:46 just some words", &network(), t);
    assert_eq!(
        fields(&m),
        (Some(&b"just"[..]), None, None, None, &b"some words"[..])
    );
    // A word that is not hostname-like is never a hostname.
    let m = parse(b"<13>Dec  2 05:47:46 h\xffst app: msg", &network(), t);
    assert_eq!(m.hostname, None);
}

#[test]
fn rfc3164_year_inference() {
    let opts = network();
    let raw = b"<13>Dec 31 23:59:58 h app: x";
    // Read in January: last year.
    let m = parse(raw, &opts, ns("2027-01-01T00:00:03Z"));
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-31T23:59:58Z")));
    // Read in December: this year.
    let m = parse(raw, &opts, ns("2026-12-31T23:59:59Z"));
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-31T23:59:58Z")));
    // A January stamp read a few seconds before New Year: next year.
    let m = parse(
        b"<13>Jan  1 00:00:02 h app: x",
        &opts,
        ns("2026-12-31T23:59:59Z"),
    );
    assert_eq!(m.timestamp_ns, Some(ns("2027-01-01T00:00:02Z")));
    // March read in November: this year, not next.
    let m = parse(
        b"<13>Mar  5 10:00:00 h app: x",
        &opts,
        ns("2026-11-20T00:00:00Z"),
    );
    assert_eq!(m.timestamp_ns, Some(ns("2026-03-05T10:00:00Z")));
    // Feb 29 exists in 2028 only.
    let m = parse(
        b"<13>Feb 29 10:00:00 h app: x",
        &opts,
        ns("2028-03-01T00:00:00Z"),
    );
    assert_eq!(m.timestamp_ns, Some(ns("2028-02-29T10:00:00Z")));
    let m = parse(
        b"<13>Feb 29 10:00:00 h app: x",
        &opts,
        ns("2026-03-01T00:00:00Z"),
    );
    assert_eq!(m.timestamp_ns, None);
    assert_eq!(m.app_name, Some(&b"app"[..]), "the header is still read");
    // One-digit days with one space, and no leading zero.
    let m = parse(b"<13>Dec 2 05:47:46 app: x", &local(), captured_at());
    assert_eq!(m.timestamp_ns, Some(ns("2026-12-02T05:47:46Z")));
}

#[test]
fn rfc3164_time_zone_of_the_listener() {
    // Central European time with its DST rules, as a POSIX TZ string so
    // the test does not depend on the tz database being installed.
    let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    let opts = ParseOptions {
        hostnames: Hostnames::Expected,
        time_zone: berlin,
    };
    let m = parse(
        b"<13>Jul  1 12:00:00 h a: x",
        &opts,
        ns("2026-07-01T11:00:00Z"),
    );
    assert_eq!(
        m.timestamp_ns,
        Some(ns("2026-07-01T10:00:00Z")),
        "CEST is +2"
    );
    let m = parse(
        b"<13>Jan 15 12:00:00 h a: x",
        &opts,
        ns("2026-01-15T11:00:00Z"),
    );
    assert_eq!(
        m.timestamp_ns,
        Some(ns("2026-01-15T11:00:00Z")),
        "CET is +1"
    );
    // 02:30 on the spring-forward day does not exist: compatible
    // disambiguation takes the offset before the gap (+1).
    let m = parse(
        b"<13>Mar 29 02:30:00 h a: x",
        &opts,
        ns("2026-03-29T12:00:00Z"),
    );
    assert_eq!(m.timestamp_ns, Some(ns("2026-03-29T01:30:00Z")));
    // RFC 3339 timestamps carry their own offset; the zone is not used.
    let m = parse(
        b"<13>2026-07-01T12:00:00.5+05:30 h a: x",
        &opts,
        ns("2026-07-01T11:00:00Z"),
    );
    assert_eq!(m.timestamp_ns, Some(ns("2026-07-01T06:30:00.5Z")));
    assert_eq!(m.hostname, Some(&b"h"[..]));
}

#[test]
fn rfc5424_edge_cases() {
    let t = 0;
    // All nil.
    let m = parse(b"<14>1 - - - - - -", &network(), t);
    assert_eq!(m.format, Format::Rfc5424);
    assert_eq!(fields(&m), (None, None, None, None, &b""[..]));
    assert_eq!(m.timestamp_ns, None);
    // BOM removed, only at the start.
    let m = parse(
        b"<14>1 - h a p m - \xEF\xBB\xBFhi \xEF\xBB\xBF",
        &network(),
        t,
    );
    assert_eq!(m.msg, b"hi \xEF\xBB\xBF");
    // An element without parameters, then one with.
    let m = parse(b"<14>1 - h a p m [x@1][y k=\"\"] msg", &network(), t);
    assert_eq!(
        m.structured_data,
        vec![
            SdParam {
                id: b"x@1",
                name: None,
                value: Cow::Borrowed(b"")
            },
            SdParam {
                id: b"y",
                name: Some(b"k"),
                value: Cow::Borrowed(b"")
            },
        ]
    );
    assert_eq!(m.msg, b"msg");
    // Malformed SD stays in MSG.
    for raw in [
        &b"<14>1 - h a p m [x k=\"v] msg"[..],
        b"<14>1 - h a p m [x k=v] msg",
        b"<14>1 - h a p m [] msg",
        b"<14>1 - h a p m [x k=\"v\"]msg",
    ] {
        let m = parse(raw, &network(), t);
        assert_eq!(m.format, Format::Rfc5424);
        assert!(m.structured_data.is_empty(), "{raw:?}");
        assert!(m.msg.starts_with(b"["), "{raw:?}");
    }
    // An unknown backslash escape keeps its backslash.
    let m = parse(b"<14>1 - h a p m [x k=\"a\\nb\"]", &network(), t);
    assert_eq!(&m.structured_data[0].value[..], b"a\\nb");
    // Too many parameters: the SD stays in MSG.
    let mut raw = b"<14>1 - h a p m [x".to_vec();
    for i in 0..=MAX_SD_PARAMS {
        raw.extend_from_slice(format!(" k{i}=\"v\"").as_bytes());
    }
    raw.extend_from_slice(b"] m");
    let m = parse(&raw, &network(), t);
    assert!(m.structured_data.is_empty());
    // A bad header falls back to RFC 3164.
    let m = parse(b"<13>1 apple pie", &network(), t);
    assert_eq!(m.format, Format::Rfc3164);
    assert_eq!(m.msg, b"1 apple pie");
    let m = parse(b"<13>1 2026-02-30T00:00:00Z h a p m - x", &network(), t);
    assert_eq!(m.format, Format::Rfc3164, "Feb 30 is no date");
    let m = parse(b"<13>1 2026-02-03T00:00:00Z h a", &network(), t);
    assert_eq!(m.format, Format::Rfc3164, "fields missing");
}

#[test]
fn the_calendar_arithmetic_agrees_with_jiff() {
    // Every day of 1600..2400 (leap rules of 100 and 400 included) and
    // every offset form, against jiff's conversion.
    let mut date = jiff::civil::date(1700, 1, 1);
    let end = jiff::civil::date(2260, 12, 31);
    while date <= end {
        let text = format!("{date}T13:45:07.5+05:30");
        let want = text.parse::<Timestamp>().unwrap().as_nanosecond() as i64;
        assert_eq!(rfc3339(text.as_bytes()), Some(want), "{text}");
        date = date.tomorrow().unwrap();
    }
    for bad in [
        "2023-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2023-04-31T00:00:00Z",
    ] {
        assert_eq!(rfc3339(bad.as_bytes()), None, "{bad}");
    }
    assert!(rfc3339(b"2000-02-29T00:00:00Z").is_some());
    // Outside what i64 nanoseconds hold (1677..2262): no timestamp.
    assert_eq!(rfc3339(b"1500-01-01T00:00:00Z"), None);
    assert_eq!(rfc3339(b"2300-01-01T00:00:00Z"), None);
}

#[test]
fn rfc3339_timestamps() {
    assert_eq!(
        rfc3339(b"2003-10-11T22:14:15.003Z"),
        Some(ns("2003-10-11T22:14:15.003Z"))
    );
    assert_eq!(
        rfc3339(b"2003-08-24T05:14:15.000003-07:00"),
        Some(ns("2003-08-24T12:14:15.000003Z"))
    );
    assert_eq!(
        rfc3339(b"2003-08-24t05:14:15z"),
        Some(ns("2003-08-24T05:14:15Z"))
    );
    assert_eq!(
        rfc3339(b"2016-12-31T23:59:60Z"),
        Some(ns("2016-12-31T23:59:59Z"))
    );
    assert_eq!(
        rfc3339(b"2003-08-24T05:14:15.123456789Z"),
        Some(ns("2003-08-24T05:14:15.123456789Z"))
    );
    for bad in [
        &b"2003-08-24T05:14:15.1234567890Z"[..],
        b"2003-08-24T05:14:15",
        b"2003-08-24T05:14:15.Z",
        b"2003-08-24 05:14:15Z",
        b"2003-13-24T05:14:15Z",
        b"2003-08-24T05:14:15+24:00",
        b"2003-08-24T25:14:15Z",
        b"+003-08-24T05:14:15Z",
    ] {
        assert_eq!(rfc3339(bad), None, "{bad:?}");
    }
}

#[test]
fn split_datagram_cuts_before_each_pri() {
    let d = b"<13>a: one\0<14>b: two\0\0<15>c: three\0";
    let pieces: Vec<&[u8]> = split_datagram(d).collect();
    assert_eq!(
        pieces,
        vec![&b"<13>a: one"[..], b"<14>b: two\0", b"<15>c: three\0"]
    );
    // A NUL not followed by '<' stays inside the message.
    let pieces: Vec<&[u8]> = split_datagram(b"<13>a: x\0y").collect();
    assert_eq!(pieces, vec![&b"<13>a: x\0y"[..]]);
    assert_eq!(split_datagram(b"\0\0\n").count(), 0);
    assert_eq!(split_datagram(b"").count(), 0);
    let pieces: Vec<&[u8]> = split_datagram(b"\0<13>x").collect();
    assert_eq!(pieces, vec![&b"<13>x"[..]]);
}

#[test]
fn garbage_is_a_bare_or_plain_message() {
    let garbage: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    for piece in split_datagram(&garbage) {
        let m = parse(piece, &local(), captured_at());
        assert!(m.msg.len() <= piece.len());
    }
}

/// Found by the `syslog_parse` fuzz target: an RFC 5424 header that ends
/// right after a field gave an empty message that borrowed from nowhere,
/// so a message's bytes were no longer known to lie inside the datagram.
#[test]
fn every_field_borrows_from_the_input_even_when_empty() {
    for input in [
        &b"<13>1 - host app 1 id"[..],
        b"<13>1 - host app 1 id ",
        b"<13>1 - - - - -",
        b"<13>Dec  2 05:47:46 app:",
    ] {
        let m = parse(input, &local(), captured_at());
        let range = input.as_ptr_range();
        assert!(
            range.contains(&m.msg.as_ptr()) || m.msg.as_ptr() == range.end,
            "{:?}: msg {:?} does not borrow from the input",
            String::from_utf8_lossy(input),
            m.msg
        );
        assert!(m.msg.is_empty());
    }
}
