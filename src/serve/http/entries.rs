//! `GET /api/v1/entries`: the entries that match a filter, in a seq window,
//! oldest or newest first.
//!
//! Two shapes of answer:
//! - **A document** (the default): `{"entries":[...],"gaps":[...],
//!   "next":N,"more":bool,"limit":N,"oldest_seq":N,"newest_seq":N}`, at
//!   most `limit` entries (capped by `--http-max-limit`). Entries are the
//!   objects of the `ndjson` format ([`crate::format`]): `seq`, `time`
//!   (RFC 3339 with ns), `time_ns`, `source`, `stream`, `labels`, `level`,
//!   `partial`, `truncated`, `msg`, and `msg_b64` (the exact bytes) when the
//!   message is not valid UTF-8. `next` is the cursor of the following
//!   page: `after=next` oldest first (always set, so a poller can ask again
//!   later), `before=next` newest first (`null` once the oldest end is
//!   reached). `more` says whether the answer stopped early (at `limit`,
//!   or at the time budget); the next page may then hold more.
//! - **Streamed lines** (`format=ndjson|text|logread|raw|etw`, or
//!   `Accept: application/x-ndjson`): every matching entry (or `limit`
//!   of them, uncapped), rendered chunk by chunk from the ring with bounded
//!   memory, never built whole.
//!
//! Gaps: entries in the requested window that the ring evicted before they
//! were read are reported with their exact count, in the document's
//! `gaps` (and as records/lines when streamed), never dropped silently.
//! That includes the stretch between `after` and the oldest retained entry
//! when a client resumes too late.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::{self, EntriesOutput, EntriesQuery, Order};
use super::{batch_size, ApiError, HttpState, CHUNK};
use crate::filter::Filter;
use crate::format::{self, Format};
use crate::ring::{Read, ReadBatch, ReadStatus, Snapshot};
use crate::timefmt;

/// The seq window a query reads, computed against a snapshot.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// First seq to read.
    lo: u64,
    /// Seq to stop before.
    hi: u64,
    /// Entries between `after` and the snapshot's oldest entry, already
    /// evicted: `(first_seq, missed)`.
    evicted: Option<(u64, u64)>,
}

fn window(snap: &Snapshot<'_>, q: &EntriesQuery) -> Result<Window, ApiError> {
    let mut lo = snap.first();
    let mut hi = snap.end();
    let mut evicted = None;
    if let Some(before) = q.before {
        hi = hi.min(before);
    }
    if let Some(after) = q.after {
        let newest = snap.end().saturating_sub(1);
        if after > newest {
            return Err(ApiError::bad_request(future_seq("after", after, newest)));
        }
        let want = after + 1;
        let gone_until = snap.first().min(q.before.unwrap_or(u64::MAX));
        if want < gone_until {
            evicted = Some((want, gone_until - want));
        }
        lo = lo.max(want);
    }
    if let Some(since) = q.filter.since_ns() {
        lo = lo.max(snap.seek_time(since));
    }
    if let Some(until) = q.filter.until_ns() {
        hi = hi.min(snap.seek_time(until));
    }
    Ok(Window {
        lo,
        hi: hi.max(lo),
        evicted,
    })
}

/// The message for a resume seq past the newest entry.
pub(super) fn future_seq(param: &str, seq: u64, newest: u64) -> String {
    format!(
        "{param} {seq} is past the newest entry (seq {newest}): this ring was reset or replaced \
         since that seq was read; ask again without {param}"
    )
}

/// Whether the `Accept` header lists `media` (parameters ignored).
pub(super) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
        })
}

/// The content type of streamed lines in `format`.
pub(super) fn lines_content_type(format: Format) -> &'static str {
    match format {
        Format::Ndjson | Format::Json => "application/x-ndjson",
        _ => "text/plain; charset=utf-8",
    }
}

