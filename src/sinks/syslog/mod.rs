//! Forwarding to syslog servers (rsyslog, syslog-ng, any RFC 5424
//! receiver): [`rfc5424`] formats entries, [`transport`] sends them over
//! TCP (RFC 6587 octet counting), UDP (RFC 5426) or RELP ([`relp`],
//! rsyslog's acknowledged protocol).
//!
//! A forwarder formats each entry into one message (one ring entry, one
//! syslog message: the seq is the unit of acknowledgement) and hands
//! `(seq, message)` pairs to its transport's `send_batch`. Which transport
//! to pick: RELP when nothing may be lost, TCP when the receiver has no
//! RELP (the window of loss is described in [`transport`]), UDP only where
//! loss is acceptable.

pub mod relp;
pub mod rfc5424;
pub mod sink;
pub mod transport;

use bytes::Bytes;

pub use rfc5424::SyslogFormat;
pub use transport::{
    Refusal, RelpClient, RelpOptions, SyslogAck, SyslogError, SyslogProblem, TcpOptions,
    TcpSyslogClient, UdpOptions, UdpSyslogClient,
};

use crate::entry::EntryRef;

/// Which transport, from a `--forward syslog=` URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    Tcp,
    Udp,
    Relp,
}

impl SyslogTransport {
    /// Its URL scheme: `tcp`, `udp` or `relp`.
    pub fn scheme(self) -> &'static str {
        match self {
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Udp => "udp",
            SyslogTransport::Relp => "relp",
        }
    }
}

/// A syslog URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad syslog URL {url:?}: {problem} (write tcp://HOST:PORT, udp://HOST:PORT or relp://HOST:PORT)")]
pub struct SyslogUrlError {
    pub url: String,
    pub problem: &'static str,
}

/// Splits `tcp://host:port` (also `udp://`, `relp://`) into its transport
/// and the `host:port` to connect to. IPv6 hosts are written in brackets.
pub fn parse_syslog_url(url: &str) -> Result<(SyslogTransport, String), SyslogUrlError> {
    let bad = |problem| SyslogUrlError {
        url: url.to_string(),
        problem,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => SyslogTransport::Tcp,
        "udp" => SyslogTransport::Udp,
        "relp" => SyslogTransport::Relp,
        _ => return Err(bad("unknown scheme")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') {
        return Err(bad("a path is not expected"));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("an IPv6 address must be in brackets"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("bad port"))?;
    Ok((transport, authority.to_string()))
}

/// Formats entries into `(seq, message)` pairs for a transport; returns
/// them and how many messages were cut to the format's size limit.
pub fn format_batch<'a>(
    format: &SyslogFormat,
    entries: impl IntoIterator<Item = EntryRef<'a>>,
) -> (Vec<(u64, Bytes)>, u64) {
    let mut cut = 0;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for e in entries {
        buf.clear();
        if format.format(&e, &mut buf) {
            cut += 1;
        }
        out.push((e.seq, Bytes::copy_from_slice(&buf)));
    }
    (out, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_syslog_url("tcp://logs.example:514").unwrap(),
            (SyslogTransport::Tcp, "logs.example:514".to_string())
        );
        assert_eq!(
            parse_syslog_url("RELP://[::1]:2514/").unwrap(),
            (SyslogTransport::Relp, "[::1]:2514".to_string())
        );
        assert_eq!(
            parse_syslog_url("udp://10.0.0.1:514").unwrap().0,
            SyslogTransport::Udp
        );
        for bad in [
            "logs:514",
            "http://x:1",
            "tcp://x",
            "tcp://:514",
            "tcp://x:0",
            "tcp://x:99999",
            "tcp://::1:514",
            "tcp://x:514/path",
        ] {
            assert!(parse_syslog_url(bad).is_err(), "{bad}");
        }
    }
}
