//! memlogd's ingest socket: clients hand over file descriptors, ringtail
//! reads each one to its end and stores its lines (protocols.md, section 1).
//!
//! One datagram is one registration: its payload is the source name and its
//! `SCM_RIGHTS` ancillary data carries one or more fds, which all get that
//! name. [`register`] is the client side (`ringtail run`, tests).
//!
//! What the source promises, besides what [`super::fd_reader`] promises for
//! every fd it reads:
//! - **Registrations are checked.** When fds run out or more than
//!   `--max-sources` fds are open, a new registration is refused with a
//!   self-log entry (its fds are closed) and the socket keeps serving;
//!   nothing crashes and nothing spins. A datagram without fds, fds that
//!   did not arrive, a refused source: each is a self-log entry, throttled
//!   so that a flood of bad datagrams cannot fill the ring with warnings.
//! - **Each fd's lines** are split by [`super::lines`], under the source's
//!   own rate limit (`--rate-limit`).
//! - **At shutdown** it stops receiving, and returns once every fd has
//!   stored what it read.
//!
//! Fds are passed with `rustix`, which hands received fds over as
//! `OwnedFd`s, so this module needs no `unsafe`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix,
};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio_util::task::TaskTracker;

use super::fd_reader::FdReaders;
use super::lines::{LineInput, LineSplitter};
use super::{Context, Defaults, Running, Source, SourceError};
use crate::entry::{Flags, Level, Origin};
use crate::listener::{Address, Listener, Socket, SocketKind};
use crate::ring::MAX_SOURCE_LEN;

/// The most fds one datagram can carry (Linux's `SCM_MAX_FD`).
pub const MAX_FDS_PER_DATAGRAM: usize = 253;

/// Longest payload read; source names are cut to [`MAX_SOURCE_LEN`] anyway.
const PAYLOAD_MAX: usize = 4096;

/// How long the socket pauses after fds failed to arrive (the process is
/// out of fds): long enough not to spin, short enough to recover quickly.
const FD_EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// Free read buffers kept for reuse.
const POOL_KEEP: usize = 64;

/// The listener name of the ingest socket (systemd's `FileDescriptorName=`).
pub const LISTENER: &str = "log";

/// The flags of the fd-passing source.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Ingest socket (memlogd's fd passing)")]
pub struct Args {
    /// The fd-passing ingest socket (memlogd's -socket-log). Default:
    /// log.sock in /run/ringtail (root), $XDG_RUNTIME_DIR/ringtail or
    /// /tmp/ringtail-$UID.
    #[arg(long, value_name = "PATH")]
    pub socket_log: Option<PathBuf>,

    /// Use this inherited, already-bound datagram socket as the ingest
    /// socket (memlogd's -fd-log; overrides --socket-log; -1 means none).
    #[arg(long, value_name = "FD", allow_negative_numbers = true)]
    pub fd_log: Option<i32>,
}

impl Args {
    /// The ingest socket: always one (memlogd has it always).
    pub fn sources(
        &self,
        defaults: &Defaults,
        tables: &[crate::cli::config::ConfigTable],
    ) -> Result<Vec<Box<dyn Source>>, String> {
        if let Some(t) = tables.first() {
            return Err(t.error("the ingest socket is set with the keys socket-log and fd-log, not a [[fdpass]] table"));
        }
        let address = match self.fd_log.filter(|&n| n >= 0) {
            Some(n) => Address::Fd(n),
            None => Address::Path(
                self.socket_log
                    .clone()
                    .unwrap_or_else(|| crate::cli::default_log_socket(defaults.memlogd_paths)),
            ),
        };
        let listener = Listener::new(
            LISTENER,
            SocketKind::UnixDatagram,
            address,
            "ingest (fd passing)",
            "--socket-log",
        );
        Ok(vec![Box::new(FdPassing { listener })])
    }
}

/// The fd-passing source.
pub struct FdPassing {
    listener: Listener,
}

impl Source for FdPassing {
    fn kind(&self) -> &'static str {
        "ingest (fd passing)"
    }

    fn listeners(&self) -> Vec<Listener> {
        vec![self.listener.clone()]
    }

    fn start(self: Box<Self>, mut sockets: Vec<Socket>, context: Context) -> Running {
        Box::pin(async move {
            let socket = sockets
                .pop()
                .ok_or_else(|| SourceError("the ingest socket was not bound".into()))?
                .into_unix_datagram()?;
            socket.set_nonblocking(true)?;
            let socket = UnixDatagram::from_std(socket)?;
            serve(socket, context).await.map_err(SourceError::from)
        })
    }
}

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