pub(super) async fn get(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match params::parse_entries(query.as_deref().unwrap_or(""), timefmt::now_ns()) {
        Ok(q) => q,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let output = q
        .output
        .unwrap_or(if accepts(&headers, "application/x-ndjson") {
            EntriesOutput::Lines(Format::Ndjson)
        } else {
            EntriesOutput::Document
        });
    match output {
        EntriesOutput::Document => document(&state, &q)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        EntriesOutput::Lines(format) => {
            export(state, q, format).unwrap_or_else(IntoResponse::into_response)
        }
    }
}

/// Appends an entry as a JSON object (the `ndjson` format without its
/// newline).
pub(super) fn entry_object(out: &mut Vec<u8>, e: &crate::entry::EntryRef<'_>) {
    format::write_entry(out, Format::Ndjson, e);
    out.pop();
}

/// How a document read ended.
struct Page {
    entries: Vec<u8>,
    count: u64,
    gaps: Vec<(u64, u64)>,
    next: Option<u64>,
    more: bool,
}

/// The JSON document. Reads at most the limit; yields to the runtime
/// between batches and stops (with `more`) at half the request timeout,
/// so that a slow scan answers with a page instead of a timeout.
async fn document(state: &HttpState, q: &EntriesQuery) -> Result<Response, ApiError> {
    let started = Instant::now();
    let budget = state.config.timeout / 2;
    let limit = q
        .limit
        .unwrap_or(state.config.default_limit)
        .min(state.config.max_limit)
        .max(1);
    let ring = &*state.ring;
    let snap = ring.snapshot();
    let w = window(&snap, q)?;
    let max = batch_size(ring);
    let page = match q.order {
        Order::Asc => read_asc(&snap, &q.filter, w, limit, max, started, budget).await,
        Order::Desc => read_desc(&snap, &q.filter, w, limit, max, started, budget).await,
    };
    let mut out = Vec::with_capacity(page.entries.len() + 256);
    out.extend_from_slice(b"{\"entries\":[");
    out.extend_from_slice(&page.entries);
    out.extend_from_slice(b"],\"gaps\":[");
    let mut num = itoa::Buffer::new();
    for (i, (first, missed)) in page.gaps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"first_seq\":");
        out.extend_from_slice(num.format(*first).as_bytes());
        out.extend_from_slice(b",\"missed\":");
        out.extend_from_slice(num.format(*missed).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"next\":");
    match page.next {
        Some(n) => out.extend_from_slice(num.format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if page.more {
        b",\"more\":true"
    } else {
        b",\"more\":false"
    });
    out.extend_from_slice(b",\"count\":");
    out.extend_from_slice(num.format(page.count).as_bytes());
    out.extend_from_slice(b",\"limit\":");
    out.extend_from_slice(num.format(limit).as_bytes());
    out.extend_from_slice(b",\"oldest_seq\":");
    out.extend_from_slice(num.format(snap.first()).as_bytes());
    out.extend_from_slice(b",\"newest_seq\":");
    out.extend_from_slice(num.format(snap.end().saturating_sub(1)).as_bytes());
    out.push(b'}');
    let missed: u64 = page.gaps.iter().map(|g| g.1).sum();
    super::stats::report_gaps(state, page.gaps.len() as u64, missed);
    state
        .metrics
        .query
        .record(0, [started.elapsed().as_micros() as u64]);
    Ok(super::json_bytes(out))
}

async fn read_asc(
    snap: &Snapshot<'_>,
    filter: &Filter,
    w: Window,
    limit: u64,
    max: usize,
    started: Instant,
    budget: Duration,
) -> Page {
    let mut page = Page {
        entries: Vec::new(),
        count: 0,
        gaps: w.evicted.into_iter().collect(),
        next: None,
        more: false,
    };
    let mut batch = ReadBatch::new();
    let mut cursor = snap.cursor_from(w.lo, filter);
    'read: while cursor.position() < w.hi {
        let room = (w.hi - cursor.position()).min(max as u64) as usize;
        let status = cursor.read(&mut batch, room);
        for item in batch.iter() {
            match item {
                Read::Entry(e) => {
                    if page.count > 0 {
                        page.entries.push(b',');
                    }
                    entry_object(&mut page.entries, &e);
                    page.count += 1;
                    if page.count == limit {
                        page.more = true;
                        page.next = Some(e.seq);
                        break 'read;
                    }
                }
                Read::Gap { first_seq, missed } => page.gaps.push((first_seq, missed)),
            }
        }
        if status == ReadStatus::End {
            break;
        }
        if cursor.position() < w.hi && started.elapsed() >= budget {
            page.more = true;
            break;
        }
        tokio::task::consume_budget().await;
    }
    if page.next.is_none() {
        // Everything below the position was examined.
        page.next = Some(cursor.position().saturating_sub(1));
    }
    page
}

