//! The memlogq server: accepts query socket connections, reads each
//! request ([`super::protocol`]), and streams its answer: a dump read from
//! a snapshot, or a follow through the shared follow loop
//! ([`crate::serve::follow`]). It owns the per-connection limits (idle
//! timeout, client slots, send buffer boosts) and the throttled self-log
//! reports of what went wrong with clients.

use std::io::{self, Write as _};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::Conn;
use super::protocol::{parse_request, ring_id_text, Mode, Request, RequestError, MAX_REQUEST_LEN};
use crate::format::{self, Format};
use crate::ring::{Cursor, Read, ReadBatch, ReadStatus, Ring, Select};
use crate::selflog::SelfLog;
use crate::serve::follow::{self, tail_start, Flow, Gone, Wake};
use crate::sources::pace::Pacer;
use crate::timefmt;

/// How long a client may take to send its request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many query connections may be open at once.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Output is written to the socket once this much is buffered (and at the
/// end of a dump, and whenever a follower is caught up).
const FLUSH_AT: usize = 256 * 1024;
/// At most this many entries per ring read.
const MAX_BATCH: usize = 4096;
/// How long a closing connection waits for the client to close its side,
/// so that bytes it sent and we did not read do not turn our close into a
/// reset that would destroy the end of the answer.
const LINGER: Duration = Duration::from_secs(1);
/// The kernel send buffer of a connection while it streams a dump. With the
/// default (about 208 KiB) a dump of a full 1M-entry ring takes a thousand
/// wake-ups of the client; 4 MiB lets the client take 1 MiB per read and
/// the daemon render ahead while the client parses (0.18 s → 0.11 s for
/// 178 MB in `memlog_bench.py`).
const DUMP_SNDBUF: usize = 4 << 20;
/// At most this many dumps stream with [`DUMP_SNDBUF`] at once; the others
/// keep the default. Bounds the kernel memory that clients who ask for a
/// dump and then stop reading can pin to `DUMP_BOOSTS` × 4 MiB.
const DUMP_BOOSTS: usize = 8;
/// At most one self-log entry per kind of event per this interval.
const SELFLOG_INTERVAL: Duration = Duration::from_secs(10);

/// The line format of mode-byte answers (`--query-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// memlogd's JSON lines: `{"time":...,"source":...,"msg":...}`.
    #[default]
    Json,
    /// Older memlogd's text lines: `<time>,<source>;<msg>`.
    Text,
}

impl QueryFormat {
    pub fn format(self) -> Format {
        match self {
            QueryFormat::Json => Format::Json,
            QueryFormat::Text => Format::Text,
        }
    }
}

/// How the query socket behaves.
#[derive(Clone, Debug)]
pub struct QueryConfig {
    /// The line format of mode-byte answers.
    pub format: QueryFormat,
    /// A client that sends no complete request within this time is dropped.
    pub idle_timeout: Duration,
    /// More connections than this are refused (closed at once).
    pub max_clients: usize,
}

impl Default for QueryConfig {
    fn default() -> QueryConfig {
        QueryConfig {
            format: QueryFormat::Json,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// One kind of self-log event, reported at most once per interval with
/// the totals since the last report.
struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Default)]
struct ThrottleState {
    last: Option<Instant>,
    events: u64,
    amount: u64,
}

impl Throttle {
    fn new() -> Throttle {
        Throttle {
            state: Mutex::new(ThrottleState::default()),
        }
    }

    /// Counts `events` events; returns `(events, amount)` since the last
    /// report when a report is due now.
    fn note(&self, events: u64, amount: u64) -> Option<(u64, u64)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.events += events;
        s.amount += amount;
        let now = Instant::now();
        if s.last
            .is_some_and(|t| now.duration_since(t) < SELFLOG_INTERVAL)
        {
            return None;
        }
        s.last = Some(now);
        let due = (s.events, s.amount);
        s.events = 0;
        s.amount = 0;
        Some(due)
    }
}

