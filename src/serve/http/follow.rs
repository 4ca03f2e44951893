//! `GET /api/v1/follow`: an optional backlog, then live entries as they
//! are appended, until the client goes away (or `limit` entries).
//!
//! # Where it starts
//!
//! - With no backlog parameter: at the next entry appended.
//! - `tail=N`: the last N matching entries first.
//! - `since=TIME`: every matching entry from that time on (also a filter).
//! - `after=SEQ`: strictly after that seq (a resume).
//! - A `Last-Event-ID` header (what a browser's `EventSource` sends when it
//!   reconnects) wins over all of these: the stream resumes strictly after
//!   that seq, so a reconnect neither repeats nor loses an entry. If the
//!   entries after it were evicted meanwhile, the stream starts with a gap
//!   that counts them. If the id is past the newest entry (the daemon
//!   restarted with a fresh in-memory ring), the stream sends a `reset`
//!   event and starts from the oldest entry.
//!
//! # What it sends
//!
//! - **SSE** (`Accept: text/event-stream` or `format=sse`): events `entry`
//!   (`id:` = seq, `data:` = the entry as an `ndjson` object), `gap`
//!   (`id:` = the last missed seq, `data:` = `{"first_seq":N,"missed":N}`)
//!   and `reset`; a `: keep-alive` comment every keep-alive interval while
//!   idle, with an `id:` line when filtered-out entries moved the position
//!   (so a reconnect does not rescan them).
//! - **Lines** otherwise (default `logread`, or `format=...`), each chunk
//!   sent as soon as the follower is caught up, so `curl -N` shows a line
//!   the moment it is appended. Never compressed.
//!
//! # Who reads what
//!
//! Each stream reads the ring through its own cursor: the ring is the
//! buffer. It reads its backlog in order, then only the seq ranges that
//! the hub ([`super::hub`]) found to hold entries of the origins its filter
//! accepts, and it is woken only when there are such entries. So a
//! thousand streams that each follow one source cost about what their
//! deliveries cost, not a thousand reads of every entry.
//!
//! # Slow clients
//!
//! A client that reads slower than entries arrive makes its stream wait
//! (the stream runs inside its response body, so it renders the next chunk
//! only when the connection has written the last); meanwhile the ring
//! goes on evicting, and when the stream reads again it sends a `gap` with
//! the exact count. Memory per stream is bounded, and nobody else waits.
//! At most `--http-max-followers` streams run at once; past that, 503.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::entries::{accepts, entry_object, future_seq, lines_content_type, take_chunk};
use super::hub::Registration;
use super::params::{self, FollowOutput};
use super::{batch_size, ApiError, HttpState, Live, Yielder, CHUNK};
use crate::filter::Filter;
use crate::format::{self, Format};
use crate::ring::{Cursor, Read, ReadBatch, Select, Snapshot};
use crate::serve::follow::{self, Flow, Gone, Wake};
use crate::timefmt;

