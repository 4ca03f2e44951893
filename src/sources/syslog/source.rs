//! The syslog listeners as a source plug-in: `--syslog-socket PATH` (a
//! `/dev/log`-style unix datagram socket), `--syslog-udp ADDR:PORT` and
//! `--syslog-tcp ADDR:PORT`, each repeatable, and `[[syslog]]` tables in
//! the config file for listeners with settings of their own.
//!
//! Each listener is one [`Source`] with one [`Listener`], so a systemd
//! socket named after it (`syslog`, `syslog-udp`, `syslog-tcp`, then
//! `syslog-2`... or a table's `name`) or `-daemonize`'s handover gives it
//! its socket like any other.
//!
//! What each listener promises:
//! - **unix datagram**: mode 0666 (every local program may log, as with
//!   `/dev/log`), `SO_PASSCRED` so each entry carries the sender's pid,
//!   uid and gid as the kernel reports them, an 8 MiB receive buffer (past
//!   `net.core.rmem_max` as root), and batched receives (`recvmmsg`, up to
//!   [`UNIX_BATCH`] datagrams per call). A sender waits only while the
//!   socket's queue is full, never for the ring: storing is a copy into
//!   memory.
//! - **UDP**: the same receive buffer; one datagram is one message. What
//!   the kernel drops when the buffer is full is counted by the kernel
//!   (`/proc/net/udp`, the `drops` column).
//! - **TCP**: RFC 6587 framing decided per frame ([`super::framing`]),
//!   frames longer than `--syslog-max-frame` skipped in sync and reported;
//!   at most `--syslog-max-connections` connections per listener (one more
//!   is accepted and closed at once, with a throttled notice). An idle
//!   connection is a task waiting for readiness: no timer, no read buffer
//!   (its buffer is freed each time it runs dry), so 10,000 idle
//!   connections cost memory for their sockets and tasks only, and no CPU.
//! - **rate limit per sender** (`--syslog-rate-limit`, or a table's
//!   `rate-limit`): off unless configured; journald-style, per pid on a
//!   unix socket and per peer address on the network, emergencies never
//!   limited, one "suppressed N messages" self-log entry per sender and
//!   window ([`super::ratelimit`]).
//! - **bad input** never stops a listener: a message that cannot be read
//!   is stored as it came ([`super::parse`]); a datagram cut by the buffer
//!   is stored flagged `truncated`; problems are throttled notices in
//!   ringtail's own log.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use rustix::io::Errno;
use tokio_util::task::TaskTracker;

use super::creds::{self, Received};
use super::framing::{Framer, FramerConfig};
use super::ingest::{Ingest, ListenerState, Sender};
use super::parse::{Hostnames, ParseOptions};
use super::ratelimit::RateLimiter;
use crate::cli::serve::parse_rate_limit;
use crate::entry::{Flags, Level};
use crate::listener::{Address, Listener, Socket, SocketKind, SocketOptions};
use crate::sources::{Context, Defaults, Pipeline, RateLimit, Running, Source, SourceError};

/// The receive buffer asked for on unix and UDP listeners.
pub const RECEIVE_BUFFER: usize = 8 << 20;
/// The longest datagram read whole; longer ones are stored cut, flagged
/// `truncated` (the largest UDP payload is 65,507 bytes).
pub const DATAGRAM_MAX: usize = 64 * 1024;
/// Datagrams received per `recvmmsg` call on a unix or UDP socket.
pub const BATCH: usize = 32;
/// Default of `--syslog-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// Default of `--syslog-max-frame`.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
/// Senders tracked by one listener's rate limit.
const RATE_LIMIT_SENDERS: usize = 8192;
/// Receive calls in a row before a listener lets other tasks run.
const ROUNDS: usize = 64;
/// One TCP read.
const TCP_READ: usize = 64 * 1024;
/// How long accepting pauses after it failed (out of fds).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The flags of the syslog listeners.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Syslog listeners")]
#[group(id = "syslog_args")]
pub struct Args {
    /// Receive syslog on this unix datagram socket (created with mode
    /// 0666, like /dev/log; `--syslog-socket /dev/log` as root takes the
    /// system's syslog socket). Entries get the sender's pid, uid and gid
    /// from the kernel. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub syslog_socket: Vec<PathBuf>,