async fn read_desc(
    snap: &Snapshot<'_>,
    filter: &Filter,
    w: Window,
    limit: u64,
    max: usize,
    started: Instant,
    budget: Duration,
) -> Page {
    let mut page = Page {
        entries: Vec::new(),
        count: 0,
        gaps: Vec::new(),
        next: None,
        more: false,
    };
    let mut batch = ReadBatch::new();
    let mut rev = snap.rev_before(w.hi, filter);
    'read: while rev.position() > w.lo {
        let room = (rev.position() - w.lo).min(max as u64) as usize;
        let status = rev.read(&mut batch, room);
        for item in batch.iter() {
            match item {
                Read::Entry(e) => {
                    if page.count > 0 {
                        page.entries.push(b',');
                    }
                    entry_object(&mut page.entries, &e);
                    page.count += 1;
                    if page.count == limit {
                        page.more = true;
                        page.next = Some(e.seq);
                        break 'read;
                    }
                }
                Read::Gap { first_seq, missed } => {
                    if let Some(g) = clip_gap(first_seq, missed, w.lo) {
                        page.gaps.push(g);
                    }
                }
            }
        }
        if status == ReadStatus::End {
            break;
        }
        if rev.position() > w.lo && started.elapsed() >= budget {
            page.more = true;
            page.next = Some(rev.position());
            break;
        }
        tokio::task::consume_budget().await;
    }
    if !page.more {
        page.gaps.extend(w.evicted);
    }
    page
}

/// The part of a gap at or above `lo`.
fn clip_gap(first_seq: u64, missed: u64, lo: u64) -> Option<(u64, u64)> {
    let end = first_seq + missed;
    let first = first_seq.max(lo);
    (end > first).then(|| (first, end - first))
}