pub(super) async fn get(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match start(state, &headers, query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Where a stream starts, and whether it starts with a `reset`.
#[derive(Clone, Copy, Debug)]
struct Start {
    seq: u64,
    /// `(Last-Event-ID, newest seq)` when the id was past the newest entry.
    reset: Option<(u64, u64)>,
}

fn start(state: Arc<HttpState>, headers: &HeaderMap, query: &str) -> Result<Response, ApiError> {
    let q = params::parse_follow(query, timefmt::now_ns()).map_err(ApiError::bad_request)?;
    let output = q
        .output
        .unwrap_or(if accepts(headers, "text/event-stream") {
            FollowOutput::Sse
        } else {
            FollowOutput::Lines(Format::Logread)
        });
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "header Last-Event-ID: not a seq; send back the `id:` of the last event received",
                    )
                })?,
        ),
    };
    let Ok(permit) = state.followers.clone().try_acquire_owned() else {
        state
            .metrics
            .followers_refused
            .fetch_add(1, Ordering::Relaxed);
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "all {} follower slots are in use; try again later, or raise --http-max-followers",
                state.config.max_followers
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(r);
    };

    let snap = state.ring.snapshot();
    let newest = snap.end().saturating_sub(1);
    let at = match (last_event_id, q.after) {
        (Some(id), _) if id > newest => Start {
            seq: snap.first(),
            reset: Some((id, newest)),
        },
        // A resume is exact: no tail, no skipping ahead.
        (Some(id), _) => Start {
            seq: (id + 1).max(since_start(&snap, &q.filter, id + 1)),
            reset: None,
        },
        (None, Some(after)) if after > newest => {
            return Err(ApiError::bad_request(future_seq("after", after, newest)))
        }
        (None, after) => {
            let mut seq = match after {
                Some(a) => a + 1,
                None if q.tail.is_some() || q.filter.since_ns().is_some() => snap.first(),
                None => snap.end(),
            };
            seq = seq.max(since_start(&snap, &q.filter, seq));
            if let Some(n) = q.tail {
                seq = seq.max(crate::serve::follow::tail_start(&snap, &q.filter, n, seq));
            }
            Start { seq, reset: None }
        }
    };

    let live_from = snap.end();
    let filter = Arc::new(q.filter);
    let registration = state.hub.register(filter.clone()).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot start following: {e}"),
        )
    })?;
    let limit = q.limit;
    let body = super::produced_body(move |tx| async move {
        // The follower slot is free once this task ends.
        let _permit = permit;
        let mut f = Follower {
            state: &state,
            output,
            out: Vec::with_capacity(16 * 1024),
            times: Vec::new(),
            shard: state.metrics.delivery.shard(),
            live_from,
            last_id: at.seq.saturating_sub(1),
            gaps: (0, 0),
            left: limit.unwrap_or(u64::MAX),
            max: batch_size(&state.ring),
            reg: &registration,
            tx: &tx,
            examined: 0,
            mark: 0,
            last_sent: tokio::time::Instant::now(),
            keep_alive: Box::pin(tokio::time::sleep(state.config.keep_alive)),
            keep_alive_due: false,
            shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        };
        let _ = f.run(&filter, at).await;
        super::stats::report_gaps(&state, f.gaps.0, f.gaps.1);
    });

    let mut r = match output {
        FollowOutput::Sse => (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        FollowOutput::Lines(format) => (
            [
                (header::CONTENT_TYPE, lines_content_type(format)),
                (header::CACHE_CONTROL, "no-cache"),
                // Browsers hold back text they may want to sniff.
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
    };
    // Proxies such as nginx buffer answers unless told not to.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r.extensions_mut().insert(Live);
    Ok(r)
}

/// The first seq at or after `since` (or `seq` when the filter has none).
fn since_start(snap: &Snapshot<'_>, filter: &Filter, seq: u64) -> u64 {
    filter.since_ns().map_or(seq, |since| snap.seek_time(since))
}

/// One follow stream's state.
struct Follower<'s> {
    state: &'s HttpState,
    output: FollowOutput,
    /// Rendered, not yet sent.
    out: Vec<u8>,
    /// Receive times of the entries in `out`, for the latency histogram.
    times: Vec<u64>,
    shard: usize,
    /// Entries from this seq on were appended after the stream started:
    /// only their delivery counts as "ingest to visible" (the backlog was
    /// visible long before).
    live_from: u64,
    /// SSE: the id the client holds (its `Last-Event-ID` if it reconnects).
    last_id: u64,
    /// Gap records sent and entries they counted, not yet reported.
    gaps: (u64, u64),
    /// Entries still to send before the stream ends.
    left: u64,
    /// Entries per ring read.
    max: usize,
    /// Where the hub says this stream's entries are (see hub.rs).
    reg: &'s Registration,
    tx: &'s Yielder,
    /// Every seq below this was read, or holds nothing for this stream.
    examined: u64,
    /// How far the hub had looked at the last wake-up.
    mark: u64,
    last_sent: tokio::time::Instant,
    /// One timer for the stream's life, moved only when it fires: a timer
    /// set anew after every delivery cost more than the delivery.
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    keep_alive_due: bool,
    /// Registered once, not at every wake-up: the shutdown token is shared
    /// by every stream, and re-registering with it each time was a lock
    /// taken twice per delivery. (A client that goes away needs no branch:
    /// the connection drops the body, and this with it.)
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Follower<'_> {
    /// The stream: its opening, its backlog (read in order up to the end
    /// of the ring: the hub may have looked at these entries before it
    /// knew this stream), then live entries where the hub points, through
    /// the shared follow loop.
    async fn run(&mut self, filter: &Arc<Filter>, at: Start) -> Result<(), Gone> {
        if self.output == FollowOutput::Sse {
            // Something at once, so that the client sees the stream open.
            self.out.extend_from_slice(b": ringtail follow\n\n");
            if let Some((id, newest)) = at.reset {
                self.sse_reset(id, newest, at.seq);
            }
            self.send().await?;
        }
        self.keep_alive
            .as_mut()
            .reset(self.last_sent + self.state.config.keep_alive);
        let mut cursor = self.state.ring.cursor(at.seq, &**filter);
        follow::run(self, &mut cursor).await
    }

    fn render_batch(&mut self, batch: &ReadBatch) {
        for item in batch.iter() {
            if self.left == 0 {
                return;
            }
            match (item, self.output) {
                (Read::Entry(e), FollowOutput::Sse) => {
                    let mut num = itoa::Buffer::new();
                    self.out.extend_from_slice(b"id: ");
                    self.out.extend_from_slice(num.format(e.seq).as_bytes());
                    self.out.extend_from_slice(b"\nevent: entry\ndata: ");
                    entry_object(&mut self.out, &e);
                    self.out.extend_from_slice(b"\n\n");
                    self.last_id = e.seq;
                    if e.seq >= self.live_from {
                        self.times.push(e.time);
                    }
                    self.left -= 1;
                }
                (Read::Entry(e), FollowOutput::Lines(format)) => {
                    format::write_entry(&mut self.out, format, &e);
                    if e.seq >= self.live_from {
                        self.times.push(e.time);
                    }
                    self.left -= 1;
                }
                (Read::Gap { first_seq, missed }, FollowOutput::Sse) => {
                    let mut num = itoa::Buffer::new();
                    let last = first_seq + missed - 1;
                    self.out.extend_from_slice(b"id: ");
                    self.out.extend_from_slice(num.format(last).as_bytes());
                    self.out
                        .extend_from_slice(b"\nevent: gap\ndata: {\"first_seq\":");
                    self.out.extend_from_slice(num.format(first_seq).as_bytes());
                    self.out.extend_from_slice(b",\"missed\":");
                    self.out.extend_from_slice(num.format(missed).as_bytes());
                    self.out.extend_from_slice(b"}\n\n");
                    self.last_id = last;
                    self.gaps.0 += 1;
                    self.gaps.1 += missed;
                }
                (Read::Gap { first_seq, missed }, FollowOutput::Lines(format)) => {
                    format::write_gap(&mut self.out, format, first_seq, missed, timefmt::now_ns());
                    self.gaps.0 += 1;
                    self.gaps.1 += missed;
                }
            }
        }
    }

    fn sse_reset(&mut self, id: u64, newest: u64, from: u64) {
        let _ = std::io::Write::write_fmt(
            &mut self.out,
            format_args!(
                "id: {}\nevent: reset\ndata: {{\"last_event_id\":{id},\"newest_seq\":{newest},\"from_seq\":{from}}}\n\n",
                from.saturating_sub(1)
            ),
        );
        self.last_id = from.saturating_sub(1);
    }

    /// A keep-alive comment; with an `id:` when entries the filter turned
    /// down moved the position past what the client holds.
    fn sse_keep_alive(&mut self, examined: u64) {
        self.out.extend_from_slice(b": keep-alive\n");
        if examined > self.last_id {
            let mut num = itoa::Buffer::new();
            self.out.extend_from_slice(b"id: ");
            self.out.extend_from_slice(num.format(examined).as_bytes());
            self.out.push(b'\n');
            self.last_id = examined;
        }
        self.out.push(b'\n');
    }

    /// Sends what is rendered and records the delivery latency of its
    /// entries.
    async fn send(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.tx.send(Ok(take_chunk(&mut self.out))).await;
        if !self.times.is_empty() {
            let now = timefmt::now_ns();
            self.state.metrics.delivery.record(
                self.shard,
                self.times.drain(..).map(|t| now.saturating_sub(t) / 1000),
            );
        }
        Ok(())
    }
}

impl<S: Select + Send + Sync> follow::Reader<S> for Follower<'_> {
    fn render(&mut self, batch: &ReadBatch) -> Flow {
        self.render_batch(batch);
        if self.left == 0 {
            Flow::Done
        } else {
            Flow::More
        }
    }

    fn buffered(&self) -> usize {
        self.out.len()
    }

    fn flush_at(&self) -> usize {
        CHUNK
    }

    fn room(&self) -> usize {
        self.max
    }

    async fn flush(&mut self, _position: u64) -> Result<(), Gone> {
        // Waiting streams watch for shutdown; one with a long backlog
        // checks at each (large) chunk.
        if self.state.shutdown.is_cancelled() {
            return abort(self.tx).await;
        }
        self.send().await
    }

    fn caught_up(&mut self, position: u64) {
        self.examined = self.examined.max(position).max(self.mark);
        if self.keep_alive_due && self.output == FollowOutput::Sse {
            self.sse_keep_alive(self.examined.saturating_sub(1));
        }
        if !self.out.is_empty() || self.keep_alive_due {
            self.last_sent = tokio::time::Instant::now();
        }
        self.keep_alive_due = false;
        // Caught up: a good moment for the self log (see report_gaps).
        super::stats::report_gaps(self.state, self.gaps.0, self.gaps.1);
        self.gaps = (0, 0);
    }

    async fn wait(&mut self, _cursor: &Cursor<'_, S>) -> Result<Wake, Gone> {
        // Live: read only the ranges the hub points to (see hub.rs).
        let keep_alive = self.state.config.keep_alive;
        loop {
            tokio::select! {
                _ = self.reg.waiter.notify.notified() => break,
                _ = self.keep_alive.as_mut() => {
                    let due = self.last_sent + keep_alive;
                    let now = tokio::time::Instant::now();
                    if now >= due {
                        self.keep_alive_due = true;
                        self.keep_alive.as_mut().reset(now + keep_alive);
                        break;
                    }
                    self.keep_alive.as_mut().reset(due);
                }
                _ = self.shutdown.as_mut() => return abort(self.tx).await.map(|()| Wake::All),
            }
        }
        let mut ranges = Vec::new();
        self.mark = self.reg.take(&mut ranges);
        Ok(Wake::Ranges(ranges))
    }
}

/// Ends a stream on shutdown with an error, so that the client does not
/// take it for complete.
async fn abort(tx: &Yielder) -> Result<(), Gone> {
    tx.send(Err(super::shutting_down())).await;
    Err(Gone)
}