    /// Receive syslog over UDP on this address (e.g. 0.0.0.0:514).
    /// Repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    pub syslog_udp: Vec<SocketAddr>,

    /// Receive syslog over TCP on this address (RFC 6587: octet counting
    /// or LF/NUL framing, decided per frame). Repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    pub syslog_tcp: Vec<SocketAddr>,

    /// The time zone of RFC 3164 timestamps, which carry none: an IANA
    /// name (Europe/Berlin), UTC, or local (the system's; the default).
    #[arg(long, value_name = "ZONE")]
    pub syslog_time_zone: Option<String>,

    /// Rate limit per sender (pid on a unix socket, address on the
    /// network), e.g. 1000/30s; the excess is dropped and counted in one
    /// "suppressed N messages" entry per sender and interval; emergencies
    /// always pass. Off by default.
    #[arg(long, value_name = "LINES/INTERVAL", value_parser = parse_rate_limit)]
    pub syslog_rate_limit: Option<RateLimit>,

    /// The longest TCP syslog frame; longer frames are skipped and
    /// reported [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub syslog_max_frame: Option<usize>,

    /// The most TCP connections per syslog TCP listener; more are closed
    /// at once [default: 16384].
    #[arg(long, value_name = "N")]
    pub syslog_max_connections: Option<usize>,
}

/// One `[[syslog]]` table: one listener.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Table {
    socket: Option<PathBuf>,
    udp: Option<String>,
    tcp: Option<String>,
    /// The listener's name (systemd's `FileDescriptorName=`).
    name: Option<String>,
    time_zone: Option<String>,
    rate_limit: Option<String>,
    max_frame: Option<usize>,
    max_connections: Option<usize>,
}

/// How a listener receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unix,
    Udp,
    Tcp,
}

/// One listener's settings.
#[derive(Clone, Debug)]
struct Settings {
    time_zone: TimeZone,
    rate_limit: Option<RateLimit>,
    max_frame: usize,
    max_connections: usize,
}

fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("local") => Ok(TimeZone::system()),
        Some("UTC" | "utc") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|e| {
            format!(
                "unknown time zone {n:?} ({e}); give an IANA name such as Europe/Berlin, \
                 UTC, or local"
            )
        }),
    }
}

impl Args {
    fn settings(&self) -> Result<Settings, String> {
        Ok(Settings {
            time_zone: time_zone(self.syslog_time_zone.as_deref())
                .map_err(|e| format!("--syslog-time-zone: {e}"))?,
            rate_limit: self.syslog_rate_limit,
            max_frame: self
                .syslog_max_frame
                .unwrap_or(DEFAULT_MAX_FRAME)
                .clamp(1, 1 << 30),
            max_connections: self
                .syslog_max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
        })
    }

    /// One source per listener, flags first, then tables in file order.
    pub fn sources(
        &self,
        _defaults: &Defaults,
        tables: &[crate::cli::config::ConfigTable],
    ) -> Result<Vec<Box<dyn Source>>, String> {
        let base = self.settings()?;
        let mut names = Names::default();
        let mut out: Vec<Box<dyn Source>> = Vec::new();
        for path in &self.syslog_socket {
            let name = names.next(Kind::Unix, None)?;
            out.push(build(
                name,
                Kind::Unix,
                Address::Path(path.clone()),
                base.clone(),
            ));
        }
        for addr in &self.syslog_udp {
            let name = names.next(Kind::Udp, None)?;
            out.push(build(name, Kind::Udp, Address::Inet(*addr), base.clone()));
        }
        for addr in &self.syslog_tcp {
            let name = names.next(Kind::Tcp, None)?;
            out.push(build(name, Kind::Tcp, Address::Inet(*addr), base.clone()));
        }
        for t in tables {
            let table: Table = t.parse()?;
            let inet = |key: &str, v: &str| -> Result<Address, String> {
                v.parse::<SocketAddr>().map(Address::Inet).map_err(|e| {
                    t.key_error(
                        key,
                        &format!("{v:?} is not ADDR:PORT ({e}), e.g. 0.0.0.0:514"),
                    )
                })
            };
            let (kind, address) = match (&table.socket, &table.udp, &table.tcp) {
                (Some(p), None, None) => (Kind::Unix, Address::Path(p.clone())),
                (None, Some(a), None) => (Kind::Udp, inet("udp", a)?),
                (None, None, Some(a)) => (Kind::Tcp, inet("tcp", a)?),
                _ => {
                    return Err(t.error(
                        "a [[syslog]] table needs exactly one of socket = PATH, \
                         udp = \"ADDR:PORT\" or tcp = \"ADDR:PORT\"",
                    ))
                }
            };
            let mut s = base.clone();
            if let Some(z) = &table.time_zone {
                s.time_zone = time_zone(Some(z)).map_err(|e| t.key_error("time-zone", &e))?;
            }
            if let Some(r) = &table.rate_limit {
                s.rate_limit =
                    Some(parse_rate_limit(r).map_err(|e| t.key_error("rate-limit", &e))?);
            }
            if let Some(m) = table.max_frame {
                s.max_frame = m.clamp(1, 1 << 30);
            }
            if let Some(m) = table.max_connections {
                s.max_connections = m.max(1);
            }
            let name = names
                .next(kind, table.name.clone())
                .map_err(|e| t.key_error("name", &e))?;
            out.push(build(name, kind, address, s));
        }
        Ok(out)
    }
}

