//! Live tail over a WebSocket (`/loki/api/v1/tail`), as Grafana's live
//! view and `logcli query --tail` use it.
//!
//! What a client gets:
//! - first the newest `limit` entries since `start` (oldest first), then
//!   every new entry the query selects, as Loki's tail messages:
//!   `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}]}`;
//! - a WebSocket ping every second;
//! - when it reads too slowly, the entries it could not take are not
//!   buffered without bound: they are reported in a later message under
//!   `dropped_entries` (`{"labels":{...},"timestamp":"<ns>"}` each, at most
//!   1000 per message, the rest in the messages after), so every entry is
//!   either sent or reported dropped. Should the ring evict entries before
//!   even the reader got them, the client gets an in-band line from source
//!   `ringtail` saying how many it missed.
//!
//! Two tasks per connection: a reader that follows the ring (it keeps up,
//! since reading the ring is far faster than a socket) and queues rendered
//! messages in a small channel, and a writer that sends them, pings, and
//! notices the client going away. A full channel is what "too slow" means.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::mpsc;

use rustc_hash::FxHashMap;

use crate::entry::EntryRef;
use crate::format::{gap_message, json_str};
use crate::ring::{Cursor, Read, ReadBatch, ReadStatus, Ring, Select};
use crate::selflog::SelfLog;
use crate::serve::follow::{self, Flow, Gone, Wake};
use crate::timefmt::now_ns;

use super::answer::write_labels;
use super::logql::eval::scan::{entry_ts, seq_range, Streams};
use super::logql::eval::{Labels, LogPlan};
use super::logql::pipeline::{key_labels, key_push, LineLabels, Pipeline, Scratch};

/// Messages queued for the writer: a client that falls this far behind
/// starts having entries dropped.
const QUEUE: usize = 8;
/// The most entries in one message.
const MAX_PER_MESSAGE: usize = 1000;
/// The most dropped-entry records in one message.
const MAX_DROPPED_PER_MESSAGE: usize = 1000;
/// The most dropped-entry records kept waiting; beyond that the count goes
/// into an in-band line instead.
const MAX_DROPPED_KEPT: usize = 100_000;
/// A client that does not take a message for this long is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
const PING_EVERY: Duration = Duration::from_secs(1);

/// What one tail connection follows.
pub struct TailPlan {
    /// The ring filter and the pipeline every entry goes through.
    pub plan: LogPlan,
    /// Backlog from this time, ns.
    pub start: u64,
    /// Backlog entries at most.
    pub limit: usize,
}

/// Serves one upgraded connection until the client leaves.
pub async fn serve(mut ws: WebSocket, ring: Arc<Ring>, selflog: SelfLog, plan: TailPlan) {
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let reader = tokio::spawn(read_loop(ring, selflog, plan, tx));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(text) = msg else { break };
                match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(text.into()))).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            incoming = ws.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // Dropping the receiver ends the reader at its next send or wait.
    drop(rx);
    let _ = reader.await;
    let _ = ws.send(Message::Close(None)).await;
}

/// An entry waiting to be sent, or reported as dropped.
struct Pending {
    labels: Arc<Labels>,
    time: u64,
    line: Vec<u8>,
}

struct Reader {
    streams: Streams,
    scratch: Scratch,
    pipeline: Pipeline,
    /// Label sets after the pipeline, shared by the entries that have them.
    labels: FxHashMap<Vec<u8>, Arc<Labels>>,
    key: Vec<u8>,
    pending: Vec<Pending>,
    dropped: VecDeque<(Arc<Labels>, u64)>,
    /// Dropped entries beyond `MAX_DROPPED_KEPT`, reported as a count.
    dropped_uncounted: u64,
    dropped_total: u64,
    /// To the connection's writer.
    tx: mpsc::Sender<String>,
}

