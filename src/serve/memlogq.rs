//! The memlogd query socket ("memlogq"): a unix stream socket on which a
//! client asks for a dump, a follow, or both, and reads entries as lines.
//!
//! # What a client can rely on
//!
//! **memlogd's protocol, unchanged.** The client writes one mode byte:
//! `0` dump (every entry in the ring at the moment of the request, oldest
//! first, then the server closes), `1` follow (entries published after the
//! request, until the client goes away), `2` dump then follow, with no
//! entry missing or repeated at the seam (one cursor reads the dump and
//! goes on following). Lines are memlogd's JSON (or the older text lines,
//! [`QueryFormat::Text`]). Bytes after the mode byte are read and thrown
//! away. Any other first byte closes the connection at once. A client that
//! sends nothing is dropped after [`QueryConfig::idle_timeout`], and delays
//! no one meanwhile: every connection is its own task.
//!
//! **Nothing is lost silently.** A reader that falls behind is not cut off
//! and does not make anyone wait: it reads the ring at its own pace, and if
//! the ring evicts entries before it gets to them it receives, in band, a
//! line from source `ringtail` saying how many it missed (see
//! [`format::write_gap`]), and ringtail's self log records it. Memory per
//! connection is bounded (one read batch and one output buffer of a few
//! hundred KiB), however slow the reader and however big the ring.
//!
//! **A richer request.** When the first byte is `{`, the client sends one
//! JSON object on one line (at most [`MAX_REQUEST_LEN`] bytes), for example
//! `{"mode":"dump+follow","since_seq":1234,"sources":["web*"],"contains":"error"}`.
//! Fields (all optional; unknown fields are an error):
//!
//! | field | meaning |
//! |-------|---------|
//! | `mode` | `"dump"` (default), `"follow"`, `"dump+follow"` |
//! | `since_seq` | resume strictly after this seq (the last one the client saw); evicted entries in between come first as a gap record |
//! | `tail` | start with the last N matching entries (dump modes) |
//! | `limit` | send at most N entries, then close |
//! | `sources` | source names or patterns with `*` and `?` |
//! | `streams` | `"stdout"`, `"stderr"` |
//! | `labels` | `{"key":"value"}`: origin labels that must match |
//! | `since`, `until` | times: RFC 3339, Unix seconds (number or string), or `"10m"` ago; `until` only with `"dump"` |
//! | `contains` | the message contains this text |
//! | `regex` | the message matches this regular expression |
//! | `format` | `"ndjson"` (default), or any [`Format`] |
//! | `ring_info` | `true`: the answer starts with `{"ring":{"id":"<16 hex digits>","first_seq":N,"end_seq":N}}` (ndjson only) |
//! | `ring_id` | the ring `since_seq` was read from; if the daemon's ring is another (it restarted without `--ring-file`), the request is refused, so a resuming client starts over instead of skipping |
//!
//! The answer is NDJSON entries carrying `seq`, with explicit
//! `{"gap":{"first_seq":N,"missed":N}}` records, so a reader that saw seq N
//! reconnects with `since_seq: N` and neither misses nor repeats anything.
//! A bad request gets one line `{"error":"..."}`, then the server closes.
//!
//! The request parser is the pure function [`parse_request`]; [`connect`]
//! is the small synchronous client used by `ringtail read` and the tests.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{ReadHalf, WriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::filter::{Filter, FilterBuilder, FilterError};
use crate::format::{self, Format};
use crate::ring::{Read, ReadBatch, ReadStatus, Ring, Snapshot};
use crate::selflog::SelfLog;
use crate::sources::pace::Pacer;
use crate::timefmt::{self, TimeRules};

/// How long a client may take to send its request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many query connections may be open at once.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// The longest JSON request line.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

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

/// What the client asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Everything in the ring now, then close (mode byte `0`).
    #[default]
    #[serde(rename = "dump")]
    Dump,
    /// Entries published from now on (mode byte `1`).
    #[serde(rename = "follow")]
    Follow,
    /// Dump, then follow, with nothing missing or repeated (mode byte `2`).
    #[serde(rename = "dump+follow")]
    DumpFollow,
}

