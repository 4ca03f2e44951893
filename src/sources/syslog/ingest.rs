//! From one received syslog message to one ring entry: what every syslog
//! listener (`/dev/log`, UDP, TCP) does with a message once it has its
//! bytes.
//!
//! An entry gets (issue 13, section 2):
//! - **source name**: the app name or tag, `syslog` when there is none;
//! - **labels** (its origin): `facility` and `severity` (syslog's names),
//!   `hostname` (the message's; for network messages without one, the
//!   peer's address), `procid`, `msgid`, `sd.<id>.<param>` for RFC 5424
//!   structured data, `peer` (the sender's address) on network listeners,
//!   and `pid`, `uid`, `gid` from the kernel (`SO_PASSCRED`) on a unix
//!   socket: labels the message itself can never set;
//! - **level** (ringtail's level names, in the entry's flags, so that
//!   `level="error"` and Grafana's colouring work) from the severity;
//! - **time**: the receive time; the message's own timestamp is kept with
//!   the entry as [`SourceTime::Kept`], so a reader sees both.
//!
//! Label values are the message's bytes with NUL and invalid UTF-8
//! escaped as `\xNN` and cut at [`MAX_LABEL_VALUE`]; label keys made from
//! structured data have every byte that a label key cannot hold replaced
//! by `_` (`meta@32473` becomes `sd.meta_32473.<param>`).
//!
//! Interning an origin costs a hash of its labels and a lock; messages of
//! one sender repeat their labels, so each [`Ingest`] keeps the handles it
//! made in a small cache keyed by the raw label bytes (cleared when full,
//! so it holds at most [`CACHE_MAX`] handles, and handles it dropped can be
//! reclaimed by the ring). When labels do not fit in an origin slot, or the
//! origin table is full, the message is still stored, under its source
//! name with the trusted labels only, and the problem is a throttled
//! notice.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::creds::Credentials;
use super::parse::{self, Message, ParseOptions};
use super::ratelimit::{RateLimiter, Report, Verdict};
use crate::entry::{Flags, Level, Origin, SourceTime};
use crate::ring::{OriginHandle, MAX_SOURCE_LEN};
use crate::sources::pipeline::Batch;
use crate::sources::Pipeline;

/// The longest label value kept (a hostname, an SD value).
pub const MAX_LABEL_VALUE: usize = 256;

/// The most origin handles one [`Ingest`] keeps.
pub const CACHE_MAX: usize = 1024;

/// The source name of a message without app name or tag.
pub const DEFAULT_SOURCE: &str = "syslog";

/// syslog's severity keywords, by number (what rsyslog's `%syslogseverity-text%`
/// and `logger -p` say).
const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Who sent a message: the key of the per-sender rate limit and the
/// source of the trusted labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sender {
    /// A local socket; the kernel's credentials when `SO_PASSCRED` gave
    /// them.
    Local(Option<Credentials>),
    /// A network peer.
    Peer(IpAddr),
}

impl Sender {
    /// The rate limit's key: the pid on a local socket (as journald), the
    /// address on the network.
    fn key(self) -> SenderKey {
        match self {
            Sender::Local(c) => SenderKey::Pid(c.map_or(0, |c| c.pid)),
            Sender::Peer(ip) => SenderKey::Peer(ip),
        }
    }
}

/// The key the per-sender rate limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SenderKey {
    Pid(i32),
    Peer(IpAddr),
}

impl std::fmt::Display for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderKey::Pid(0) => write!(f, "senders without credentials"),
            SenderKey::Pid(p) => write!(f, "pid {p}"),
            SenderKey::Peer(ip) => write!(f, "{ip}"),
        }
    }
}

/// What one listener shares between its connections.
pub struct ListenerState {
    /// For messages: "syslog socket /dev/log", "syslog TCP 0.0.0.0:514".
    pub what: String,
    pub parse: ParseOptions,
    /// The per-sender rate limit, when configured (shared by a TCP
    /// listener's connections).
    pub limiter: Option<std::sync::Mutex<RateLimiter<SenderKey>>>,
    /// The zero of the rate limiter's clock (monotonic).
    pub epoch: Instant,
}