impl Reader {
    fn take(&mut self, e: &EntryRef<'_>) {
        let s = self.streams.index(e);
        let base = &self.streams.labels[s];
        let mut l = LineLabels::new(base, &mut self.scratch);
        let ts = entry_ts(e);
        if !self.pipeline.is_empty() && !self.pipeline.run(e.msg, ts, &mut l) {
            return;
        }
        let key = &mut self.key;
        key.clear();
        l.for_each_sorted(|k, v| key_push(key, k, v));
        let line = Pipeline::final_line(e.msg, &l).to_vec();
        // Bound the shared label sets: a pipeline may make every line's
        // labels distinct.
        if self.labels.len() > 10_000 {
            self.labels.clear();
        }
        let labels = self
            .labels
            .entry(self.key.clone())
            .or_insert_with(|| Arc::new(key_labels(&self.key)))
            .clone();
        self.pending.push(Pending {
            labels,
            time: ts,
            line,
        });
    }

    fn gap(&mut self, first_seq: u64, missed: u64) {
        self.pending.push(Pending {
            labels: Arc::new(vec![("source".into(), crate::selflog::SOURCE.into())]),
            time: now_ns(),
            line: gap_message(first_seq, missed).into_bytes(),
        });
    }

    /// Turns what could not be sent into dropped-entry records.
    fn drop_pending(&mut self, entries: Vec<Pending>) {
        self.dropped_total += entries.len() as u64;
        for p in entries {
            if self.dropped.len() < MAX_DROPPED_KEPT {
                self.dropped.push_back((p.labels, p.time));
            } else {
                self.dropped_uncounted += 1;
            }
        }
    }

    /// Renders a message with the pending entries and up to
    /// `MAX_DROPPED_PER_MESSAGE` dropped records; `None` when there is
    /// nothing to say.
    fn message(&mut self) -> Option<(String, Vec<Pending>, usize)> {
        if self.dropped_uncounted > 0 {
            let n = std::mem::take(&mut self.dropped_uncounted);
            self.pending.push(Pending {
                labels: Arc::new(vec![("source".into(), crate::selflog::SOURCE.into())]),
                time: now_ns(),
                line: format!(
                    "dropped {n} more entries for this tail client than dropped_entries can list: \
                     it reads more slowly than the logs arrive"
                )
                .into_bytes(),
            });
        }
        if self.pending.is_empty() && self.dropped.is_empty() {
            return None;
        }
        let entries = std::mem::take(&mut self.pending);
        let n_dropped = self.dropped.len().min(MAX_DROPPED_PER_MESSAGE);
        let text = render(&entries, self.dropped.iter().take(n_dropped));
        Some((text, entries, n_dropped))
    }
}

/// Follows the ring and queues messages; returns when the writer is gone.
async fn read_loop(ring: Arc<Ring>, selflog: SelfLog, plan: TailPlan, tx: mpsc::Sender<String>) {
    let LogPlan { filter, pipeline } = plan.plan;
    let mut r = Reader {
        streams: Streams::default(),
        scratch: Scratch::new(),
        pipeline,
        labels: FxHashMap::default(),
        key: Vec::new(),
        pending: Vec::new(),
        dropped: VecDeque::new(),
        dropped_uncounted: 0,
        dropped_total: 0,
        tx,
    };
    let filter = Arc::new(filter);
    let mut batch = ReadBatch::new();
    // The backlog: the newest `limit` entries since `start`.
    let snap = ring.snapshot();
    let start_seq = seq_range(&snap, plan.start, u64::MAX).start;
    {
        let mut back = Vec::new();
        let mut rev = snap.rev(filter.clone());
        'back: while rev.position() > start_seq && back.len() < plan.limit {
            let max = (rev.position() - start_seq).min(4096) as usize;
            if rev.read(&mut batch, max) != ReadStatus::More {
                break;
            }
            for item in batch.iter() {
                if let Read::Entry(e) = item {
                    if e.seq < start_seq || back.len() == plan.limit {
                        break 'back;
                    }
                    if entry_ts(&e) >= plan.start {
                        back.push(e.to_owned());
                    }
                }
            }
        }
        for e in back.iter().rev() {
            r.take(&e.as_ref());
        }
    }
    let mut cursor = ring.cursor(snap.end(), filter);
    // Ends when the writer is gone (the client left).
    let _ = follow::run(&mut r, &mut cursor).await;
    if r.dropped_total > 0 {
        selflog.warn(format!(
            "a Loki tail client read too slowly: {} entries were reported to it as dropped",
            r.dropped_total
        ));
    }
}