/// Unique listener names: `syslog`, `syslog-udp`, `syslog-tcp`, then
/// `-2`, `-3`... or the name a table gives.
#[derive(Default)]
struct Names {
    taken: std::collections::HashSet<String>,
}

impl Names {
    fn next(&mut self, kind: Kind, given: Option<String>) -> Result<String, String> {
        if let Some(n) = given {
            if !self.taken.insert(n.clone()) {
                return Err(format!("the listener name {n:?} is used twice"));
            }
            return Ok(n);
        }
        let base = match kind {
            Kind::Unix => "syslog",
            Kind::Udp => "syslog-udp",
            Kind::Tcp => "syslog-tcp",
        };
        let mut n = base.to_string();
        let mut i = 2;
        while !self.taken.insert(n.clone()) {
            n = format!("{base}-{i}");
            i += 1;
        }
        Ok(n)
    }
}

fn build(name: String, kind: Kind, address: Address, settings: Settings) -> Box<dyn Source> {
    let (socket_kind, what, flag, options, mode) = match (&kind, &address) {
        (Kind::Unix, a) => (
            SocketKind::UnixDatagram,
            format!("syslog socket {}", show(a)),
            "--syslog-socket",
            SocketOptions {
                receive_buffer: Some(RECEIVE_BUFFER),
                pass_credentials: true,
            },
            Some(0o666),
        ),
        (Kind::Udp, a) => (
            SocketKind::Udp,
            format!("syslog UDP listener {}", show(a)),
            "--syslog-udp",
            SocketOptions {
                receive_buffer: Some(RECEIVE_BUFFER),
                pass_credentials: false,
            },
            None,
        ),
        (Kind::Tcp, a) => (
            SocketKind::Tcp,
            format!("syslog TCP listener {}", show(a)),
            "--syslog-tcp",
            SocketOptions::default(),
            None,
        ),
    };
    let short = match kind {
        Kind::Unix => "syslog socket",
        Kind::Udp => "syslog UDP listener",
        Kind::Tcp => "syslog TCP listener",
    };
    let mut listener = Listener::new(name, socket_kind, address, short, flag);
    listener.options = options;
    listener.mode = mode;
    Box::new(SyslogListener {
        listener,
        kind,
        what,
        settings,
    })
}

fn show(a: &Address) -> String {
    match a {
        Address::Path(p) => p.display().to_string(),
        Address::Fd(n) => format!("fd {n}"),
        Address::Inet(s) => s.to_string(),
    }
}

/// One syslog listener.
pub struct SyslogListener {
    listener: Listener,
    kind: Kind,
    what: String,
    settings: Settings,
}