/// What every connection task shares.
struct Shared {
    ring: Arc<Ring>,
    selflog: SelfLog,
    config: QueryConfig,
    shutdown: CancellationToken,
    gaps: Throttle,
    refused: Throttle,
    bad_mode: Throttle,
    accept_errors: Throttle,
    /// Permits for a large send buffer while dumping ([`DUMP_BOOSTS`]).
    dump_boosts: Arc<Semaphore>,
    /// Followers report their progress here, so that sources can wait for
    /// them in a burst.
    pacer: Arc<Pacer>,
}

impl Shared {
    /// Reports the gaps a connection has sent since its last report. Called
    /// when the reader is caught up or done, never in the middle of a read:
    /// the self-log entry is itself appended to the ring, and must not
    /// evict what a lapped reader is about to read.
    fn report_gaps(&self, tally: &mut GapTally) {
        if tally.gaps == 0 {
            return;
        }
        let (gaps, missed) = (tally.gaps, tally.missed);
        *tally = GapTally::default();
        if let Some((events, missed)) = self.gaps.note(gaps, missed) {
            let more = if events > 1 {
                format!(" (in {events} gaps since the last report)")
            } else {
                String::new()
            };
            self.selflog.warn(format!(
                "reader on query socket missed {missed} lines{more}: it read slower than the ring \
                 evicted; it was told in band"
            ));
        }
    }
}

/// Gaps one connection sent and has not reported to the self log yet.
#[derive(Clone, Copy, Debug, Default)]
struct GapTally {
    gaps: u64,
    missed: u64,
}

/// Serves the query socket until `shutdown` is cancelled; then stops
/// accepting, ends every connection, and returns once their tasks are done.
pub async fn serve(
    listener: UnixListener,
    pipeline: crate::sources::Pipeline,
    config: QueryConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_clients));
    let pacer = pipeline.pacer().clone();
    let shared = Arc::new(Shared {
        ring: pipeline.ring().clone(),
        selflog: pipeline.selflog().clone(),
        config,
        shutdown: shutdown.clone(),
        gaps: Throttle::new(),
        refused: Throttle::new(),
        bad_mode: Throttle::new(),
        accept_errors: Throttle::new(),
        dump_boosts: Arc::new(Semaphore::new(DUMP_BOOSTS)),
        pacer,
    });
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some((n, _)) = shared.accept_errors.note(1, 1) {
                    shared.selflog.error(format!(
                        "query socket: cannot accept a connection ({n} times since the last report): \
                         {e}; if the process is out of file descriptors, raise its limit (ulimit -n)"
                    ));
                }
                // Out of fds (or a similar resource): give the system a
                // moment instead of spinning on a listener that stays ready.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some((n, _)) = shared.refused.note(1, 1) {
                shared.selflog.warn(format!(
                    "query socket: refused {n} connections since the last report: all {} client slots \
                     are in use",
                    shared.config.max_clients
                ));
            }
            drop(stream);
            continue;
        };
        tasks.spawn(connection(stream, shared.clone(), permit));
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// One client, from its first byte to its close.
async fn connection(stream: UnixStream, shared: Arc<Shared>, _permit: OwnedSemaphorePermit) {
    let Ok(stream) = Conn::new(stream) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + shared.config.idle_timeout;
    let mut head = [0u8; 512];
    let n = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout_at(deadline, stream.read(&mut head)) => match r {
            Ok(Ok(n)) if n > 0 => n,
            // Closed without a request, an error, or silent too long: drop it.
            _ => return,
        },
    };
    let request = match head[0] {
        b'{' => {
            let line = match read_line(&stream, &head[..n], deadline, &shared.shutdown).await {
                Some(line) => line,
                None => return,
            };
            match line.and_then(|l| parse_request(&l)) {
                Ok(r) => r,
                Err(e) => return refuse(&stream, &e).await,
            }
        }
        b => match Mode::from_byte(b) {
            Some(mode) => Request::from_mode(mode, shared.config.format.format()),
            None => {
                if let Some((n, _)) = shared.bad_mode.note(1, 1) {
                    shared.selflog.info(format!(
                        "query socket: closed {n} connections that sent an unknown first byte \
                         (last one 0x{b:02x}); expected mode 0, 1, 2 or a JSON request"
                    ));
                }
                return;
            }
        },
    };
    let mut tally = GapTally::default();
    let result = answer(&shared, &request, &stream, &mut tally).await;
    shared.report_gaps(&mut tally);
    match result {
        Ok(()) => linger(&stream).await,
        Err(AnswerError::Request(e)) => {
            let _ = stream.write_all(&e.line()).await;
            linger(&stream).await;
        }
        // The client went away, or shutdown: nothing more to say.
        Err(AnswerError::Gone) => {}
    }
}

