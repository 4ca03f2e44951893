//! Answering `docker logs` (ReadLogs) from the ring.
//!
//! A container's entries are found by their `container_id` label, so they
//! stay readable after the container stopped, for as long as the ring holds
//! them. [`stream`] writes the answer as Docker's frames
//! ([`ReadLogsEncoder`]) into a bounded channel that the HTTP body drains,
//! and promises:
//!
//! - **What dockerd asks for**: `Tail` counts whole lines (the pieces of a
//!   line stored as several `partial` entries count once, and go out as
//!   one line: a `\n` only after the last piece); `Since` and `Until`
//!   compare the container's own time (`time_nano`, kept as the entry's
//!   source time), both inclusive, and the answer ends at the first line
//!   after `Until`; `Follow` goes on with new lines until the container's
//!   logging stops (StopLogging, after its last lines are stored), the
//!   client goes away, or ringtail shuts down. `Tail` is applied before
//!   `Since`, as Docker's own drivers do.
//! - **Nothing invented**: lines the ring evicted before they were read
//!   are not in the answer (it starts with the oldest line still held).
//! - **Bounded memory whatever the client does**: frames go out in chunks
//!   of at most about [`CHUNK_LEN`] bytes through a channel of
//!   [`CHANNEL_CHUNKS`] chunks; a client that stops reading holds at most
//!   that, and its task waits without reading the ring. Every chunk is
//!   sent as soon as it is made, so a follower sees each line at once.
//! - **The end is clean**: a client that goes away ends the task at its
//!   next send or while it waits for new lines.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::ReadLogsEncoder;
use super::info::ReadConfig;
use crate::filter::Filter;
use crate::ring::{Read, ReadBatch, ReadStatus, Ring, Select, Snapshot};

/// Frames are sent in chunks of about this many bytes.
pub const CHUNK_LEN: usize = 256 * 1024;

/// Chunks queued for one client at most.
pub const CHANNEL_CHUNKS: usize = 4;

/// Entries copied from the ring per read.
const READ_ENTRIES: usize = 4096;

/// What the body of a ReadLogs answer is made from.
pub type Chunks = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// The entries of one container.
pub fn container_filter(container_id: &str) -> Filter {
    Filter::builder()
        .label("container_id", container_id)
        .build()
        .expect("a label condition always builds")
}

/// Starts answering: returns the channel the body reads. `stopped` is
/// cancelled when the container's logging stops (ends a follow); `None`
/// when it is not logging now (a follow then ends at the newest line).
pub fn stream(
    ring: Arc<Ring>,
    container_id: &str,
    config: ReadConfig,
    stopped: Option<CancellationToken>,
    shutdown: CancellationToken,
) -> Chunks {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let filter = container_filter(container_id);
    tokio::spawn(async move {
        write_logs(&ring, &filter, config, stopped, shutdown, tx).await;
    });
    rx
}

/// The first seq of the last `n` whole lines of the view (the view's end
/// for 0).
pub fn tail_start<S: Select>(snap: &Snapshot<'_>, select: S, n: u64) -> u64 {
    let mut start = snap.end();
    if n == 0 {
        return start;
    }
    let mut lines = 0;
    let mut rev = snap.rev(select);
    let mut batch = ReadBatch::new();
    while rev.read(&mut batch, READ_ENTRIES) != ReadStatus::End {
        for r in batch.iter() {
            let Read::Entry(e) = r else { continue };
            // Newest first: an entry that is not a partial piece ends a
            // line; the pieces before it belong to that line.
            if !e.flags.partial() {
                if lines == n {
                    return start;
                }
                lines += 1;
            }
            start = e.seq;
        }
    }
    start
}

async fn write_logs(
    ring: &Ring,
    filter: &Filter,
    config: ReadConfig,
    stopped: Option<CancellationToken>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let snap = ring.snapshot();
    let mut start = match config.tail {
        Some(n) => tail_start(&snap, filter, n),
        None => snap.first(),
    };
    if let Some(since) = config.since {
        // A line's own time is never after its receive time, so no line
        // at or after `since` was received before it.
        start = start.max(snap.seek_time(since));
    }
    let follow = config.follow && stopped.is_some();
    let mut cursor = if follow {
        ring.cursor(start, filter)
    } else {
        snap.cursor_from(start, filter)
    };
    let mut batch = ReadBatch::new();
    let mut enc = ReadLogsEncoder::new();
    let mut out: Vec<u8> = Vec::new();
    // Set once the container stopped: read what is there, then end.
    let mut last_pass = false;
    loop {
        let status = cursor.read(&mut batch, READ_ENTRIES);
        let mut past_until = false;
        for r in batch.iter() {
            let Read::Entry(e) = r else { continue };
            let t = e.source_time.ns().unwrap_or(e.time);
            if config.since.is_some_and(|s| t < s) {
                continue;
            }
            if config.until.is_some_and(|u| t > u) {
                past_until = true;
                break;
            }
            enc.encode(
                &mut out,
                e.flags.stream(),
                t.min(i64::MAX as u64) as i64,
                e.msg,
                !e.flags.partial(),
            );
            if out.len() >= CHUNK_LEN && !send(&tx, &mut out, &shutdown).await {
                return;
            }
        }
        if !out.is_empty() && !send(&tx, &mut out, &shutdown).await {
            return;
        }
        if past_until {
            return;
        }
        match status {
            ReadStatus::More => {}
            ReadStatus::End => return,
            ReadStatus::CaughtUp => {
                if last_pass {
                    return;
                }
                let stopped = stopped.as_ref().expect("only a follow is caught up");
                tokio::select! {
                    _ = cursor.wait() => {}
                    _ = stopped.cancelled() => last_pass = true,
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                }
            }
        }
    }
}

/// Sends what `out` holds; false when the client went away or ringtail
/// is shutting down.
async fn send(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    out: &mut Vec<u8>,
    shutdown: &CancellationToken,
) -> bool {
    let chunk = Bytes::from(std::mem::take(out));
    tokio::select! {
        sent = tx.send(Ok(chunk)) => sent.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}