impl Source for SyslogListener {
    fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Unix => "syslog (unix socket)",
            Kind::Udp => "syslog (UDP)",
            Kind::Tcp => "syslog (TCP)",
        }
    }

    fn listeners(&self) -> Vec<Listener> {
        vec![self.listener.clone()]
    }

    fn start(self: Box<Self>, mut sockets: Vec<Socket>, context: Context) -> Running {
        Box::pin(async move {
            let socket = sockets
                .pop()
                .ok_or_else(|| SourceError(format!("the {} was not bound", self.what)))?;
            let state = Arc::new(ListenerState {
                what: self.what.clone(),
                parse: ParseOptions {
                    hostnames: match self.kind {
                        Kind::Unix => Hostnames::Local,
                        Kind::Udp | Kind::Tcp => Hostnames::Expected,
                    },
                    time_zone: self.settings.time_zone.clone(),
                },
                limiter: self
                    .settings
                    .rate_limit
                    .map(|r| std::sync::Mutex::new(RateLimiter::new(r, RATE_LIMIT_SENDERS))),
                epoch: Instant::now(),
            });
            let result = match self.kind {
                Kind::Unix => {
                    let s = socket.into_unix_datagram()?;
                    s.set_nonblocking(true)?;
                    let receive = unix_receiver(context.pipeline.clone());
                    serve_datagrams(s, state.clone(), &context, receive).await
                }
                Kind::Udp => {
                    let s = socket.into_udp()?;
                    s.set_nonblocking(true)?;
                    let receive = udp_receiver(context.pipeline.clone());
                    serve_datagrams(s, state.clone(), &context, receive).await
                }
                Kind::Tcp => {
                    let s = socket.into_tcp_listener()?;
                    s.set_nonblocking(true)?;
                    let l = tokio::net::TcpListener::from_std(s)?;
                    serve_tcp(l, &state, &self.settings, &context).await
                }
            };
            state.report_suppressed(&context.pipeline);
            context.pipeline.flush_notices();
            result.map_err(|e| SourceError(format!("the {} failed: {e}", self.what)))
        })
    }
}

/// The wall clock in ns since the epoch (for the year of RFC 3164 times).
fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Errors that mean the socket itself is unusable.
fn is_fatal(e: &io::Error) -> bool {
    let fatal = [
        Errno::BADF,
        Errno::NOTSOCK,
        Errno::INVAL,
        Errno::FAULT,
        Errno::OPNOTSUPP,
    ];
    e.raw_os_error()
        .is_some_and(|code| fatal.contains(&Errno::from_raw_os_error(code)))
}

