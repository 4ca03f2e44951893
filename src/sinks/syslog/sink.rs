//! The syslog forwarder as a [`Sink`](crate::sinks::Sink) backend: formats
//! the follower's batch (one entry, one message) and hands it to the
//! transport, which is idempotent by seq (a retried batch skips what the
//! transport already took; RELP re-sends its own unanswered window).
//!
//! A batch is acknowledged when the transport says every message of it is
//! done: answered (RELP), acknowledged by the receiver's kernel (TCP with
//! the drain wait) or sent (UDP). Refusals (RELP answers other than 200)
//! are counted as `relp_<code>`; messages cut to a datagram as
//! `udp_truncated` (they were sent, cut, so they count as delivered too).

use std::collections::BTreeMap;

use super::{format_batch, RelpClient, SyslogFormat, TcpSyslogClient, UdpSyslogClient};
use crate::ring::Read;
use crate::sinks::{Delivered, SinkError};

/// The transport a syslog forwarder sends with.
#[derive(Debug)]
pub enum SyslogClient {
    Tcp(TcpSyslogClient),
    Udp(UdpSyslogClient),
    Relp(RelpClient),
}

/// One syslog forwarder's sending side.
#[derive(Debug)]
pub struct SyslogShipper {
    format: SyslogFormat,
    client: SyslogClient,
}

impl SyslogShipper {
    pub fn new(format: SyslogFormat, client: SyslogClient) -> SyslogShipper {
        SyslogShipper { format, client }
    }

    pub async fn deliver(&mut self, items: &[Read<'_>]) -> Result<Delivered, SinkError> {
        let entries = items.iter().filter_map(|i| match i {
            Read::Entry(e) => Some(*e),
            Read::Gap { .. } => None,
        });
        let (msgs, _cut) = format_batch(&self.format, entries);
        if msgs.is_empty() {
            return Ok(Delivered::default());
        }
        let answer = match &mut self.client {
            SyslogClient::Tcp(c) => c.send_batch(&msgs).await,
            SyslogClient::Udp(c) => c.send_batch(&msgs).await,
            SyslogClient::Relp(c) => c.send_batch(&msgs).await,
        };
        let ack = answer.map_err(|e| SinkError::Retry {
            reason: e.problem.to_string(),
            after: None,
        })?;
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        for r in &ack.refused {
            *rejected.entry(format!("relp_{}", r.code)).or_default() += 1;
        }
        if ack.truncated > 0 {
            *rejected.entry("udp_truncated".into()).or_default() += ack.truncated;
        }
        Ok(Delivered {
            rejected: rejected.into_iter().collect(),
        })
    }
}
