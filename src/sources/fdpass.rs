//! The memlogd ingest socket: clients hand over file descriptors, ringtail
//! reads each one to its end and stores its lines (protocols.md, section 1).
//!
//! One datagram is one registration: its payload is the source name and its
//! `SCM_RIGHTS` ancillary data carries one or more fds, which all get that
//! name. [`register`] is the client side (`ringtail run`, tests).
//!
//! What [`serve`] promises:
//! - **No thread per source.** Each fd is a small tokio task that waits for
//!   readiness with epoll. Fds epoll refuses (regular files, `/dev/zero` and
//!   other character devices) are read on tokio's blocking pool instead, at
//!   most [`BLOCKING_READERS`] at a time, in slices, so they take turns.
//! - **Large reads, one ring claim per read.** A source reads up to 64 KiB
//!   at a time straight into its splitter's buffer and appends all lines of
//!   the read with one `append_batch`.
//! - **Fairness.** A source yields to the scheduler after every read, so one
//!   that never stops writing (an fd on `/dev/zero`, a tight loop) shares
//!   the CPU with the others. An fd that epoll refuses and that is not a
//!   regular file (a character device such as `/dev/zero`, which never
//!   blocks and never ends) is read at most [`DEVICE_READ_RATE`] bytes per
//!   second, so it can neither burn a core nor wash every other source out
//!   of the ring in an instant; regular files are read at full speed. The optional per-source rate limit
//!   ([`RateLimit`]) drops lines over the limit and says
//!   so in one "suppressed N lines from SOURCE" self-log entry per interval.
//! - **Bounded idle cost.** An idle source holds no read buffer (buffers go
//!   back to a shared pool whenever a source has nothing to read), only its
//!   task (under 512 bytes of future), its epoll registration and its
//!   unfinished line: about 1.3 KiB of resident memory in all, most of it
//!   tokio's task and registration. When fds run out or more than `max_sources` sources are open, a
//!   new registration is refused with a self-log entry (its fds are closed)
//!   and the socket keeps serving; nothing crashes and nothing spins.
//! - **No line is lost at the end.** At end of file the unterminated tail is
//!   an entry. On shutdown every source stores what it has read so far
//!   (its unfinished line included) and [`serve`] returns once all have.
//!   (A read on the blocking pool that blocks forever, on a device that
//!   epoll refuses and that never returns, would hold that up; regular
//!   files and `/dev/zero` do not block.)
//! - Problems (a datagram without fds, fds that did not arrive, a refused
//!   source, a read error) are self-log entries, rate-limited so that a
//!   flood of bad datagrams cannot fill the ring with warnings.
//!
//! Fds are passed with `rustix`, which hands received fds over as
//! `OwnedFd`s, so this module needs no `unsafe`.

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lines::{BufferPool, LineSplitter, Lines};
use super::{IngestConfig, RateLimit};
use crate::entry::{Flags, Origin};
use crate::ring::{OriginHandle, Ring, Span, MAX_SOURCE_LEN};
use crate::selflog::{Level, SelfLog};
use crate::sources::pace::Pacer;

/// The most fds one datagram can carry (Linux's `SCM_MAX_FD`).
pub const MAX_FDS_PER_DATAGRAM: usize = 253;

/// Sources read on the blocking pool at once (fds epoll refuses).
pub const BLOCKING_READERS: usize = 8;

/// Longest payload read; source names are cut to [`MAX_SOURCE_LEN`] anyway.
const PAYLOAD_MAX: usize = 4096;

/// A blocking-pool reader gives its turn back after this many reads or
/// this long, whichever comes first.
const SLICE_READS: usize = 32;

/// Bytes per second read from an fd that epoll refuses and that is not a
/// regular file (see the module doc). 1 MiB/s is about a thousand
/// full-length lines a second: more than any real device logs, little CPU.
pub const DEVICE_READ_RATE: u64 = 1 << 20;
const SLICE_TIME: Duration = Duration::from_millis(5);

/// How long the socket pauses after fds failed to arrive (the process is
/// out of fds): long enough not to spin, short enough to recover quickly.
const FD_EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// Self-log entries about registrations: at most `NOTICE_BURST` per
/// `NOTICE_WINDOW`; the rest are counted and reported in one entry.
const NOTICE_BURST: u32 = 5;
const NOTICE_WINDOW: Duration = Duration::from_secs(1);