/// How often the rate limit's "suppressed" entries are written.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A one-second tick for the rate limit's reports, only when there is a
/// rate limit (an idle listener without one wakes for nothing).
fn report_tick(state: &ListenerState) -> Option<tokio::time::Interval> {
    state.limiter.as_ref().map(|_| {
        let mut t = tokio::time::interval(REPORT_EVERY);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What one receive call brought, or why not.
enum Step {
    Got,
    Empty,
    Retry,
}

fn receive_error(e: io::Error, state: &ListenerState, context: &Context) -> io::Result<Step> {
    match e.kind() {
        io::ErrorKind::WouldBlock => Ok(Step::Empty),
        io::ErrorKind::Interrupted => Ok(Step::Retry),
        _ if is_fatal(&e) => Err(e),
        _ => {
            context.pipeline.notice(Level::Error, || {
                format!("receiving on the {} failed: {e}; retrying", state.what)
            });
            Ok(Step::Empty)
        }
    }
}

/// Receives a datagram listener (unix or UDP) on a thread of its own.
///
/// Why not a tokio task: a `/dev/log` sender blocks while the socket's
/// queue is full, so the receiver's wake-up path sets the sender's speed,
/// and a UDP sender does not wait at all, so a slow wake-up is lost
/// datagrams. Through the runtime one wake-up is epoll, the I/O driver,
/// the task scheduled and often a second worker unparked; a thread
/// sleeping in `poll(2)` on the socket is woken by the sender directly.
/// Measured with `sysload unix` (1M messages, interleaved runs): 460-510k
/// messages/s as a task, 730-760k/s on a thread, the same as a C receiver
/// that stores nothing (`benches/floor/syslog_sink.c`): the sender is the
/// limit. The thread ([`crate::sources::thread`]) also wakes at shutdown,
/// so an idle listener costs no CPU.
///
/// `receive` takes one batch of datagrams from the socket into the
/// ingest, or says the queue is empty.
async fn serve_datagrams<S, F>(
    socket: S,
    state: Arc<ListenerState>,
    context: &Context,
    receive: F,
) -> io::Result<()>
where
    S: std::os::fd::AsFd + Send + 'static,
    F: FnMut(&S, &ListenerState, &mut Ingest) -> io::Result<()> + Send + 'static,
{
    let context = context.clone();
    let shutdown = context.shutdown.clone();
    crate::sources::thread::run(&shutdown, move |stop| {
        receive_datagrams(&socket, &state, &context, stop, receive)
    })
    .await
}

/// A datagram listener's thread: batches while the queue has datagrams,
/// `poll(2)` on the socket and the stop pipe when it is empty (with a
/// timeout only for the rate limit's once-a-second reports).
fn receive_datagrams<S: std::os::fd::AsFd>(
    socket: &S,
    state: &ListenerState,
    context: &Context,
    stop: &crate::sources::thread::Stop,
    mut receive: impl FnMut(&S, &ListenerState, &mut Ingest) -> io::Result<()>,
) -> io::Result<()> {
    use nix::poll::PollTimeout;

    let pipeline = &context.pipeline;
    let mut ingest = Ingest::new(pipeline.clone());
    let mut next_report = state
        .limiter
        .as_ref()
        .map(|_| Instant::now() + REPORT_EVERY);
    while !context.shutdown.is_cancelled() {
        if let Some(at) = next_report.as_mut() {
            if Instant::now() >= *at {
                state.report_suppressed(pipeline);
                *at += REPORT_EVERY;
            }
        }
        let step = match receive(socket, state, &mut ingest) {
            Ok(()) => Step::Got,
            Err(e) => receive_error(e, state, context)?,
        };
        match step {
            Step::Got => ingest.flush(),
            Step::Retry => {}
            Step::Empty => {
                ingest.flush();
                let timeout = match next_report {
                    Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()))
                        .unwrap_or(PollTimeout::MAX),
                    None => PollTimeout::NONE,
                };
                if stop.wait(socket.as_fd(), timeout)? {
                    break;
                }
            }
        }
    }
    ingest.flush();
    Ok(())
}

/// A unix listener's batch receive: `recvmmsg` with each datagram's
/// credentials.
fn unix_receiver(
    pipeline: Pipeline,
) -> impl FnMut(&std::os::unix::net::UnixDatagram, &ListenerState, &mut Ingest) -> io::Result<()> {
    // Zeroed allocations: pages are touched only as datagrams fill them.
    let mut bufs = vec![vec![0u8; DATAGRAM_MAX]; BATCH];
    let mut got: Vec<Received> = Vec::with_capacity(BATCH);
    move |socket, state, ingest| {
        creds::recv_batch_with_creds(socket, &mut bufs, &mut got)?;
        let now = wall_ns();
        for (r, buf) in got.iter().zip(&bufs) {
            if r.truncated {
                truncated_notice(&pipeline, state);
            }
            ingest.datagram(
                state,
                &buf[..r.len],
                Sender::Local(r.credentials),
                now,
                r.truncated,
            );
        }
        Ok(())
    }
}

/// A UDP listener's batch receive: `recvmmsg` with each datagram's peer.
fn udp_receiver(
    pipeline: Pipeline,
) -> impl FnMut(&std::net::UdpSocket, &ListenerState, &mut Ingest) -> io::Result<()> {
    let mut bufs = vec![vec![0u8; DATAGRAM_MAX]; BATCH];
    let mut got = Vec::with_capacity(BATCH);
    move |socket, state, ingest| {
        creds::recv_batch_from(socket, &mut bufs, &mut got)?;
        let now = wall_ns();
        for (&(len, truncated, peer), buf) in got.iter().zip(&bufs) {
            if truncated {
                truncated_notice(&pipeline, state);
            }
            // The kernel always gives a UDP datagram's source address.
            let ip = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |p| p.ip());
            let sender = Sender::Peer(ip);
            let flags = if truncated {
                Flags::default().with_truncated(true)
            } else {
                Flags::default()
            };
            ingest.message(state, &buf[..len], sender, now, flags);
        }
        Ok(())
    }
}