impl Mode {
    /// memlogd's mode byte.
    pub fn byte(self) -> u8 {
        match self {
            Mode::Dump => 0,
            Mode::Follow => 1,
            Mode::DumpFollow => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Dump),
            1 => Some(Mode::Follow),
            2 => Some(Mode::DumpFollow),
            _ => None,
        }
    }

    fn dumps(self) -> bool {
        self != Mode::Follow
    }

    fn follows(self) -> bool {
        self != Mode::Dump
    }
}

/// A time in a JSON request: a number (Unix seconds, ms or ns by digit
/// count, as in [`timefmt`]) or text (RFC 3339, `"10m"` ago, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Int(u64),
    Float(f64),
    Text(String),
}

impl TimeValue {
    fn text(&self) -> String {
        match self {
            TimeValue::Int(v) => v.to_string(),
            TimeValue::Float(v) => format!("{v}"),
            TimeValue::Text(s) => s.clone(),
        }
    }
}

/// The JSON request line as it travels (see the module docs). Clients
/// build one and send it with [`connect`]; the server reads it with
/// [`parse_request`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonRequest {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<TimeValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<TimeValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The ring `since_seq` was read from (16 hex digits, from a `ring`
    /// record): a daemon whose ring is another refuses the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_id: Option<String>,
    /// Start the answer with a `ring` record (ndjson only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ring_info: bool,
}

/// A checked request, ready to serve.
#[derive(Clone, Debug)]
pub struct Request {
    pub mode: Mode,
    /// Start strictly after this seq.
    pub since_seq: Option<u64>,
    /// Start with the last N matching entries.
    pub tail: Option<u64>,
    /// Send at most this many entries.
    pub limit: Option<u64>,
    pub filter: Filter,
    pub format: Format,
    /// The ring `since_seq` belongs to.
    pub ring_id: Option<u64>,
    /// Start with a `ring` record.
    pub ring_info: bool,
}

impl Request {
    /// What a memlogd mode byte asks for.
    pub fn from_mode(mode: Mode, format: Format) -> Request {
        Request {
            mode,
            since_seq: None,
            tail: None,
            limit: None,
            filter: Filter::all(),
            format,
            ring_id: None,
            ring_info: false,
        }
    }
}

/// Why a JSON request was refused. The server sends its text back as
/// `{"error":"..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// More than [`MAX_REQUEST_LEN`] bytes without a newline.
    TooLong,
    /// Not a JSON object of the expected shape (serde's message).
    Json(String),
    /// A filter field with a bad value.
    Filter(FilterError),
    /// A field that does not apply to the mode.
    NotForMode { field: &'static str, mode: Mode },
    /// `since_seq` past the newest entry: the ring is not the one the
    /// client read before.
    FutureSeq { since_seq: u64, newest: u64 },
    /// `ring_id` names another ring than the daemon's.
    OtherRing { given: u64, ring: u64 },
    /// A field with a value it cannot take.
    Field(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong => write!(
                f,
                "request longer than {MAX_REQUEST_LEN} bytes: send one JSON object on one line"
            ),
            RequestError::Json(e) => write!(
                f,
                "bad request: {e}; send one JSON object on one line, such as \
                 {{\"mode\":\"dump+follow\",\"since_seq\":0,\"sources\":[\"web*\"]}}"
            ),
            RequestError::Filter(e) => write!(f, "bad request: {e}"),
            RequestError::NotForMode { field, mode } => {
                let applies = match *field {
                    "until" => "only to \"dump\"",
                    _ => "only to \"dump\" and \"dump+follow\"",
                };
                let mode = serde_json::to_string(mode).unwrap_or_default();
                write!(
                    f,
                    "bad request: `{field}` applies {applies}, not to mode {mode}"
                )
            }
            RequestError::FutureSeq { since_seq, newest } => write!(
                f,
                "since_seq {since_seq} is past the newest entry (seq {newest}): this ring was \
                 reset or replaced since that seq was read; ask again without since_seq"
            ),
            RequestError::OtherRing { given, ring } => write!(
                f,
                "ring_id {given:016x} is not this daemon's ring ({ring:016x}): the ring was \
                 replaced since that since_seq was read; ask again without since_seq and ring_id"
            ),
            RequestError::Field(e) => write!(f, "bad request: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<FilterError> for RequestError {
    fn from(e: FilterError) -> RequestError {
        RequestError::Filter(e)
    }
}

/// A ring id as the protocol carries it: 16 hex digits (a JSON number
/// could not carry every u64 to every client).
pub fn ring_id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// The ring id in `text`, if it is 16 hex digits.
pub fn parse_ring_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16)
        .ok()
        .filter(|_| text.len() == 16)
}