/// Free read buffers kept for reuse.
const POOL_KEEP: usize = 64;

/// Raises the soft limit on open files to the hard limit, so that many
/// sources can be open at once. Returns the `(soft, hard)` limits now in
/// force (`u64::MAX` for unlimited).
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    // An unlimited hard limit still stops at the kernel's nr_open.
    let target = before.maximum.unwrap_or_else(nr_open);
    if before.current.is_some_and(|soft| soft < target) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: before.maximum,
            },
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "cannot raise the open-file limit from {} to {target}: {e}; \
                     fewer sources can be open at once (raise it with `ulimit -n`)",
                    before.current.unwrap_or(u64::MAX)
                ),
            )
        })?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok((
        now.current.unwrap_or(u64::MAX),
        now.maximum.unwrap_or(u64::MAX),
    ))
}

/// The kernel's ceiling on a process's fds.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Registers `fds` as source `name` with the daemon listening on
/// `socket_path`. The daemon reads each fd (its own copy) to its end; the
/// caller may close its copies right after. More than
/// [`MAX_FDS_PER_DATAGRAM`] fds are sent in several datagrams.
pub fn register(socket_path: &Path, name: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let addr = SocketAddrUnix::new(socket_path).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot use {} as a socket path: {e}", socket_path.display()),
        )
    })?;
    let batches: Vec<&[BorrowedFd<'_>]> = if fds.is_empty() {
        vec![&[]]
    } else {
        fds.chunks(MAX_FDS_PER_DATAGRAM).collect()
    };
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_DATAGRAM))];
    for batch in batches {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !batch.is_empty() {
            let pushed = control.push(SendAncillaryMessage::ScmRights(batch));
            debug_assert!(pushed, "the control buffer is sized for a full batch");
        }
        rustix::net::sendmsg_addr(
            &socket,
            &addr,
            &[IoSlice::new(name)],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| send_error(socket_path, e))?;
    }
    Ok(())
}

/// Says what a failed registration means and what to do about it.
fn send_error(path: &Path, e: Errno) -> io::Error {
    let p = path.display();
    let hint = match e {
        Errno::NOENT => format!(
            "cannot send to {p}: no such file; is `ringtail serve` running? \
             pass --socket-log PATH if it listens elsewhere"
        ),
        Errno::CONNREFUSED => format!(
            "cannot send to {p}: nothing listens there (a socket left by a daemon \
             that stopped?); start `ringtail serve` or pass --socket-log PATH"
        ),
        Errno::ACCESS | Errno::PERM => format!(
            "cannot send to {p}: permission denied; run as a user in the socket's \
             group (see `ringtail serve --socket-mode`)"
        ),
        Errno::NOTSOCK | Errno::PROTOTYPE => format!(
            "cannot send to {p}: it is not a datagram socket; is it the query socket? \
             pass the ingest socket with --socket-log PATH"
        ),
        Errno::AGAIN | Errno::NOBUFS => {
            format!("cannot send to {p}: the daemon's socket queue is full; retry later")
        }
        Errno::MSGSIZE => format!("cannot send to {p}: the source name is too long"),
        _ => format!("cannot send to {p}: {e}"),
    };
    io::Error::new(io::Error::from(e).kind(), hint)
}

/// Serves the ingest socket until `shutdown` is cancelled, then waits for
/// every source to store what it has read and returns.
///
/// Returns an error only if the socket itself fails (it is not a usable
/// datagram socket); problems with single registrations are self-logged.
pub async fn serve(
    socket: UnixDatagram,
    ring: Arc<Ring>,
    pacer: Arc<Pacer>,
    selflog: SelfLog,
    config: IngestConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        pacer,
        pool: BufferPool::new(LineSplitter::buffer_len(config.max_line_len), POOL_KEEP),
        ring,
        selflog,
        config,
        active: AtomicUsize::new(0),
        blocking: Semaphore::new(BLOCKING_READERS),
        shutdown,
        notices: Mutex::new(Notices::new()),
    });
    let tracker = TaskTracker::new();
    let result = receive_loop(&socket, &shared, &tracker).await;
    drop(socket);
    tracker.close();
    tracker.wait().await;
    shared.flush_notices();
    result
}

/// What one datagram brought.
struct Registration {
    name: String,
    fds: Vec<OwnedFd>,
    /// Some fds did not arrive (the process is out of fds).
    lost_fds: bool,
}