fn truncated_notice(pipeline: &Pipeline, state: &ListenerState) {
    pipeline.notice(Level::Warning, || {
        format!(
            "a datagram on the {} was longer than {DATAGRAM_MAX} bytes; \
             it is stored cut and flagged truncated",
            state.what
        )
    });
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    state: &Arc<ListenerState>,
    settings: &Settings,
    context: &Context,
) -> io::Result<()> {
    let pipeline = &context.pipeline;
    let tracker = TaskTracker::new();
    let open = Arc::new(AtomicUsize::new(0));
    let framer = FramerConfig {
        max_frame: settings.max_frame,
        ..FramerConfig::default()
    };
    let mut ticks = report_tick(state);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => break,
            r = listener.accept() => r,
            _ = tick(&mut ticks) => {
                state.report_suppressed(pipeline);
                continue;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                let now_open = open.load(Ordering::Relaxed);
                if now_open >= settings.max_connections {
                    drop(stream);
                    pipeline.notice(Level::Warning, || {
                        format!(
                            "closed a syslog connection from {peer}: {now_open} connections are \
                             open on the {} and at most {} may be (--syslog-max-connections)",
                            state.what, settings.max_connections
                        )
                    });
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let conn = Connection {
                    state: state.clone(),
                    peer,
                    framer,
                    open: open.clone(),
                };
                tracker.spawn(conn.run(stream, pipeline.clone(), context.shutdown.clone()));
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS: wait, do not spin.
                pipeline.notice(Level::Error, || {
                    format!(
                        "accepting a connection on the {} failed: {e}; retrying",
                        state.what
                    )
                });
                tokio::select! {
                    _ = context.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// One TCP connection.
struct Connection {
    state: Arc<ListenerState>,
    peer: SocketAddr,
    framer: FramerConfig,
    open: Arc<AtomicUsize>,
}

impl Connection {
    async fn run(
        self,
        stream: tokio::net::TcpStream,
        pipeline: crate::sources::Pipeline,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let state = &*self.state;
        let sender = Sender::Peer(self.peer.ip());
        let mut framer = Framer::new(self.framer);
        let mut ingest = Ingest::new(pipeline.clone());
        let mut reported = framer.stats();
        let mut buf: Vec<u8> = Vec::new();
        let closed = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break None,
                r = stream.readable() => if let Err(e) = r {
                    break Some(e.to_string());
                },
            }
            if buf.is_empty() {
                buf = vec![0u8; TCP_READ];
            }
            let mut end = None;
            for _ in 0..ROUNDS {
                match stream.try_read(&mut buf) {
                    Ok(0) => {
                        end = Some(None);
                        break;
                    }
                    Ok(n) => {
                        let now = wall_ns();
                        framer.feed(&buf[..n], &mut |f| {
                            ingest.message(state, f.msg, sender, now, Flags::default())
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        end = Some(Some(e.to_string()));
                        break;
                    }
                }
            }
            ingest.flush();
            self.report(&pipeline, &framer, &mut reported);
            if let Some(why) = end {
                break why;
            }
            // Run dry: an idle connection holds no read buffer.
            buf = Vec::new();
            framer.release_idle();
        };
        framer.finish(&mut |f| ingest.message(state, f.msg, sender, wall_ns(), Flags::default()));
        ingest.flush();
        self.report(&pipeline, &framer, &mut reported);
        if let Some(why) = closed {
            pipeline.notice(Level::Warning, || {
                format!(
                    "the syslog connection from {} on the {} failed: {why}",
                    self.peer, state.what
                )
            });
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reports what the framer skipped since the last report.
    fn report(
        &self,
        pipeline: &crate::sources::Pipeline,
        framer: &Framer,
        reported: &mut super::framing::FramerStats,
    ) {
        let now = framer.stats();
        let (peer, what, max) = (self.peer, &self.state.what, self.framer.max_frame);
        let oversized = now.oversized - reported.oversized;
        if oversized > 0 {
            pipeline.notice(Level::Warning, || {
                format!(
                    "skipped {oversized} syslog frame(s) longer than {max} bytes from {peer} \
                     on the {what} (--syslog-max-frame)"
                )
            });
        }
        let bad = now.bad_counts - reported.bad_counts;
        if bad > 0 {
            pipeline.notice(Level::Warning, || {
                format!(
                    "{bad} octet count(s) from {peer} on the {what} were not believed (too large, \
                     or not followed by a space); those frames were read up to the next LF"
                )
            });
        }
        let incomplete = now.incomplete - reported.incomplete;
        if incomplete > 0 {
            pipeline.notice(Level::Warning, || {
                format!(
                    "dropped an incomplete syslog frame from {peer} on the {what}: the \
                     connection closed before the octet count was reached"
                )
            });
        }
        *reported = now;
    }
}
