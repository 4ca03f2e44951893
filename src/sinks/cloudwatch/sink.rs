//! The CloudWatch Logs forwarder as a [`Sink`](crate::sinks::Sink)
//! backend: builds PutLogEvents batches from the follower's batch and
//! sends them with [`CloudWatchTarget::put_batch`].
//!
//! CloudWatch keeps duplicates, so nothing acknowledged may be sent twice:
//! - it remembers the last seq acknowledged, and a retried follower batch
//!   skips what was acknowledged before;
//! - a batch whose requests partly went through is kept with its
//!   [`BatchProgress`] and, on the retry, only its other requests are sent
//!   (dropped instead when the ring evicted its first entry meanwhile:
//!   eviction takes the oldest first, so its entries are gone and counted
//!   as evicted).
//!
//! Refusals are counted by reason: `too_old`, `too_new`, `expired` (from
//! `rejectedLogEventsInfo`), `empty_message` (an entry with no bytes,
//! which the service cannot take), and the error name of a request
//! refused whole.

use std::collections::BTreeMap;

use super::{BatchOutcome, BatchProgress, CloudWatchTarget, CwBatch, CwBatcher, RetryCause};
use crate::entry::EntryRef;
use crate::ring::Read;
use crate::sinks::http::HttpClient;
use crate::sinks::ship::Admit;
use crate::sinks::{Delivered, SinkError};

/// One CloudWatch forwarder's sending side.
#[derive(Debug)]
pub struct CloudWatchShipper {
    client: HttpClient,
    target: CloudWatchTarget,
    batcher: CwBatcher,
    done_through: Option<u64>,
    pending: Option<(CwBatch, BatchProgress)>,
}

impl CloudWatchShipper {
    pub fn new(client: HttpClient, target: CloudWatchTarget, batcher: CwBatcher) -> Self {
        CloudWatchShipper {
            client,
            target,
            batcher,
            done_through: None,
            pending: None,
        }
    }

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
            let (batch, mut progress) = match self.pending.take() {
                Some((b, p)) if b.first_seq == entries[at].seq => (b, p),
                _ => {
                    let _ = self.batcher.finish();
                    let mut taken = at;
                    while taken < entries.len() && self.batcher.push(entries[taken]) == Admit::Added
                    {
                        taken += 1;
                    }
                    let b = self
                        .batcher
                        .finish()
                        .expect("a batcher always takes the first entry");
                    (b, BatchProgress::default())
                }
            };
            match self
                .target
                .put_batch(&self.client, &batch, &mut progress)
                .await
            {
                BatchOutcome::Done => {}
                BatchOutcome::Retry { cause, message } => {
                    let reason = match cause {
                        RetryCause::Throttled => {
                            format!("CloudWatch Logs is throttling: {message}")
                        }
                        RetryCause::Credentials => {
                            format!("CloudWatch Logs refused the credentials: {message}")
                        }
                        _ => message,
                    };
                    self.pending = Some((batch, progress));
                    return Err(SinkError::Retry {
                        reason,
                        after: None,
                    });
                }
            }
            let mut count = |reason: &str, n: u64| {
                if n > 0 {
                    *rejected.entry(reason.to_string()).or_default() += n;
                }
            };
            count("too_old", progress.rejected.too_old);
            count("too_new", progress.rejected.too_new);
            count("expired", progress.rejected.expired);
            count("empty_message", batch.skipped_empty);
            for (_, events, error) in &progress.refused {
                let name = if error.name.is_empty() {
                    format!("http_{}", error.status)
                } else {
                    error.name.clone()
                };
                count(&name, *events as u64);
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