impl ListenerState {
    /// Nanoseconds on the rate limiter's monotonic clock.
    pub fn now_mono_ns(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Stores one "suppressed N messages" self-log entry per sender whose
    /// window has ended. Call it about once a second.
    pub fn report_suppressed(&self, pipeline: &Pipeline) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let now = self.now_mono_ns();
        let mut lines = Vec::new();
        limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_reports(now, |r| {
                lines.push(match r {
                    Report::Sender(k, n) => format!(
                        "suppressed {n} messages from {k} on the {} (rate limit per sender)",
                        self.what
                    ),
                    Report::Evicted(n) => format!(
                        "suppressed {n} messages from senders no longer tracked on the {} \
                         (rate limit per sender)",
                        self.what
                    ),
                })
            });
        for line in lines {
            pipeline.selflog().warn(line);
        }
    }
}

/// What an [`Ingest`] has counted, for notices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub messages: u64,
    pub suppressed: u64,
}

/// Turns messages into entries and stores them in batches, one run of one
/// origin at a time. One per receive loop or connection.
pub struct Ingest {
    pipeline: Pipeline,
    cache: HashMap<Vec<u8>, OriginHandle>,
    key: Vec<u8>,
    /// The key of the previous message and its handle (`None` when that
    /// message got no origin).
    last_key: Vec<u8>,
    last: Option<OriginHandle>,
    current: Option<OriginHandle>,
    batch: Batch,
    pub stats: IngestStats,
}

impl Ingest {
    pub fn new(pipeline: Pipeline) -> Ingest {
        let batch = pipeline.batch();
        Ingest {
            pipeline,
            cache: HashMap::new(),
            key: Vec::new(),
            last_key: Vec::new(),
            last: None,
            current: None,
            batch,
            stats: IngestStats::default(),
        }
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// One datagram of a local socket: one or more messages, separated by
    /// NUL (busybox, some libcs).
    /// `truncated`: the datagram was cut by the receive buffer; its last
    /// message is flagged so.
    pub fn datagram(
        &mut self,
        state: &ListenerState,
        bytes: &[u8],
        sender: Sender,
        now_ns: i64,
        truncated: bool,
    ) {
        let mut pieces = parse::split_datagram(bytes).peekable();
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            let flags = Flags::default().with_truncated(truncated && last);
            self.message(state, piece, sender, now_ns, flags);
        }
    }

    /// One message. `now_ns` is the wall clock (for the year of an RFC 3164
    /// timestamp); `flags` are added to the entry's (`truncated` for a cut
    /// datagram).
    pub fn message(
        &mut self,
        state: &ListenerState,
        bytes: &[u8],
        sender: Sender,
        now_ns: i64,
        flags: Flags,
    ) {
        let m = parse::parse(bytes, &state.parse, now_ns);
        if let Some(limiter) = &state.limiter {
            let now = state.now_mono_ns();
            let verdict = limiter.lock().unwrap_or_else(|e| e.into_inner()).check(
                &sender.key(),
                m.priority.severity,
                now,
            );
            if verdict == Verdict::Suppress {
                self.stats.suppressed += 1;
                return;
            }
        }
        self.stats.messages += 1;
        let Some(origin) = self.origin(&m, sender) else {
            return;
        };
        if self.current.as_ref().is_some_and(|c| c.id() != origin.id()) {
            self.flush();
        }
        if self.current.is_none() {
            self.current = Some(origin);
        }
        let level = Level::from_severity(m.priority.severity.code());
        let source_time = match m.timestamp_ns.and_then(|t| u64::try_from(t).ok()) {
            Some(t) => SourceTime::Kept(t),
            None => SourceTime::None,
        };
        self.batch.push(m.msg, flags.with_level(level), source_time);
    }

    /// Stores what is batched.
    pub fn flush(&mut self) {
        if let Some(origin) = self.current.take() {
            if !self.batch.is_empty() {
                self.pipeline.store_batch(&origin, None, &mut self.batch);
            }
        }
        self.batch.clear();
    }

