//! Fuzzes the syslog message parser and the datagram splitter.
//!
//! Input layout: byte 0 picks the hostname rule (low bit) and the zone
//! (bit 1: UTC or a POSIX zone with DST), bytes 1..9 the receive time
//! (little-endian i64 nanoseconds); the rest is one datagram.
//!
//! Checked: no panic; every field borrows from the piece it was parsed
//! from; a bare message is the whole (trimmed) piece; the SD cap holds.
#![no_main]

use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;
use ringtail::sources::syslog::parse::{
    parse, split_datagram, Format, Hostnames, ParseOptions, MAX_SD_PARAMS,
};

fn inside(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let options = ParseOptions {
        hostnames: if data[0] & 1 == 0 {
            Hostnames::Local
        } else {
            Hostnames::Expected
        },
        time_zone: if data[0] & 2 == 0 {
            TimeZone::UTC
        } else {
            TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
        },
    };
    let received_ns = i64::from_le_bytes(data[1..9].try_into().unwrap());
    let datagram = &data[9..];
    for piece in split_datagram(datagram) {
        assert!(inside(piece, datagram));
        let m = parse(piece, &options, received_ns);
        for field in [m.hostname, m.app_name, m.procid, m.msgid]
            .into_iter()
            .flatten()
        {
            assert!(inside(field, piece));
        }
        assert!(inside(m.msg, piece));
        assert!(m.structured_data.len() <= MAX_SD_PARAMS);
        for p in &m.structured_data {
            assert!(inside(p.id, piece));
            assert!(p.value.len() <= piece.len());
        }
        if m.format == Format::Bare {
            assert_eq!(m.msg.as_ptr(), piece.as_ptr());
        }
        assert!(m.priority.code() <= 191);
    }
});