/// Serves the ingest socket until `context.shutdown` is cancelled, then
/// waits for every fd to store what it has read and returns.
///
/// Returns an error only if the socket itself fails (it is not a usable
/// datagram socket); problems with single registrations are self-logged.
pub async fn serve(socket: UnixDatagram, context: Context) -> io::Result<()> {
    let pipeline = context.pipeline.clone();
    let limit = pipeline.line_limit();
    let readers = FdReaders::new(
        pipeline,
        LineSplitter::buffer_len(limit.max_line_len),
        POOL_KEEP,
        context.shutdown.clone(),
    );
    let tracker = TaskTracker::new();
    let result = receive_loop(&socket, &readers, &context, &tracker).await;
    drop(socket);
    tracker.close();
    tracker.wait().await;
    readers.pipeline().flush_notices();
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
    readers: &Arc<FdReaders>,
    context: &Context,
    tracker: &TaskTracker,
) -> io::Result<()> {
    let pipeline = readers.pipeline();
    let mut payload = vec![0u8; PAYLOAD_MAX];
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_DATAGRAM))];
    loop {
        let notices_due = pipeline.notices_due();
        let received = tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => return Ok(()),
            r = socket.async_io(Interest::READABLE, || receive(socket, &mut payload, &mut space)) => r,
            _ = sleep_until_opt(notices_due) => {
                pipeline.flush_notices();
                continue;
            }
        };
        match received {
            Ok(reg) => {
                if reg.lost_fds {
                    drop(reg.fds);
                    pipeline.notice(Level::Error, || {
                        format!(
                            "refused source {:?}: its file descriptors did not arrive because \
                             ringtail is out of fds; raise the hard fd limit (ulimit -Hn, \
                             systemd LimitNOFILE=), or set --max-sources below it so \
                             that registrations are refused before fds run out",
                            reg.name
                        )
                    });
                    pause(context, FD_EXHAUSTED_BACKOFF).await;
                } else {
                    start_sources(readers, reg, tracker);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_fatal(&e) => {
                pipeline.selflog().error(format!(
                    "the ingest socket failed: {e}; no new sources are accepted"
                ));
                return Err(e);
            }
            Err(e) => {
                // EMFILE, ENOBUFS, ENOMEM...: transient; wait, do not spin.
                pipeline.notice(Level::Error, || {
                    format!("receiving a registration failed: {e}; retrying")
                });
                pause(context, FD_EXHAUSTED_BACKOFF).await;
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
async fn pause(context: &Context, d: Duration) {
    tokio::select! {
        _ = context.shutdown.cancelled() => {}
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

/// Starts one task per fd of a registration, within `--max-sources`.
fn start_sources(readers: &Arc<FdReaders>, reg: Registration, tracker: &TaskTracker) {
    let pipeline = readers.pipeline();
    let max_sources = pipeline.config().max_sources;
    let Registration { name, mut fds, .. } = reg;
    if fds.is_empty() {
        pipeline.notice(Level::Warning, || {
            format!(
                "ignored a registration for source {name:?} that carried no file \
                 descriptor (send the fds to read as SCM_RIGHTS ancillary data)"
            )
        });
        return;
    }
    let open = readers.active();
    let room = max_sources.saturating_sub(open);
    if fds.len() > room {
        let (total, refused) = (fds.len(), fds.len() - room);
        fds.truncate(room);
        pipeline.notice(Level::Error, || {
            format!(
                "refused {refused} of {total} fd(s) of source {name:?}: {open} sources \
                 are open and at most {max_sources} may be (--max-sources)"
            )
        });
        if fds.is_empty() {
            return;
        }
    }
    let origin = match pipeline.ring().origin(Origin::new(name.clone())) {
        Ok(origin) => origin,
        Err(e) => {
            pipeline.notice(Level::Error, || format!("refused source {name:?}: {e}"));
            return;
        }
    };
    for fd in fds {
        let input = LineInput::new(pipeline, origin.clone(), Flags::default());
        tracker.spawn(readers.read(fd, input));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Ring, RingConfig};
    use crate::selflog::SelfLog;
    use crate::sources::{IngestConfig, Pipeline};

    /// An idle fd is its task's future plus a little: keep the future
    /// small, since 100,000 of them may wait at once.
    #[test]
    fn an_idle_fd_task_is_small() {
        let ring = Arc::new(Ring::open(&RingConfig::new(1024)).unwrap());
        let pipeline = Pipeline::new(
            ring.clone(),
            SelfLog::new(ring.clone()).unwrap(),
            IngestConfig::default(),
        );
        let readers = FdReaders::new(
            pipeline.clone(),
            LineSplitter::buffer_len(1024),
            POOL_KEEP,
            tokio_util::sync::CancellationToken::new(),
        );
        let origin = ring.origin(Origin::new("x")).unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        let task = readers.read(
            OwnedFd::from(r),
            LineInput::new(&pipeline, origin, Flags::default()),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "an fd task's future takes {size} bytes");
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = raise_fd_limit().unwrap();
        assert!(soft == hard || hard == u64::MAX, "soft {soft}, hard {hard}");
    }
}