/// Parses and checks one JSON request line (trailing newline optional).
/// Relative times count back from now.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    parse_request_at(line, timefmt::now_ns())
}

/// [`parse_request`] with "now" given.
pub fn parse_request_at(line: &[u8], now_ns: u64) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong);
    }
    let req: JsonRequest =
        serde_json::from_slice(line).map_err(|e| RequestError::Json(e.to_string()))?;
    if req.tail.is_some() && !req.mode.dumps() {
        return Err(RequestError::NotForMode {
            field: "tail",
            mode: req.mode,
        });
    }
    if req.until.is_some() && req.mode != Mode::Dump {
        return Err(RequestError::NotForMode {
            field: "until",
            mode: req.mode,
        });
    }
    let format = req.format.unwrap_or(Format::Ndjson);
    if req.ring_info && format != Format::Ndjson {
        return Err(RequestError::Field(
            "`ring_info` needs format \"ndjson\" (the default)".into(),
        ));
    }
    let ring_id = match &req.ring_id {
        None => None,
        Some(hex) => Some(parse_ring_id(hex).ok_or_else(|| {
            RequestError::Field(format!(
                "`ring_id` is {hex:?}; send the 16 hex digits of a `ring` record's id"
            ))
        })?),
    };
    let mut b = FilterBuilder::new().now(now_ns);
    for s in &req.sources {
        b = b.source(s.as_str());
    }
    for s in &req.streams {
        b.param("stream", s)?;
    }
    for (k, v) in &req.labels {
        b.param(&format!("label.{k}"), v)?;
    }
    let time = |param: &str, v: &TimeValue| {
        timefmt::parse_time(&v.text(), now_ns, TimeRules::RINGTAIL).map_err(|error| {
            FilterError::Time {
                param: param.to_string(),
                error,
            }
        })
    };
    if let Some(v) = &req.since {
        b = b.since(time("since", v)?);
    }
    if let Some(v) = &req.until {
        b = b.until(time("until", v)?);
    }
    if let Some(c) = &req.contains {
        b = b.contains(c);
    }
    if let Some(r) = &req.regex {
        b = b.regex(r.as_str());
    }
    Ok(Request {
        mode: req.mode,
        since_seq: req.since_seq,
        tail: req.tail,
        limit: req.limit,
        filter: b.build()?,
        format,
        ring_id,
        ring_info: req.ring_info,
    })
}

/// What [`connect`] sends.
// One is built per connection: boxing the large variant would only make
// callers noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ClientRequest {
    /// A memlogd mode byte.
    Mode(Mode),
    /// A JSON request line.
    Json(JsonRequest),
}

/// Connects to the query socket at `path` and sends `request`; read the
/// answer from the returned stream. Errors name the path and say what to
/// check.
pub fn connect(path: &Path, request: &ClientRequest) -> io::Result<std::os::unix::net::UnixStream> {
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "the query socket hands out every log on the host, so it is mode 0660: \
                 run as its owner or a member of its group"
            }
            _ => "is `ringtail serve` running? `ringtail read --socket PATH` reads another socket",
        };
        io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}; {hint}", path.display()),
        )
    })?;
    let sent = match request {
        ClientRequest::Mode(m) => s.write_all(&[m.byte()]),
        ClientRequest::Json(r) => {
            let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
            line.push(b'\n');
            s.write_all(&line)
        }
    };
    sent.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot send the request to {}: {e}", path.display()),
        )
    })?;
    Ok(s)
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
async fn connection(mut stream: UnixStream, shared: Arc<Shared>, _permit: OwnedSemaphorePermit) {
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
            let line = match read_line(&mut stream, &head[..n], deadline, &shared.shutdown).await {
                Some(line) => line,
                None => return,
            };
            match line.and_then(|l| parse_request(&l)) {
                Ok(r) => r,
                Err(e) => return refuse(stream, &e).await,
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
    let (mut rd, mut wr) = stream.split();
    let mut tally = GapTally::default();
    let result = answer(&shared, &request, &mut rd, &mut wr, &mut tally).await;
    shared.report_gaps(&mut tally);
    match result {
        Ok(()) => linger(&mut rd, &mut wr).await,
        Err(AnswerError::Request(e)) => {
            let _ = wr.write_all(&error_line(&e)).await;
            linger(&mut rd, &mut wr).await;
        }
        // The client went away, or shutdown: nothing more to say.
        Err(AnswerError::Gone) => {}
    }
}

/// Reads the rest of a JSON request line: `Some(Ok(line))`, `Some(Err)`
/// for a line too long, `None` when the client went away or timed out.
async fn read_line(
    stream: &mut UnixStream,
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

/// `{"error":"..."}` and a newline.
fn error_line(e: &RequestError) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({ "error": e.to_string() }))
        .expect("a JSON object of one string serialises");
    v.push(b'\n');
    v
}