async fn receive_loop(
    socket: &UnixDatagram,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) -> io::Result<()> {
    let mut payload = vec![0u8; PAYLOAD_MAX];
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_DATAGRAM))];
    loop {
        let notices_due = shared.notices_due();
        let received = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return Ok(()),
            r = socket.async_io(Interest::READABLE, || receive(socket, &mut payload, &mut space)) => r,
            _ = sleep_until_opt(notices_due) => {
                shared.flush_notices();
                continue;
            }
        };
        match received {
            Ok(reg) => {
                if reg.lost_fds {
                    drop(reg.fds);
                    shared.notice(Level::Error, || {
                        format!(
                            "refused source {:?}: its file descriptors did not arrive because \
                             ringtail is out of fds; raise the hard fd limit (ulimit -Hn, \
                             systemd LimitNOFILE=), or set --max-sources below it so \
                             that registrations are refused before fds run out",
                            reg.name
                        )
                    });
                    pause(shared, FD_EXHAUSTED_BACKOFF).await;
                } else {
                    shared.start_sources(reg, tracker);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_fatal(&e) => {
                shared.selflog.error(format!(
                    "the ingest socket failed: {e}; no new sources are accepted"
                ));
                return Err(e);
            }
            Err(e) => {
                // EMFILE, ENOBUFS, ENOMEM...: transient; wait, do not spin.
                shared.notice(Level::Error, || {
                    format!("receiving a registration failed: {e}; retrying")
                });
                pause(shared, FD_EXHAUSTED_BACKOFF).await;
            }
        }
    }
}

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

