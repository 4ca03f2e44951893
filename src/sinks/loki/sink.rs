//! The Loki forwarder as a [`Sink`](crate::sinks::Sink) backend: turns the
//! follower's batches into pushes, one in flight, and says what Loki
//! acknowledged.
//!
//! What it promises on top of the push parts:
//! - **The same body on a retry.** A push that failed is kept and sent
//!   again unchanged when the follower retries the batch (same
//!   timestamps, same lines), so a push that Loki stored but whose answer
//!   was lost is dropped by Loki as a duplicate. It is dropped instead when
//!   the ring evicted its first entry meanwhile (eviction takes the oldest
//!   first, so then its entries are gone and counted as evicted).
//! - **Idempotent by seq.** It remembers the last seq Loki acknowledged;
//!   a retried batch skips what was acknowledged before, so a follower
//!   batch that needed several pushes never pushes the acknowledged ones
//!   twice.
//! - **413 splits.** A push Loki finds too large is built again at half
//!   the size (down to one entry, which is then refused and counted as
//!   `request_too_large`); the smaller size stays for later batches.

use std::collections::BTreeMap;

use super::{push, LokiBatch, LokiBatcher, LokiTarget, PushOutcome, RetryCause};
use crate::entry::EntryRef;
use crate::filter::Filter;
use crate::ring::{Read, ReadBatch, ReadStatus};

/// The most entries [`LokiShipper::replay`] reads back.
pub const REPLAY_MAX: u64 = 65_536;
use crate::sinks::http::HttpClient;
use crate::sinks::ship::Admit;
use crate::sinks::{Delivered, SinkError};

/// One Loki forwarder's sending side.
#[derive(Debug)]
pub struct LokiShipper {
    client: HttpClient,
    target: LokiTarget,
    batcher: LokiBatcher,
    /// The last seq Loki acknowledged (stored or refused for good).
    done_through: Option<u64>,
    /// A push that failed, to send again unchanged.
    pending: Option<LokiBatch>,
}

impl LokiShipper {
    /// `batcher`'s caps should be at least the follower's, so that one
    /// follower batch is one push.
    pub fn new(client: HttpClient, target: LokiTarget, batcher: LokiBatcher) -> LokiShipper {
        LokiShipper {
            client,
            target,
            batcher,
            done_through: None,
            pending: None,
        }
    }

    /// Rebuilds the batcher's memory of the timestamps it sent just before
    /// `next_seq`, after a restart: the entries of the ring before
    /// `next_seq` that share the last one's receive time (the batcher
    /// shifts such entries by a nanosecond each, so that Loki does not take
    /// two identical lines for one) are run through the batcher and the
    /// batch dropped. A batch sent again after a restart then carries the
    /// timestamps it carried the first time (Loki drops it as a duplicate
    /// instead of storing it twice or refusing it as out of order), and
    /// the entries after it follow in order. At most [`REPLAY_MAX`]
    /// entries are read.
    pub fn replay(&mut self, ring: &crate::ring::Ring, next_seq: u64, filter: &Filter) {
        let from = next_seq.saturating_sub(REPLAY_MAX).max(ring.oldest_seq());
        if from >= next_seq {
            return;
        }
        let mut batch = ReadBatch::new();
        // Pass 1: the receive time of the last entry before `next_seq`.
        let mut last_time = None;
        let mut cursor = ring.cursor(from, filter);
        while cursor.position() < next_seq {
            let status = cursor.read(&mut batch, 1024);
            for item in batch.iter() {
                if let Read::Entry(e) = item {
                    if e.seq < next_seq {
                        last_time = Some(e.time);
                    }
                }
            }
            if status == ReadStatus::CaughtUp || batch.is_empty() {
                break;
            }
        }
        let Some(t) = last_time else { return };
        // Pass 2: the entries with that time, in order, through the batcher.
        let mut cursor = ring.cursor(from, filter);
        while cursor.position() < next_seq {
            let status = cursor.read(&mut batch, 1024);
            for item in batch.iter() {
                if let Read::Entry(e) = item {
                    if e.seq < next_seq && e.time == t {
                        let _ = self.batcher.push(&e);
                    }
                }
            }
            if status == ReadStatus::CaughtUp || batch.is_empty() {
                break;
            }
        }
        let _ = self.batcher.finish();
    }

    /// Sends the entries of `items` Loki does not have yet.
    pub async fn deliver(&mut self, items: &[Read<'_>]) -> Result<Delivered, SinkError> {
        let entries: Vec<&EntryRef<'_>> = items
            .iter()
            .filter_map(|i| match i {
                Read::Entry(e) if self.done_through.is_none_or(|d| e.seq > d) => Some(e),
                _ => None,
            })
            .collect();
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        let mut at = 0;
        while at < entries.len() {
            let batch = match self.pending.take() {
                Some(b) if b.first_seq == entries[at].seq => b,
                _ => {
                    // Start from an empty batcher (a pending push that is
                    // dropped leaves nothing behind).
                    let _ = self.batcher.finish();
                    let mut taken = at;
                    while taken < entries.len() && self.batcher.push(entries[taken]) == Admit::Added
                    {
                        taken += 1;
                    }
                    self.batcher
                        .finish()
                        .expect("a batcher always takes the first entry")
                }
            };
            match push(&self.client, &self.target, &batch).await {
                PushOutcome::Accepted => {}
                PushOutcome::Rejected { counts, .. } => {
                    for (reason, n) in counts.0 {
                        *rejected.entry(reason.as_str().to_string()).or_default() += n;
                    }
                }
                PushOutcome::TooLarge { message } => {
                    if batch.entries > 1 {
                        let smaller = (batch.body.len() / 2).max(1);
                        let cap = self.batcher.config().max_bytes.min(smaller);
                        self.batcher.set_max_bytes(cap);
                        continue;
                    }
                    let _ = message;
                    *rejected.entry("request_too_large".into()).or_default() += batch.lines;
                }
                PushOutcome::Retry {
                    retry_after,
                    cause,
                    message,
                } => {
                    let reason = retry_reason(&cause, &message);
                    self.pending = Some(batch);
                    return Err(SinkError::Retry {
                        reason,
                        after: retry_after,
                    });
                }
            }
            self.done_through = Some(batch.last_seq);
            while at < entries.len() && entries[at].seq <= batch.last_seq {
                at += 1;
            }
        }
        Ok(Delivered {
            rejected: rejected.into_iter().collect(),
            through: None,
        })
    }
}

fn retry_reason(cause: &RetryCause, message: &str) -> String {
    let what = match cause {
        RetryCause::Throttled => "Loki is throttling (429)".to_string(),
        RetryCause::Server(s) => format!("Loki answered {s}"),
        RetryCause::Setup(s) => {
            format!("Loki answered {s}: check the URL, the tenant and the credentials")
        }
        RetryCause::Transport(e) => return e.to_string(),
    };
    if message.is_empty() {
        what
    } else {
        format!("{what}: {message}")
    }
}