    /// The origin of a message, from the cache or interned.
    fn origin(&mut self, m: &Message<'_>, sender: Sender) -> Option<OriginHandle> {
        // Runs of one sender are the common case: comparing with the last
        // key is cheaper than hashing it (SipHash, kept because the keys
        // are senders' bytes and a weak hash could be flooded).
        std::mem::swap(&mut self.key, &mut self.last_key);
        self.key.clear();
        cache_key(&mut self.key, m, sender);
        if self.key == self.last_key {
            if let Some(h) = &self.last {
                return Some(h.clone());
            }
        }
        if let Some(h) = self.cache.get(&self.key[..]) {
            self.last = Some(h.clone());
            return Some(h.clone());
        }
        self.last = None;
        let origin = build_origin(m, sender);
        let handle = match self.pipeline.origin(origin.clone()) {
            Ok(h) => h,
            Err(e) => {
                // Keep the message under its name and trusted labels.
                let pipeline = &self.pipeline;
                pipeline.notice(Level::Warning, || {
                    format!(
                        "a syslog message from {} is stored without its labels: {e}",
                        describe(sender)
                    )
                });
                let mut plain = Origin::new(origin.source.clone());
                trusted_labels(&mut plain, sender);
                match pipeline.origin(plain) {
                    Ok(h) => h,
                    Err(e) => {
                        pipeline.notice(Level::Error, || {
                            format!("dropped a syslog message from {}: {e}", describe(sender))
                        });
                        return None;
                    }
                }
            }
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(self.key.clone(), handle.clone());
        self.last = Some(handle.clone());
        Some(handle)
    }

    /// Drops the cached origins (an idle connection holds none, so the
    /// ring can reclaim them).
    pub fn release_idle(&mut self) {
        self.flush();
        self.cache = HashMap::new();
        self.key = Vec::new();
        self.last_key = Vec::new();
        self.last = None;
    }
}

fn describe(sender: Sender) -> String {
    match sender {
        Sender::Local(Some(c)) => format!("pid {} (uid {})", c.pid, c.uid),
        Sender::Local(None) => "a local sender".into(),
        Sender::Peer(ip) => ip.to_string(),
    }
}

/// Everything the origin depends on, length-prefixed so that no two
/// different origins share a key.
fn cache_key(key: &mut Vec<u8>, m: &Message<'_>, sender: Sender) {
    let mut field = |b: Option<&[u8]>| match b {
        Some(b) => {
            key.extend_from_slice(&(b.len() as u32).to_le_bytes());
            key.extend_from_slice(b);
        }
        None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
    };
    field(m.app_name);
    field(m.hostname);
    field(m.procid);
    field(m.msgid);
    for p in &m.structured_data {
        field(Some(p.id));
        field(p.name);
        field(Some(&p.value));
    }
    key.extend_from_slice(&m.priority.code().to_le_bytes());
    match sender {
        Sender::Local(None) => key.push(0),
        Sender::Local(Some(c)) => {
            key.push(1);
            key.extend_from_slice(&c.pid.to_le_bytes());
            key.extend_from_slice(&c.uid.to_le_bytes());
            key.extend_from_slice(&c.gid.to_le_bytes());
        }
        Sender::Peer(IpAddr::V4(ip)) => {
            key.push(2);
            key.extend_from_slice(&ip.octets());
        }
        Sender::Peer(IpAddr::V6(ip)) => {
            key.push(3);
            key.extend_from_slice(&ip.octets());
        }
    }
}

fn value(b: &[u8]) -> String {
    Origin::source_from_bytes(b, MAX_LABEL_VALUE)
}

/// The labels the kernel vouches for (pid, uid, gid) or the peer address.
fn trusted_labels(o: &mut Origin, sender: Sender) {
    match sender {
        Sender::Local(Some(c)) => {
            o.set_label("pid", c.pid.to_string());
            o.set_label("uid", c.uid.to_string());
            o.set_label("gid", c.gid.to_string());
        }
        Sender::Local(None) => {}
        Sender::Peer(ip) => o.set_label("peer", ip.to_string()),
    }
}

/// A label key from structured data: bytes a key cannot hold become `_`.
fn sd_key(id: &[u8], name: Option<&[u8]>) -> String {
    let clean = |b: &[u8]| -> String {
        b.iter()
            .map(|&c| match c {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => c as char,
                _ => '_',
            })
            .collect()
    };
    match name {
        Some(n) => format!("sd.{}.{}", clean(id), clean(n)),
        None => format!("sd.{}", clean(id)),
    }
}

/// The origin of a message (see the module docs).
pub fn build_origin(m: &Message<'_>, sender: Sender) -> Origin {
    let source = match m.app_name {
        Some(app) if !app.is_empty() => Origin::source_from_bytes(app, MAX_SOURCE_LEN),
        _ => DEFAULT_SOURCE.to_string(),
    };
    let mut o = Origin::new(source);
    match m.priority.facility.name() {
        Some(name) => o.set_label("facility", name),
        None => o.set_label("facility", m.priority.facility.code().to_string()),
    }
    o.set_label(
        "severity",
        SEVERITY_NAMES[usize::from(m.priority.severity.code() & 7)],
    );
    match (m.hostname, sender) {
        (Some(h), _) => o.set_label("hostname", value(h)),
        (None, Sender::Peer(ip)) => o.set_label("hostname", ip.to_string()),
        (None, Sender::Local(_)) => {}
    }
    if let Some(p) = m.procid {
        o.set_label("procid", value(p));
    }
    if let Some(id) = m.msgid {
        o.set_label("msgid", value(id));
    }
    for p in &m.structured_data {
        o.set_label(sd_key(p.id, p.name), value(&p.value));
    }
    trusted_labels(&mut o, sender);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::syslog::parse::Hostnames;

    fn opts(hostnames: Hostnames) -> ParseOptions {
        ParseOptions {
            hostnames,
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    #[test]
    fn labels_of_an_rfc5424_network_message() {
        let raw = br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event"#;
        let m = parse::parse(raw, &opts(Hostnames::Expected), 0);
        let o = build_origin(&m, Sender::Peer("10.0.0.7".parse().unwrap()));
        assert_eq!(o.source, "evntslog");
        assert_eq!(o.label("facility"), Some("local4"));
        assert_eq!(o.label("severity"), Some("notice"));
        assert_eq!(o.label("hostname"), Some("mymachine.example.com"));
        assert_eq!(o.label("msgid"), Some("ID47"));
        assert_eq!(o.label("procid"), None);
        assert_eq!(o.label("peer"), Some("10.0.0.7"));
        assert_eq!(o.label("sd.exampleSDID_32473.iut"), Some("3"));
        assert_eq!(
            o.label("sd.exampleSDID_32473.eventSource"),
            Some("Application")
        );
        assert!(o
            .labels()
            .iter()
            .all(|(k, _)| crate::filter::valid_label_key(k)));
    }

    #[test]
    fn local_messages_get_trusted_labels_and_no_hostname() {
        let m = parse::parse(
            b"<27>Dec  2 05:47:46 app[12]: boom",
            &opts(Hostnames::Local),
            0,
        );
        let creds = Credentials {
            pid: 12,
            uid: 1000,
            gid: 100,
        };
        let o = build_origin(&m, Sender::Local(Some(creds)));
        assert_eq!(o.source, "app");
        assert_eq!(o.label("procid"), Some("12"));
        assert_eq!(o.label("pid"), Some("12"));
        assert_eq!(o.label("uid"), Some("1000"));
        assert_eq!(o.label("gid"), Some("100"));
        assert_eq!(o.label("hostname"), None);
        assert_eq!(o.label("severity"), Some("err"));
        assert_eq!(o.label("facility"), Some("daemon"));
    }

    #[test]
    fn a_network_message_without_hostname_gets_the_peer() {
        let m = parse::parse(b"no header at all", &opts(Hostnames::Expected), 0);
        let o = build_origin(&m, Sender::Peer("::1".parse().unwrap()));
        assert_eq!(o.source, DEFAULT_SOURCE);
        assert_eq!(o.label("hostname"), Some("::1"));
        assert_eq!(o.label("severity"), Some("notice"));
        assert_eq!(o.label("facility"), Some("user"));
    }

    #[test]
    fn cache_keys_differ_when_origins_do() {
        let o = opts(Hostnames::Local);
        let a = parse::parse(b"<13>ab: x", &o, 0);
        let b = parse::parse(b"<13>a: x", &o, 0);
        let c = parse::parse(b"<14>ab: x", &o, 0);
        let keys: Vec<Vec<u8>> = [&a, &b, &c]
            .iter()
            .map(|m| {
                let mut k = Vec::new();
                cache_key(&mut k, m, Sender::Local(None));
                k
            })
            .collect();
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        let mut again = Vec::new();
        cache_key(
            &mut again,
            &parse::parse(b"<13>ab: other", &o, 0),
            Sender::Local(None),
        );
        assert_eq!(keys[0], again);
    }
}
