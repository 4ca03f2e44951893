//! The syslog forwarder as a [`Sink`](crate::sinks::Sink) backend: formats
//! the follower's batch (one entry, one message) and hands it to the
//! transport, which is idempotent by seq (a retried batch skips what the
//! transport already took; RELP re-sends its own unanswered window).
//!
//! # The cursor follows the acknowledgements
//!
//! A delivery returns as soon as part of the batch is done, saying how far
//! ([`Delivered::through`]); the follower writes its cursor there and
//! hands over the rest of the batch, which the transport already has in
//! flight. So after a crash of ringtail (`kill -9`) only messages the
//! receiver had not acknowledged when the cursor was last written are sent
//! again, never a whole batch:
//!
//! - **RELP**: a message is done when rsyslog answered its transaction
//!   (`200`, or a refusal). What is sent again after a crash is at most
//!   the window (128 messages): those sent and not yet answered, and those
//!   answered while the last cursor write was under way.
//! - **TCP**: a message is done when the receiver's kernel acknowledged its
//!   last byte. What is sent again is what was written and not yet
//!   acknowledged, at most one batch (`batch-bytes`); the dying process's
//!   kernel still delivers it, so it arrives twice.
//! - **UDP**: a message is done once sent.
//!
//! A failure after part of the batch was done is reported as that part,
//! delivered; the failure shows again on the next delivery, which the
//! follower retries with backoff.
//!
//! Refusals (RELP answers other than 200) are counted as `relp_<code>`;
//! messages cut to a datagram as `udp_truncated` (they were sent, cut, so
//! they count as delivered too).

use std::collections::BTreeMap;

use super::{format_batch, Refusal, RelpClient, SyslogFormat, TcpSyslogClient, UdpSyslogClient};
use crate::entry::EntryRef;
use crate::ring::Read;
use crate::sinks::{Delivered, SinkError};

/// The transport a syslog forwarder sends with.
#[derive(Debug)]
pub enum SyslogClient {
    Tcp(TcpSyslogClient),
    Udp(UdpSyslogClient),
    Relp(RelpClient),
}

impl SyslogClient {
    fn taken(&self) -> Option<u64> {
        match self {
            SyslogClient::Tcp(c) => c.taken(),
            SyslogClient::Udp(c) => c.taken(),
            SyslogClient::Relp(c) => c.taken(),
        }
    }
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
        let entries: Vec<EntryRef<'_>> = items
            .iter()
            .filter_map(|i| match i {
                Read::Entry(e) => Some(*e),
                Read::Gap { .. } => None,
            })
            .collect();
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Delivered::default());
        };
        let (first, last) = (first.seq, last.seq);
        // Messages the transport has taken (in flight, or in RELP's window)
        // are not formatted again.
        let taken = self.client.taken();
        let (msgs, _cut) = format_batch(
            &self.format,
            entries
                .into_iter()
                .filter(|e| taken.is_none_or(|t| e.seq > t)),
        );
        let mut refused: Vec<Refusal> = Vec::new();
        let mut truncated = 0;
        // Until some entry of the batch is done: the transport may first
        // report messages before it that a gap now covers (evicted from
        // the ring while they were in flight).
        let done_through = loop {
            let answer = match &mut self.client {
                SyslogClient::Tcp(c) => c.send_some(&msgs).await,
                SyslogClient::Udp(c) => c.send_batch(&msgs).await,
                SyslogClient::Relp(c) => c.send_some(&msgs).await,
            };
            let done = match answer {
                Ok(ack) => {
                    refused.extend(ack.refused);
                    truncated += ack.truncated;
                    ack.done_through
                }
                // Part of the batch is done: deliver that part now, so that
                // the cursor moves; the failure shows on the next delivery.
                Err(e) if e.done_through.is_some_and(|d| d >= first) => e.done_through,
                Err(e) => {
                    return Err(SinkError::Retry {
                        reason: e.problem.to_string(),
                        after: None,
                    })
                }
            };
            if done.is_some_and(|d| d >= first) {
                break done;
            }
        };
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        for r in &refused {
            *rejected.entry(format!("relp_{}", r.code)).or_default() += 1;
        }
        if truncated > 0 {
            *rejected.entry("udp_truncated".into()).or_default() += truncated;
        }
        Ok(Delivered {
            rejected: rejected.into_iter().collect(),
            through: done_through.filter(|d| *d < last),
        })
    }
}