/// Sleeps, or returns early on shutdown.
async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = shared.shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One `recvmsg`: the payload, and the fds (close-on-exec) as owned fds.
fn receive(
    socket: &UnixDatagram,
    payload: &mut [u8],
    space: &mut [MaybeUninit<u8>],
) -> io::Result<Registration> {
    let mut control = RecvAncillaryBuffer::new(space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let len = msg.bytes.min(payload.len());
    Ok(Registration {
        name: Origin::source_from_bytes(&payload[..len], MAX_SOURCE_LEN),
        fds,
        lost_fds: msg.flags.contains(ReturnFlags::CTRUNC),
    })
}

/// What the receive loop and every source task share.
struct Shared {
    ring: Arc<Ring>,
    /// Sources wait here for followers that lag in a burst.
    pacer: Arc<Pacer>,
    selflog: SelfLog,
    config: IngestConfig,
    /// Read buffers of sources that are reading right now.
    pool: BufferPool,
    /// Sources open now (counted against `config.max_sources`).
    active: AtomicUsize,
    /// Turns on the blocking pool for fds epoll refuses.
    blocking: Semaphore,
    shutdown: CancellationToken,
    notices: Mutex<Notices>,
}

/// The rate limit on registration warnings.
struct Notices {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl Notices {
    fn new() -> Notices {
        Notices {
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl Shared {
    /// Self-logs a registration problem, unless too many came lately.
    fn notice(&self, level: Level, msg: impl FnOnce() -> String) {
        let mut n = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(n.window) >= NOTICE_WINDOW {
            self.report_suppressed(&mut n);
            n.window = now;
            n.logged = 0;
        }
        if n.logged < NOTICE_BURST {
            n.logged += 1;
            drop(n);
            self.selflog.log(level, msg());
        } else {
            n.suppressed += 1;
        }
    }

    /// When the count of suppressed warnings should be logged, if any.
    fn notices_due(&self) -> Option<Instant> {
        let n = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        (n.suppressed > 0).then(|| n.window + NOTICE_WINDOW)
    }

    fn flush_notices(&self) {
        let mut n = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        self.report_suppressed(&mut n);
    }

    fn report_suppressed(&self, n: &mut Notices) {
        if n.suppressed > 0 {
            self.selflog.warn(format!(
                "suppressed {} more ingest warnings like the ones before",
                n.suppressed
            ));
            n.suppressed = 0;
        }
    }

    /// Starts one task per fd of a registration, within `max_sources`.
    fn start_sources(self: &Arc<Self>, reg: Registration, tracker: &TaskTracker) {
        let Registration { name, mut fds, .. } = reg;
        if fds.is_empty() {
            self.notice(Level::Warning, || {
                format!(
                    "ignored a registration for source {name:?} that carried no file \
                     descriptor (send the fds to read as SCM_RIGHTS ancillary data)"
                )
            });
            return;
        }
        let open = self.active.load(Ordering::Relaxed);
        let room = self.config.max_sources.saturating_sub(open);
        if fds.len() > room {
            let (total, refused) = (fds.len(), fds.len() - room);
            fds.truncate(room);
            self.notice(Level::Error, || {
                format!(
                    "refused {refused} of {total} fd(s) of source {name:?}: {open} sources \
                     are open and at most {} may be (--max-sources)",
                    self.config.max_sources
                )
            });
            if fds.is_empty() {
                return;
            }
        }
        let origin = match self.ring.origin(Origin::new(name.clone())) {
            Ok(origin) => origin,
            Err(e) => {
                self.notice(Level::Error, || format!("refused source {name:?}: {e}"));
                return;
            }
        };
        for fd in fds {
            let source = Source::new(&self.config, origin.clone());
            tracker.spawn(run_source(Open::new(self), fd, source));
        }
    }
}

/// Counts a source as open from its start until its task ends (or is
/// dropped unpolled).
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Open {
        shared.active.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(shared))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a source's reading stopped.
enum End {
    Eof,
    Shutdown,
    Failed(io::Error),
}

/// One fd being read: its splitter, its rate limit and its origin.
struct Source {
    origin: OriginHandle,
    splitter: LineSplitter,
    limit: Option<Box<Limiter>>,
}

impl Source {
    fn new(config: &IngestConfig, origin: OriginHandle) -> Source {
        Source {
            origin,
            splitter: LineSplitter::new(config.max_line_len, config.long_lines, Flags::default()),
            limit: config.rate_limit.map(|l| Box::new(Limiter::new(l))),
        }
    }

    fn name(&self) -> &str {
        &self.origin.origin().source
    }

    /// Makes sure the splitter has a buffer, from the pool if it can.
    fn take_buffer(&mut self, shared: &Shared) {
        if !self.splitter.has_buffer() {
            if let Some(unused) = self.splitter.attach(shared.pool.get()) {
                shared.pool.put(unused);
            }
        }
    }

    fn give_back_buffer(&mut self, shared: &Shared) {
        if let Some(buf) = self.splitter.release() {
            shared.pool.put(buf);
        }
    }

    /// Stores the lines completed by `n` new bytes.
    fn commit(&mut self, shared: &Shared, n: usize) {
        let lines = self.splitter.commit(n);
        store(shared, &self.origin, &mut self.limit, lines);
    }

    /// Stores the lines completed by `n` new bytes in pacing steps, waiting
    /// before each for followers that lag ([`Pacer::admit`]).
    async fn commit_paced(&mut self, shared: &Shared, n: usize) {
        let lines = self.splitter.commit(n);
        let Some(lines) = rate_limit(shared, &self.origin, &mut self.limit, lines) else {
            return;
        };
        let (max_entries, max_bytes) = shared.pacer.step();
        let mut rest = lines.spans;
        while !rest.is_empty() {
            let mut bytes = 0;
            let mut take = 0;
            for s in rest.iter().take(max_entries) {
                bytes += s.len as usize;
                if take > 0 && bytes > max_bytes {
                    break;
                }
                take += 1;
            }
            shared.pacer.admit().await;
            append(shared, &self.origin, lines.buf, &rest[..take]);
            rest = &rest[take..];
        }
    }

    /// Stores the unfinished line and the suppression count; gives the
    /// buffer back.
    fn finish(&mut self, shared: &Shared) {
        let lines = self.splitter.finish();
        store(shared, &self.origin, &mut self.limit, lines);
        if let Some(limit) = &mut self.limit {
            limit.report(&shared.selflog, &self.origin.origin().source);
        }
        self.give_back_buffer(shared);
    }
}

/// Appends one chunk's lines with one claim, after the rate limit.
fn store(
    shared: &Shared,
    origin: &OriginHandle,
    limit: &mut Option<Box<Limiter>>,
    lines: Lines<'_>,
) {
    if let Some(lines) = rate_limit(shared, origin, limit, lines) {
        append(shared, origin, lines.buf, lines.spans);
    }
}

/// The lines the rate limit lets through; `None` when there are none.
fn rate_limit<'a>(
    shared: &Shared,
    origin: &OriginHandle,
    limit: &mut Option<Box<Limiter>>,
    lines: Lines<'a>,
) -> Option<Lines<'a>> {
    let lines = match limit {
        Some(limit) if !lines.is_empty() => {
            let keep = limit.admit(lines.len(), &shared.selflog, &origin.origin().source);
            lines.take(keep)
        }
        _ => lines,
    };
    (!lines.is_empty()).then_some(lines)
}

fn append(shared: &Shared, origin: &OriginHandle, buf: &[u8], spans: &[Span]) {
    if let Err(e) = shared.ring.append_batch(origin, buf, spans) {
        // The splitter only makes spans inside its buffer; this is a bug.
        shared.selflog.error(format!(
            "dropped {} lines of source {:?}: {e}",
            spans.len(),
            origin.origin().source
        ));
    }
}

/// The per-source rate limit: a fixed window from the first line after the
/// previous window ended, as journald does.
struct Limiter {
    limit: RateLimit,
    window: Instant,
    used: u64,
    suppressed: u64,
}

impl Limiter {
    fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            window: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }

    /// How many of `n` new entries may be stored.
    fn admit(&mut self, n: usize, selflog: &SelfLog, source: &str) -> usize {
        let now = Instant::now();
        if now.duration_since(self.window) >= self.limit.interval {
            self.report(selflog, source);
            self.window = now;
            self.used = 0;
        }
        let keep = (n as u64).min(self.limit.lines.saturating_sub(self.used));
        self.used += keep;
        self.suppressed += n as u64 - keep;
        keep as usize
    }

    /// When the current window's suppression count is due, if any.
    fn due(&self) -> Option<Instant> {
        (self.suppressed > 0).then(|| self.window + self.limit.interval)
    }

    fn report(&mut self, selflog: &SelfLog, source: &str) {
        if self.suppressed > 0 {
            selflog.warn(format!(
                "suppressed {} lines from {source}",
                self.suppressed
            ));
            self.suppressed = 0;
        }
    }
}

/// Reads one fd until end of file, error or shutdown.
///
/// Every idle source is one of these futures, so its size matters: the
/// rare paths are boxed, and nothing is kept twice across an await.
async fn run_source(open: Open, fd: OwnedFd, mut source: Source) {
    let shared = &open.0;
    if let Err(e) = set_nonblocking(&fd, true) {
        shared.notice(Level::Error, || {
            format!(
                "refused an fd of source {:?}: cannot make it non-blocking: {e}",
                source.name()
            )
        });
        return;
    }
    let fd = match watch(fd) {
        Ok(fd) => fd,
        Err(refused) => {
            let (fd, e) = refused.into_parts();
            Box::pin(run_unwatchable(shared, fd, e, source)).await;
            return;
        }
    };
    let end = read_async(shared, &fd, &mut source).await;
    drop(fd);
    end_source(shared, Some(source), end);
}

/// An fd epoll refused: regular files and some devices (EPERM) are always
/// "ready", so they are read with plain blocking reads in turns.
async fn run_unwatchable(shared: &Arc<Shared>, fd: OwnedFd, e: io::Error, source: Source) {
    let (source, end) = if e.raw_os_error() != Some(Errno::PERM.raw_os_error()) {
        (Some(source), End::Failed(e))
    } else {
        match set_nonblocking(&fd, false) {
            Ok(()) => read_blocking(shared, fd, source).await,
            Err(e) => (Some(source), End::Failed(e)),
        }
    };
    end_source(shared, source, end);
}

/// Stores what a source has left and says why it stopped, if not at end
/// of file or shutdown.
fn end_source(shared: &Shared, source: Option<Source>, end: End) {
    let Some(mut source) = source else {
        if let End::Failed(e) = end {
            shared.notice(Level::Warning, || format!("stopped reading an fd: {e}"));
        }
        return;
    };
    if let End::Failed(e) = &end {
        shared.notice(Level::Warning, || {
            format!("stopped reading an fd of source {:?}: {e}", source.name())
        });
    }
    source.finish(shared);
}

/// Registers an fd with tokio's epoll for reads.
///
/// tokio 1.54 deprecated its safe constructors (tokio PR 8587) because a
/// `T: AsRawFd` could close or swap its fd while registered. An `OwnedFd`
/// cannot: the `AsyncFd` owns it, so it stays open and the same until the
/// registration is dropped, which is exactly the contract of the `unsafe`
/// replacement. Using the deprecated safe wrapper keeps `unsafe` out of
/// this module.
#[allow(deprecated)]
fn watch(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, tokio::io::unix::AsyncFdRegisterError<OwnedFd>> {
    AsyncFd::try_with_interest(fd, Interest::READABLE)
}

fn set_nonblocking(fd: &OwnedFd, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(fd)?;
    let want = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if want != flags {
        fcntl_setfl(fd, want)?;
    }
    Ok(())
}

/// What woke a waiting source.
enum Wake<'a> {
    Shutdown,
    /// The rate limit's window ended with lines suppressed.
    Window,
    Ready(io::Result<tokio::io::unix::AsyncFdReadyGuard<'a, OwnedFd>>),
}

/// Reads a pollable fd as readiness comes, one chunk per turn.
async fn read_async(shared: &Shared, fd: &AsyncFd<OwnedFd>, source: &mut Source) -> End {
    // One wait for all three wake-ups, hand-polled rather than a `select!`
    // per turn: this future is most of an idle source's memory. The
    // readiness waker lives in the fd's registration (`poll_read_ready`),
    // and the rate-limit timer is boxed and exists only while due.
    let mut cancelled = std::pin::pin!(shared.shutdown.cancelled());
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        shared.pacer.admit().await;
        // The timer follows the limiter's window, which a read may have
        // moved on.
        let due = source
            .limit
            .as_ref()
            .and_then(|l| l.due())
            .map(tokio::time::Instant::from);
        match (due, &mut timer) {
            (None, _) => timer = None,
            (Some(at), Some(t)) => {
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
            }
            (Some(at), None) => timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        let wake = std::future::poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if let Some(t) = &mut timer {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Window);
                }
            }
            fd.poll_read_ready(cx).map(Wake::Ready)
        })
        .await;
        let mut guard = match wake {
            Wake::Shutdown => return End::Shutdown,
            Wake::Window => {
                timer = None;
                if let Some(limit) = &mut source.limit {
                    limit.report(&shared.selflog, &source.origin.origin().source);
                }
                continue;
            }
            Wake::Ready(Ok(guard)) => guard,
            Wake::Ready(Err(e)) => return End::Failed(e),
        };
        source.take_buffer(shared);
        let mut room = 0;
        let read = guard.try_io(|fd| {
            let buf = source.splitter.read_buf();
            room = buf.len();
            rustix::io::read(fd.get_ref(), buf).map_err(io::Error::from)
        });
        drop(guard);
        match read {
            // Nothing more for now: an idle source holds no buffer.
            Err(_would_block) => source.give_back_buffer(shared),
            Ok(Ok(0)) => return End::Eof,
            Ok(Ok(n)) => {
                if shared.pacer.engaged() {
                    // Boxed: an idle source's future must stay small.
                    Box::pin(source.commit_paced(shared, n)).await;
                } else {
                    source.commit(shared, n);
                }
                // A full buffer means more is waiting: let the other sources
                // have a turn first. A short read drained the fd, and a
                // yield then would only cost the follower woken by these
                // lines a trip through the scheduler's deferred queue.
                if n == room {
                    tokio::task::yield_now().await;
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return End::Failed(e),
        }
    }
}

/// Reads an fd epoll refuses on the blocking pool, in slices of at most
/// [`SLICE_READS`] reads or [`SLICE_TIME`], taking turns with the others.
/// The source moves to the blocking thread for each slice and comes back
/// with it; it is lost only if that thread panics.
async fn read_blocking(shared: &Arc<Shared>, fd: OwnedFd, source: Source) -> (Option<Source>, End) {
    let capped = rustix::fs::fstat(&fd)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        })
        .unwrap_or(true);
    // A capped source reads one buffer per turn, then waits until its byte
    // budget allows the next.
    let reads_per_slice = if capped { 1 } else { SLICE_READS };
    let started = Instant::now();
    let mut total: u64 = 0;
    let mut state = (source, fd);
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return (Some(state.0), End::Shutdown),
            permit = shared.blocking.acquire() => permit.expect("the semaphore is never closed"),
        };
        let slice_shared = Arc::clone(shared);
        let job = tokio::task::spawn_blocking(move || {
            let (mut source, fd) = state;
            let (end, bytes) = read_slice(&slice_shared, &fd, &mut source, reads_per_slice);
            ((source, fd), (end, bytes))
        });
        let (back, (end, bytes)) = match job.await {
            Ok(back) => back,
            Err(e) => {
                let e = io::Error::other(format!("the reader thread failed: {e}"));
                return (None, End::Failed(e));
            }
        };
        drop(permit);
        state = back;
        if let Some(end) = end {
            return (Some(state.0), end);
        }
        total += bytes as u64;
        if capped {
            let due = started + Duration::from_secs_f64(total as f64 / DEVICE_READ_RATE as f64);
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return (Some(state.0), End::Shutdown),
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        tokio::task::yield_now().await;
    }
}