/// Reads the rest of a JSON request line: `Some(Ok(line))`, `Some(Err)`
/// for a line too long, `None` when the client went away or timed out.
async fn read_line(
    stream: &Conn,
    first: &[u8],
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> Option<Result<Vec<u8>, RequestError>> {
    let mut line = Vec::with_capacity(first.len().max(256));
    let mut chunk: &[u8] = first;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = memchr::memchr(b'\n', chunk) {
            line.extend_from_slice(&chunk[..i]);
            return Some(if line.len() > MAX_REQUEST_LEN {
                Err(RequestError::TooLong)
            } else {
                Ok(line)
            });
        }
        line.extend_from_slice(chunk);
        if line.len() > MAX_REQUEST_LEN {
            return Some(Err(RequestError::TooLong));
        }
        let n = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => match r {
                Ok(Ok(n)) => n,
                _ => return None,
            },
        };
        if n == 0 {
            // The client closed its side after the object: take it as the line.
            return Some(Ok(line));
        }
        chunk = &buf[..n];
    }
}

async fn refuse(stream: &Conn, e: &RequestError) {
    let _ = stream.write_all(&e.line()).await;
    linger(stream).await;
}

/// Ends our side and waits (briefly) for the client to end its side,
/// throwing away what it still sends. Closing with unread bytes in the
/// socket would reset the connection, and the client could lose the end
/// of the answer.
async fn linger(stream: &Conn) {
    stream.shutdown_write();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

enum AnswerError {
    /// The request cannot be served; tell the client.
    Request(RequestError),
    /// The client is gone or the server is shutting down.
    Gone,
}

/// Writes `out` to the client unless shutdown comes first.
async fn send(
    wr: &Conn,
    out: &mut Vec<u8>,
    shutdown: &CancellationToken,
) -> Result<(), AnswerError> {
    if out.is_empty() {
        return Ok(());
    }
    tokio::select! {
        _ = shutdown.cancelled() => Err(AnswerError::Gone),
        r = wr.write_all(out) => {
            out.clear();
            r.map_err(|_| AnswerError::Gone)
        }
    }
}

/// Entries per ring read: about [`FLUSH_AT`] bytes of messages, judged
/// from the ring's average room per line.
fn batch_size(ring: &Ring) -> usize {
    let g = ring.geometry();
    let avg = (g.data_words * 8 / g.slots.max(1)).max(16) as usize;
    (FLUSH_AT / avg).clamp(256, MAX_BATCH)
}

/// Streams the answer to `request`.
async fn answer(
    shared: &Shared,
    request: &Request,
    wr: &Conn,
    tally: &mut GapTally,
) -> Result<(), AnswerError> {
    let ring: &Ring = &shared.ring;
    let filter = &request.filter;
    let format = request.format;
    let snap = ring.snapshot();
    let mut start = if request.mode.dumps() {
        snap.first()
    } else {
        snap.end()
    };
    if let Some(given) = request.ring_id.filter(|&id| id != ring.id()) {
        return Err(AnswerError::Request(RequestError::OtherRing {
            given,
            ring: ring.id(),
        }));
    }
    if let Some(seen) = request.since_seq {
        // A client that saw seq N of this ring has N < end (N = end - 1:
        // it is caught up, and gets what comes next).
        let newest = snap.end().saturating_sub(1);
        if seen > newest {
            return Err(AnswerError::Request(RequestError::FutureSeq {
                since_seq: seen,
                newest,
            }));
        }
        start = seen + 1;
    }
    if let Some(since) = filter.since_ns() {
        start = start.max(snap.seek_time(since));
    }
    if let Some(n) = request.tail {
        start = start.max(tail_start(&snap, filter, n, start));
    }
    // Held to the end of a dump; a dump+follow gives it back once caught up.
    let boost = if request.mode.dumps() {
        SendBufferBoost::new(wr.as_fd(), &shared.dump_boosts)
    } else {
        None
    };
    let mut out = Vec::with_capacity(FLUSH_AT + 64 * 1024);
    if request.ring_info {
        let _ = writeln!(
            out,
            "{{\"ring\":{{\"id\":\"{}\",\"first_seq\":{},\"end_seq\":{}}}}}",
            ring_id_text(ring.id()),
            snap.first(),
            snap.end()
        );
    }
    let mut left = request.limit.unwrap_or(u64::MAX);
    let max = batch_size(ring);
    let mut batch = ReadBatch::new();

    if !request.mode.follows() {
        // The evicted stretch between since_seq and the snapshot: the
        // snapshot cursor clamps its start, so report it here.
        if start < snap.first() {
            let missed = snap.first() - start;
            format::write_gap(&mut out, format, start, missed, timefmt::now_ns());
            tally.gaps += 1;
            tally.missed += missed;
        }
        // Times never decrease in seq order: entries from the first one at
        // or after `until` on cannot match, so the dump stops there.
        let stop = filter.until_ns().map_or(snap.end(), |u| snap.seek_time(u));
        let mut cursor = snap.cursor_from(start, filter);
        while cursor.position() < stop {
            let room = (stop - cursor.position()).min(max as u64) as usize;
            let status = cursor.read(&mut batch, room);
            let done = render(&batch, format, &mut out, &mut left, tally);
            if done || status == ReadStatus::End {
                break;
            }
            if out.len() >= FLUSH_AT {
                send(wr, &mut out, &shared.shutdown).await?;
            }
        }
        return send(wr, &mut out, &shared.shutdown).await;
    }

    // Follow, or dump then follow: one cursor from the start on, so the
    // seam between the two has no gap and no duplicate.
    let mut cursor = ring.cursor(start, filter);
    let mut reader = Follower {
        shared,
        format,
        out,
        left,
        tally,
        max,
        pace: shared.pacer.follower(start),
        boost,
        conn: wr,
    };
    follow::run(&mut reader, &mut cursor)
        .await
        .map_err(|Gone| AnswerError::Gone)
}

/// A query socket follower, for the shared follow loop ([`follow::run`]).
struct Follower<'a> {
    shared: &'a Shared,
    format: Format,
    /// Rendered, not yet sent.
    out: Vec<u8>,
    /// Entries still to send (`limit`).
    left: u64,
    tally: &'a mut GapTally,
    /// Entries per ring read.
    max: usize,
    pace: crate::sources::pace::Follower,
    /// The dump's larger send buffer, given back once caught up.
    boost: Option<SendBufferBoost>,
    conn: &'a Conn,
}