async fn refuse(mut stream: UnixStream, e: &RequestError) {
    let (mut rd, mut wr) = stream.split();
    let _ = wr.write_all(&error_line(e)).await;
    linger(&mut rd, &mut wr).await;
}

/// Ends our side and waits (briefly) for the client to end its side,
/// throwing away what it still sends. Closing with unread bytes in the
/// socket would reset the connection, and the client could lose the end
/// of the answer.
async fn linger(rd: &mut ReadHalf<'_>, wr: &mut WriteHalf<'_>) {
    let _ = wr.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = rd.read(&mut buf).await {
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
    wr: &mut WriteHalf<'_>,
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

/// The first seq of the last `n` entries at or after `floor` that pass
/// `filter` (or `floor` when there are fewer).
pub(crate) fn tail_start(snap: &Snapshot<'_>, filter: &Filter, n: u64, floor: u64) -> u64 {
    if n == 0 {
        return snap.end();
    }
    let mut rev = snap.rev(filter);
    let mut batch = ReadBatch::new();
    let mut seen = 0;
    loop {
        if rev.read(&mut batch, MAX_BATCH) == ReadStatus::End {
            return floor;
        }
        for item in batch.iter() {
            if let Read::Entry(e) = item {
                if e.seq < floor {
                    return floor;
                }
                seen += 1;
                if seen == n {
                    return e.seq;
                }
            }
        }
        if rev.position() <= floor {
            return floor;
        }
    }
}

/// Streams the answer to `request`.
async fn answer(
    shared: &Shared,
    request: &Request,
    rd: &mut ReadHalf<'_>,
    wr: &mut WriteHalf<'_>,
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
    let mut boost = if request.mode.dumps() {
        SendBufferBoost::new(wr.as_ref(), &shared.dump_boosts)
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
    let pace = shared.pacer.follower(start);
    let mut scratch = [0u8; 1024];
    loop {
        let status = cursor.read(&mut batch, max);
        if render(&batch, format, &mut out, &mut left, tally) {
            return send(wr, &mut out, &shared.shutdown).await;
        }
        if status == ReadStatus::CaughtUp || out.len() >= FLUSH_AT {
            send(wr, &mut out, &shared.shutdown).await?;
            // The client has taken everything read so far.
            pace.progress(cursor.position());
        }
        if status != ReadStatus::CaughtUp {
            continue;
        }
        // The backlog is out: a follower keeps the default buffer.
        if let Some(boost) = boost.take() {
            boost.end(wr.as_ref());
        }
        shared.report_gaps(tally);
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Err(AnswerError::Gone),
            _ = cursor.wait() => {}
            // Followers only read; whatever they send is thrown away, and
            // end of file means they went away.
            r = rd.read(&mut scratch) => match r {
                Ok(0) | Err(_) => return Err(AnswerError::Gone),
                Ok(_) => {}
            },
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
    fn new(stream: &UnixStream, permits: &Arc<Semaphore>) -> Option<SendBufferBoost> {
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
    fn end(self, stream: &UnixStream) {
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
    fn ring_fields() {
        let r = parse_request(br#"{"since_seq":7,"ring_id":"00000000000000ff","ring_info":true}"#)
            .unwrap();
        assert_eq!((r.ring_id, r.ring_info), (Some(255), true));
        let e = |line: &str| parse_request(line.as_bytes()).unwrap_err().to_string();
        assert!(e(r#"{"ring_id":"ff"}"#).contains("16 hex digits"));
        assert!(e(r#"{"ring_id":"zz00000000000000"}"#).contains("16 hex digits"));
        assert!(e(r#"{"ring_info":true,"format":"json"}"#).contains("ndjson"));
        let refused = RequestError::OtherRing { given: 1, ring: 2 }.to_string();
        assert!(refused.contains("since_seq") && refused.contains("0000000000000002"));
    }

    #[test]
    fn parses_a_full_request() {
        let now = 10_000_000_000_000u64;
        let r = parse_request_at(
            br#"{"mode":"dump+follow","since_seq":7,"sources":["web*"],"streams":["stderr"],
                "labels":{"app":"x"},"since":"10s","contains":"err","regex":"^E","limit":5,
                "tail":3,"format":"logread"}"#,
            now,
        )
        .unwrap();
        assert_eq!(r.mode, Mode::DumpFollow);
        assert_eq!(r.since_seq, Some(7));
        assert_eq!(r.limit, Some(5));
        assert_eq!(r.tail, Some(3));
        assert_eq!(r.format, Format::Logread);
        assert_eq!(r.filter.since_ns(), Some(now - 10_000_000_000));
        assert_eq!(r.filter.source_patterns(), ["web*"]);
    }

    #[test]
    fn defaults_and_times() {
        let r = parse_request_at(b"{}\n", 0).unwrap();
        assert_eq!(r.mode, Mode::Dump);
        assert_eq!(r.format, Format::Ndjson);
        assert!(r.filter.is_all());
        let r = parse_request_at(br#"{"since":1531041413,"until":1531041414.5}"#, 0).unwrap();
        assert_eq!(r.filter.since_ns(), Some(1_531_041_413_000_000_000));
        assert_eq!(r.filter.until_ns(), Some(1_531_041_414_500_000_000));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| parse_request_at(s.as_bytes(), 0).unwrap_err().to_string();
        assert!(e(r#"{"mode":"dump","bogus":1}"#).contains("unknown field `bogus`"));
        assert!(e(r#"{"mode":"tail"}"#).contains("unknown variant"));
        assert!(e("not json").contains("one JSON object on one line"));
        assert!(e(r#"{"since_seq":-1}"#).starts_with("bad request"));
        assert!(e(r#"{"regex":"("}"#).contains("parameter `regex`"));
        assert!(e(r#"{"streams":["stdin"]}"#).contains("stdout or stderr"));
        assert!(e(r#"{"since":"soon"}"#).contains("parameter `since`"));
        assert!(e(r#"{"mode":"follow","tail":3}"#).contains("`tail` applies only to"));
        assert!(e(r#"{"mode":"dump+follow","until":"1m"}"#)
            .contains("`until` applies only to \"dump\""));
        assert!(e(r#"{"labels":{"a b":"c"}}"#).contains("label.KEY"));
        let long = format!("{{\"contains\":\"{}\"}}", "x".repeat(MAX_REQUEST_LEN));
        assert_eq!(
            parse_request_at(long.as_bytes(), 0).unwrap_err(),
            RequestError::TooLong
        );
    }

    #[test]
    fn client_requests_round_trip() {
        let req = JsonRequest {
            mode: Mode::DumpFollow,
            since_seq: Some(3),
            sources: vec!["a*".into()],
            since: Some(TimeValue::Text("5m".into())),
            format: Some(Format::Json),
            ..JsonRequest::default()
        };
        let line = serde_json::to_vec(&req).unwrap();
        let back: JsonRequest = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, req);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"mode":"dump+follow","since_seq":3,"sources":["a*"],"since":"5m","format":"json"}"#
        );
        for m in [Mode::Dump, Mode::Follow, Mode::DumpFollow] {
            assert_eq!(Mode::from_byte(m.byte()), Some(m));
        }
        assert_eq!(Mode::from_byte(3), None);
    }

    #[test]
    fn connect_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.sock");
        let e = connect(&path, &ClientRequest::Mode(Mode::Dump)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("nope.sock") && msg.contains("ringtail serve"),
            "{msg}"
        );
    }

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