impl<S: Select + Send + Sync> follow::Reader<S> for Reader {
    fn render(&mut self, batch: &ReadBatch) -> Flow {
        for item in batch.iter() {
            match item {
                Read::Entry(e) => self.take(&e),
                Read::Gap { first_seq, missed } => self.gap(first_seq, missed),
            }
        }
        Flow::More
    }

    fn buffered(&self) -> usize {
        self.pending.len()
    }

    fn flush_at(&self) -> usize {
        MAX_PER_MESSAGE
    }

    fn room(&self) -> usize {
        MAX_PER_MESSAGE - self.pending.len().min(MAX_PER_MESSAGE - 1)
    }

    /// Queues a message for the writer; when the queue is full the client
    /// is too slow, and the entries become dropped-entry records.
    async fn flush(&mut self, _position: u64) -> Result<(), Gone> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Some((text, entries, n_dropped)) = self.message() {
            match self.tx.try_send(text) {
                Ok(()) => {
                    self.dropped.drain(..n_dropped);
                }
                Err(mpsc::error::TrySendError::Full(_)) => self.drop_pending(entries),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Gone),
            }
        }
        Ok(())
    }

    async fn wait(&mut self, cursor: &Cursor<'_, S>) -> Result<Wake, Gone> {
        if self.dropped.is_empty() {
            tokio::select! {
                _ = cursor.wait() => {}
                _ = self.tx.closed() => return Err(Gone),
            }
        } else {
            // Report drops as soon as the client makes room.
            let tx = self.tx.clone();
            tokio::select! {
                _ = cursor.wait() => {}
                permit = tx.reserve() => {
                    let Ok(permit) = permit else { return Err(Gone) };
                    if let Some((text, _, n_dropped)) = self.message() {
                        permit.send(text);
                        self.dropped.drain(..n_dropped);
                    }
                }
            }
        }
        Ok(Wake::All)
    }
}

/// A tail message. Entries are grouped into streams by label set, in order.
fn render<'a>(
    entries: &[Pending],
    dropped: impl Iterator<Item = &'a (Arc<Labels>, u64)>,
) -> String {
    let mut out = Vec::with_capacity(64 + entries.iter().map(|e| e.line.len() + 40).sum::<usize>());
    out.push(b'{');
    let mut num = itoa::Buffer::new();
    if !entries.is_empty() {
        out.extend_from_slice(b"\"streams\":[");
        let mut groups: Vec<(&Arc<Labels>, Vec<&Pending>)> = Vec::new();
        for e in entries {
            match groups
                .iter_mut()
                .find(|(l, _)| Arc::ptr_eq(l, &e.labels) || **l == e.labels)
            {
                Some((_, list)) => list.push(e),
                None => groups.push((&e.labels, vec![e])),
            }
        }
        for (i, (labels, list)) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":");
            write_labels(
                &mut out,
                labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            out.extend_from_slice(b",\"values\":[");
            for (j, e) in list.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"[\"");
                out.extend_from_slice(num.format(e.time).as_bytes());
                out.extend_from_slice(b"\",");
                json_str(&mut out, &e.line);
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }
    let mut first = true;
    for (labels, time) in dropped {
        if first {
            if !entries.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"dropped_entries\":[");
            first = false;
        } else {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"labels\":");
        write_labels(
            &mut out,
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(num.format(*time).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    if !first {
        out.push(b']');
    }
    out.push(b'}');
    String::from_utf8(out).expect("json_str writes valid UTF-8")
}