/// Streams every matching entry of the window as lines.
fn export(state: Arc<HttpState>, q: EntriesQuery, format: Format) -> Result<Response, ApiError> {
    let w = window(&state.ring.snapshot(), &q)?;
    let (tx, body) = super::streamed_body();
    state.metrics.exports.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut tally = (0, 0);
        let _ = export_task(&state, &q, format, w, &tx, &mut tally).await;
        super::stats::report_gaps(&state, tally.0, tally.1);
        state.metrics.exports.fetch_sub(1, Ordering::Relaxed);
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, lines_content_type(format)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// The client went away, or the server is stopping.
pub(super) struct Gone;

/// Takes what `out` holds as one chunk. Small chunks (a follower's few
/// lines) are copied and the buffer kept; big ones are handed over whole.
pub(super) fn take_chunk(out: &mut Vec<u8>) -> axum::body::Bytes {
    if out.len() < CHUNK / 4 {
        let c = axum::body::Bytes::copy_from_slice(out);
        out.clear();
        c
    } else {
        axum::body::Bytes::from(std::mem::replace(
            out,
            Vec::with_capacity(CHUNK + CHUNK / 4),
        ))
    }
}

/// Hands `out` to the body unless shutdown comes first (then the response
/// is aborted, so the client does not take it for complete).
pub(super) async fn send(
    tx: &super::Chunks,
    out: &mut Vec<u8>,
    state: &HttpState,
) -> Result<(), Gone> {
    if out.is_empty() {
        return Ok(());
    }
    let chunk = take_chunk(out);
    let shutting_down = || {
        let _ = tx.try_send(Err(super::shutting_down()));
        Err(Gone)
    };
    if state.shutdown.is_cancelled() {
        return shutting_down();
    }
    // The channel almost always has room (a follower's chunks are small and
    // rare): hand the chunk over without waiting, which spares registering
    // with the shared shutdown token, a lock taken twice per delivery.
    let chunk = match tx.try_send(Ok(chunk)) {
        Ok(()) => return Ok(()),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(Gone),
        Err(tokio::sync::mpsc::error::TrySendError::Full(chunk)) => chunk,
    };
    tokio::select! {
        _ = state.shutdown.cancelled() => shutting_down(),
        r = tx.send(chunk) => r.map_err(|_| Gone),
    }
}

fn render(
    batch: &ReadBatch,
    format: Format,
    out: &mut Vec<u8>,
    left: &mut u64,
    tally: &mut (u64, u64),
    lo: u64,
) {
    for item in batch.iter() {
        if *left == 0 {
            return;
        }
        match item {
            Read::Entry(e) => {
                if e.seq < lo {
                    continue;
                }
                format::write_entry(out, format, &e);
                *left -= 1;
            }
            Read::Gap { first_seq, missed } => {
                if let Some((first, missed)) = clip_gap(first_seq, missed, lo) {
                    format::write_gap(out, format, first, missed, timefmt::now_ns());
                    tally.0 += 1;
                    tally.1 += missed;
                }
            }
        }
    }
}

async fn export_task(
    state: &HttpState,
    q: &EntriesQuery,
    format: Format,
    w: Window,
    tx: &super::Chunks,
    tally: &mut (u64, u64),
) -> Result<(), Gone> {
    let ring = &*state.ring;
    let filter = &q.filter;
    let max = batch_size(ring);
    let mut left = q.limit.unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(CHUNK + CHUNK / 4);
    let mut batch = ReadBatch::new();
    let gap = |out: &mut Vec<u8>, tally: &mut (u64, u64), (first, missed): (u64, u64)| {
        format::write_gap(out, format, first, missed, timefmt::now_ns());
        tally.0 += 1;
        tally.1 += missed;
    };
    match q.order {
        Order::Asc => {
            if let Some(g) = w.evicted {
                gap(&mut out, tally, g);
            }
            // A cursor (not a snapshot) from the window's start: entries
            // evicted since the window was computed come back as a gap.
            let mut cursor = ring.cursor(w.lo, filter);
            while cursor.position() < w.hi && left > 0 {
                let room = (w.hi - cursor.position()).min(max as u64) as usize;
                cursor.read(&mut batch, room);
                render(&batch, format, &mut out, &mut left, tally, 0);
                if out.len() >= CHUNK {
                    send(tx, &mut out, state).await?;
                }
                tokio::task::consume_budget().await;
            }
        }
        Order::Desc => {
            let snap = ring.snapshot();
            let mut rev = snap.rev_before(w.hi, filter);
            while rev.position() > w.lo && left > 0 {
                let room = (rev.position() - w.lo).min(max as u64) as usize;
                if rev.read(&mut batch, room) == ReadStatus::End {
                    break;
                }
                render(&batch, format, &mut out, &mut left, tally, w.lo);
                if out.len() >= CHUNK {
                    send(tx, &mut out, state).await?;
                }
                tokio::task::consume_budget().await;
            }
            if left > 0 {
                // Entries of the window the ring evicted before this
                // snapshot was taken (the snapshot starts above them).
                let below = snap.first().min(w.hi);
                if below > w.lo {
                    gap(&mut out, tally, (w.lo, below - w.lo));
                }
                if let Some(g) = w.evicted {
                    gap(&mut out, tally, g);
                }
            }
        }
    }
    send(tx, &mut out, state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_clipped_to_the_window() {
        assert_eq!(clip_gap(10, 5, 0), Some((10, 5)));
        assert_eq!(clip_gap(10, 5, 12), Some((12, 3)));
        assert_eq!(clip_gap(10, 5, 15), None);
    }

    #[test]
    fn accept_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "text/html, application/x-ndjson;q=0.9".parse().unwrap(),
        );
        assert!(accepts(&h, "application/x-ndjson"));
        assert!(!accepts(&h, "text/event-stream"));
    }
}