/// One slice of at most `max_reads` blocking reads: how it ended (`None`
/// when the source should go on) and the bytes read.
fn read_slice(
    shared: &Shared,
    fd: &OwnedFd,
    source: &mut Source,
    max_reads: usize,
) -> (Option<End>, usize) {
    let started = Instant::now();
    let mut end = None;
    let mut bytes = 0;
    for _ in 0..max_reads {
        if shared.shutdown.is_cancelled() {
            end = Some(End::Shutdown);
            break;
        }
        source.take_buffer(shared);
        match rustix::io::read(fd, source.splitter.read_buf()) {
            Ok(0) => {
                end = Some(End::Eof);
                break;
            }
            Ok(n) => {
                bytes += n;
                source.commit(shared, n)
            }
            Err(Errno::INTR) => {}
            Err(e) => {
                end = Some(End::Failed(e.into()));
                break;
            }
        }
        if started.elapsed() >= SLICE_TIME {
            break;
        }
    }
    source.give_back_buffer(shared);
    (end, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingConfig;

    fn shared(config: IngestConfig) -> Arc<Shared> {
        let ring = Arc::new(Ring::open(&RingConfig::new(1024)).unwrap());
        Arc::new(Shared {
            pool: BufferPool::new(LineSplitter::buffer_len(config.max_line_len), POOL_KEEP),
            selflog: SelfLog::new(Arc::clone(&ring)).unwrap(),
            pacer: Arc::new(Pacer::new(ring.clone(), config.follower_pacing)),
            ring,
            config,
            active: AtomicUsize::new(0),
            blocking: Semaphore::new(BLOCKING_READERS),
            shutdown: CancellationToken::new(),
            notices: Mutex::new(Notices::new()),
        })
    }

    /// An idle source is its task's future plus a little: keep the future
    /// small, since 100,000 of them may wait at once.
    #[test]
    fn an_idle_source_task_is_small() {
        let shared = shared(IngestConfig::default());
        let origin = shared.ring.origin(Origin::new("x")).unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        let source = Source::new(&shared.config, origin);
        let task = run_source(Open::new(&shared), OwnedFd::from(r), source);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "a source task's future takes {size} bytes");
    }

    #[test]
    fn the_rate_limit_admits_per_window_and_counts_the_rest() {
        let shared = shared(IngestConfig::default());
        let mut limit = Limiter::new(RateLimit {
            lines: 10,
            interval: Duration::from_secs(3600),
        });
        assert_eq!(limit.admit(4, &shared.selflog, "s"), 4);
        assert_eq!(limit.admit(10, &shared.selflog, "s"), 6);
        assert_eq!(limit.admit(3, &shared.selflog, "s"), 0);
        assert_eq!(limit.suppressed, 7);
        assert!(limit.due().is_some());
        limit.report(&shared.selflog, "s");
        assert_eq!(limit.suppressed, 0);
        assert!(limit.due().is_none());
        // A new window admits again.
        limit.window -= Duration::from_secs(3601);
        assert_eq!(limit.admit(3, &shared.selflog, "s"), 3);
    }

    #[test]
    fn registration_warnings_are_rate_limited() {
        let shared = shared(IngestConfig::default());
        let before = shared.ring.published_seq();
        for i in 0..100 {
            shared.notice(Level::Warning, || format!("warning {i}"));
        }
        assert_eq!(shared.ring.published_seq() - before, NOTICE_BURST as u64);
        assert!(shared.notices_due().is_some());
        shared.flush_notices();
        assert_eq!(
            shared.ring.published_seq() - before,
            NOTICE_BURST as u64 + 1
        );
        assert!(shared.notices_due().is_none());
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = raise_fd_limit().unwrap();
        assert!(soft == hard || hard == u64::MAX, "soft {soft}, hard {hard}");
    }
}