impl<S: Select + Send + Sync> follow::Reader<S> for Follower<'_> {
    fn render(&mut self, batch: &ReadBatch) -> Flow {
        if render(
            batch,
            self.format,
            &mut self.out,
            &mut self.left,
            self.tally,
        ) {
            Flow::Done
        } else {
            Flow::More
        }
    }

    fn buffered(&self) -> usize {
        self.out.len()
    }

    fn flush_at(&self) -> usize {
        FLUSH_AT
    }

    fn room(&self) -> usize {
        self.max
    }

    async fn flush(&mut self, position: u64) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        send(self.conn, &mut self.out, &self.shared.shutdown)
            .await
            .map_err(|_| Gone)?;
        // The client has taken everything read so far.
        self.pace.progress(position);
        Ok(())
    }

    fn caught_up(&mut self, _position: u64) {
        // The backlog is out: a follower keeps the default buffer.
        if let Some(boost) = self.boost.take() {
            boost.end(self.conn.as_fd());
        }
        self.shared.report_gaps(self.tally);
    }

    async fn wait(&mut self, cursor: &Cursor<'_, S>) -> Result<Wake, Gone> {
        let mut scratch = [0u8; 1024];
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Err(Gone),
                _ = cursor.wait() => return Ok(Wake::All),
                // Followers only read; whatever they send is thrown away,
                // and end of file means they went away.
                r = self.conn.read(&mut scratch) => match r {
                    Ok(0) | Err(_) => return Err(Gone),
                    Ok(_) => {}
                },
            }
        }
    }
}

/// A connection's send buffer raised to [`DUMP_SNDBUF`], holding one of
/// the [`DUMP_BOOSTS`] permits until [`SendBufferBoost::end`] or drop (a
/// connection that closes needs no size put back).
struct SendBufferBoost {
    /// The size to put back (as `SO_SNDBUF` takes it: half what it reports).
    old: usize,
    _permit: OwnedSemaphorePermit,
}

impl SendBufferBoost {
    /// `None` when all permits are taken or the socket refuses (the dump
    /// then streams with the default buffer, only slower).
    fn new(stream: BorrowedFd<'_>, permits: &Arc<Semaphore>) -> Option<SendBufferBoost> {
        use rustix::net::sockopt;
        let permit = permits.clone().try_acquire_owned().ok()?;
        // The kernel reports twice the size it was given (it counts its
        // bookkeeping too).
        let old = sockopt::socket_send_buffer_size(stream).ok()? / 2;
        if old >= DUMP_SNDBUF {
            return None;
        }
        // As root the size may pass net.core.wmem_max; otherwise the kernel
        // caps it there.
        sockopt::set_socket_send_buffer_size_force(stream, DUMP_SNDBUF)
            .or_else(|_| sockopt::set_socket_send_buffer_size(stream, DUMP_SNDBUF))
            .ok()?;
        Some(SendBufferBoost {
            old,
            _permit: permit,
        })
    }

    /// Puts the old size back. Bytes already queued stay queued; new
    /// writes wait until the queue is below the old size again.
    fn end(self, stream: BorrowedFd<'_>) {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(stream, self.old);
    }
}

/// Renders a batch; returns true when the limit is reached.
fn render(
    batch: &ReadBatch,
    format: Format,
    out: &mut Vec<u8>,
    left: &mut u64,
    tally: &mut GapTally,
) -> bool {
    if *left == 0 {
        return true;
    }
    for item in batch.iter() {
        match item {
            Read::Entry(e) => {
                format::write_entry(out, format, &e);
                *left -= 1;
                if *left == 0 {
                    return true;
                }
            }
            Read::Gap { first_seq, missed } => {
                format::write_gap(out, format, first_seq, missed, timefmt::now_ns());
                tally.gaps += 1;
                tally.missed += missed;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reports_totals() {
        let t = Throttle::new();
        assert_eq!(t.note(1, 5), Some((1, 5)));
        assert_eq!(t.note(1, 7), None);
        assert_eq!(t.note(2, 1), None);
        t.state.lock().unwrap().last = Some(Instant::now() - SELFLOG_INTERVAL);
        assert_eq!(t.note(1, 2), Some((4, 10)));
    }
}
