//! The daemon: binds the sockets, opens the ring, runs the fd-passing ingest,
//! the query server and the HTTP API on one tokio runtime, and shuts down
//! cleanly.
//!
//! What it promises:
//! - **HTTP** ([`crate::serve::http`]) on its own TCP listener, bound with
//!   the sockets (before daemonizing). On the default address a port already
//!   taken only turns HTTP off, with a warning; an address given with
//!   `--http` that cannot be bound stops the start with an error.
//! - **Sockets.** The ingest socket (unix datagram) and the query socket
//!   (unix stream) come from, in this order: an inherited fd
//!   (`--fd-log`/`--fd-query`), systemd socket activation (`LISTEN_FDS`;
//!   the datagram socket is the ingest socket, the stream socket the query
//!   socket), or a path. An inherited fd is taken over without `unsafe`
//!   (see `adopt_fd`): each number once, after checking that it is open
//!   and a socket of the right kind. A path is bound only after checking
//!   that nothing listens on it: a stale socket file left by a dead daemon
//!   is replaced, a live one is refused with an error that says what to
//!   do. Sockets it creates get `socket_mode` (0660 by default, because
//!   the query socket hands out every log on the host) from the moment
//!   they exist.
//! - **Daemonizing** (`-daemonize`, as memlogd): the sockets and the HTTP
//!   listener are bound first, in the foreground, so that errors reach the
//!   caller. Then ringtail starts itself again in the background (as
//!   memlogd does), with the same command line except that the bound
//!   sockets are handed over as inherited fds (`--fd-log`, `--fd-query`, and
//!   the hidden flags of [`Handover`]: the HTTP listener, a readiness pipe,
//!   the socket files to remove at shutdown). The caller's process exits 0
//!   only once the background daemon reports that it serves, or 1 with its
//!   exit status if it died first. It re-executes rather than forks because
//!   `fork` is `unsafe` in Rust (a child of a multi-threaded process may
//!   only run async-signal-safe code), while a fresh process image is sound
//!   whatever threads existed before, and needs no `unsafe`. The background
//!   daemon runs in a session of its own with stdin on /dev/null; until it
//!   serves, its errors go to the caller's stderr, then stderr is /dev/null
//!   too, and so is stdout unless `--echo` prints there.
//! - **Self log.** Start (with the configuration and paths), stop, and a
//!   ring file's recovery are entries with source `ringtail`.
//! - **Echo** (`--echo`): every entry is printed to stdout as memlogd does,
//!   by a follower thread of its own, so a slow stdout never slows writers
//!   (a follower that falls behind gets a gap line, not back-pressure).
//! - **Shutdown** on SIGTERM or SIGINT: stop accepting, let ingest store
//!   what it has read, remove the socket files it created, or that the
//!   process which daemonized it created (never other inherited ones),
//!   write the stop entry, flush a ring file, return `Ok`.

use std::ffi::OsString;
use std::fs;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{getsockopt, sockopt, SockType};
use nix::sys::stat::Mode;
use tokio_util::sync::CancellationToken;

use crate::format::{self, Format};
use crate::ring::{All, Read, ReadBatch, Ring, RingConfig, RingError};
use crate::selflog::SelfLog;
use crate::serve::http;
use crate::serve::memlogq::{self, QueryConfig};
use crate::sources::pace::Pacer;
use crate::sources::{fdpass, IngestConfig};

/// Where one of the daemon's sockets comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketSpec {
    /// Bind this path (after checking nothing listens on it).
    Path(PathBuf),
    /// An already-bound socket inherited as this fd (memlogd's `-fd-log` /
    /// `-fd-query`); never unlinked by ringtail.
    Fd(RawFd),
}

/// Everything the daemon needs; the command line builds it.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub ring: RingConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    /// The fd-passing ingest socket (unix datagram).
    pub log_socket: SocketSpec,
    /// The memlogq query socket (unix stream).
    pub query_socket: SocketSpec,
    /// Permission bits of the socket files it creates.
    pub socket_mode: u32,
    /// A directory to create (with this mode) before binding: the default
    /// socket directory. `None` when the paths were given.
    pub socket_dir: Option<(PathBuf, u32)>,
    /// Take sockets passed by systemd (`LISTEN_PID`/`LISTEN_FDS`).
    pub systemd_activation: bool,
    /// Print every entry to stdout as memlogd does.
    pub echo: bool,
    /// The HTTP API (`--http` and its companions); `None` is off.
    pub http: Option<http::ListenConfig>,
    /// Go to the background once the sockets are bound (see the module
    /// docs): start [`DaemonConfig::relaunch`] with the sockets handed over.
    pub daemonize: bool,
    /// The command line (program name first) that starts this same daemon
    /// again, without the flags that choose the sockets, daemonize, or hand
    /// sockets over: `daemonize` adds those of [`background_args`]. The
    /// command line module builds it from the program's own; unused
    /// without `daemonize`.
    pub relaunch: Vec<OsString>,
    /// Set in the background daemon that `daemonize` started: what its
    /// parent handed over besides the two sockets.
    pub handover: Option<Handover>,
    /// The flag names that set the two sockets, for error messages
    /// (`--socket-log`, or `-socket-log` when invoked as memlogd).
    pub log_flag: String,
    pub query_flag: String,
}

/// What the parent of `-daemonize` hands the background daemon, besides
/// the two sockets (`--fd-log`, `--fd-query`): fds it inherits and the
/// socket files it is to remove. Passed on its command line with hidden
/// flags (see [`background_args`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// Write end of the readiness pipe: one byte written once serving
    /// (`--ready-fd`).
    pub ready_fd: RawFd,
    /// The HTTP listener the parent bound (`--fd-http`); `None` when it
    /// bound none (HTTP off, or its default address taken).
    pub http_fd: Option<RawFd>,
    /// Socket files the parent created: the background daemon received
    /// them as fds but removes them at shutdown (`--owned-socket`).
    pub owned_sockets: Vec<PathBuf>,
}

/// The flags that hand the two bound sockets and `handover` to the
/// background daemon, appended to [`DaemonConfig::relaunch`].
pub fn background_args(log_fd: RawFd, query_fd: RawFd, handover: &Handover) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--fd-log".into(),
        log_fd.to_string().into(),
        "--fd-query".into(),
        query_fd.to_string().into(),
        "--ready-fd".into(),
        handover.ready_fd.to_string().into(),
    ];
    if let Some(fd) = handover.http_fd {
        args.extend(["--fd-http".into(), fd.to_string().into()]);
    }
    for path in &handover.owned_sockets {
        // One token, `--owned-socket=PATH`, so that no path (one starting
        // with a dash, say) can be read as a flag.
        let mut arg = OsString::from("--owned-socket=");
        arg.push(path);
        args.push(arg);
    }
    args
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Socket(String),
    #[error("cannot open the ring: {0}")]
    Ring(#[from] RingError),
    #[error("{0}")]
    Start(String),
    #[error("{what} stopped: {error}")]
    Task { what: &'static str, error: String },
}

/// The two sockets, bound, with the files this process created.
struct Bound {
    log: UnixDatagram,
    query: UnixListener,
    log_name: String,
    query_name: String,
    /// Socket files to remove at shutdown (never inherited ones).
    created: Vec<PathBuf>,
}

/// Runs the daemon until SIGTERM or SIGINT; with `daemonize`, returns
/// `Ok` as soon as the background daemon serves. Call it before any thread
/// exists (from `main`): it changes the umask while it binds, and the
/// environment when it takes systemd's sockets.
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let mut fds = FdTaker::default();
    let ready = match &config.handover {
        Some(handover) => {
            // The background daemon of `-daemonize`: a session of its own,
            // so no controlling terminal, and no SIGHUP or SIGINT from the
            // shell that started its parent. (setsid fails only in a
            // process group leader, which a spawned child is not.)
            let _ = nix::unistd::setsid();
            Some(fds.adopt(handover.ready_fd, "--ready-fd")?)
        }
        None => None,
    };
    let bound = bind_sockets(&config, &mut fds)?;
    let created = bound.created.clone();
    let result = bind_http(&config, &mut fds).and_then(|http| {
        if config.daemonize {
            relaunch(&config, bound, http)
        } else {
            run_bound(config, bound, http, ready)
        }
    });
    if result.is_err() {
        // Whatever went wrong after binding, leave no socket file behind
        // (at a normal stop `serve` has removed them already).
        remove_created(&created);
    }
    result
}

/// The HTTP listener, bound (like the unix sockets) before daemonizing so
/// that errors reach the caller. A taken default address is not fatal: the
/// daemon runs without HTTP and says so (the warning is returned, to be
/// printed once the daemon listens).
struct HttpBound {
    listener: Option<std::net::TcpListener>,
    warning: Option<String>,
}

fn bind_http(config: &DaemonConfig, fds: &mut FdTaker) -> Result<HttpBound, DaemonError> {
    let handed = match config.handover.as_ref().and_then(|h| h.http_fd) {
        Some(n) => Some((fds.adopt(n, "--fd-http")?, n)),
        None => None,
    };
    let Some(h) = &config.http else {
        return Ok(HttpBound {
            listener: None,
            warning: None,
        });
    };
    if let Some((fd, n)) = handed {
        // The listener the parent of `-daemonize` bound: same address,
        // even for port 0.
        check_socket(&fd, SockType::Stream, n, "the HTTP listener")?;
        let listener = std::net::TcpListener::from(fd);
        if let Err(e) = listener.local_addr() {
            return Err(DaemonError::Socket(format!(
                "--fd-http {n}: fd {n} is not a TCP listener ({e})"
            )));
        }
        return Ok(HttpBound {
            listener: Some(listener),
            warning: None,
        });
    }
    match std::net::TcpListener::bind(h.addr) {
        Ok(listener) => Ok(HttpBound {
            listener: Some(listener),
            warning: None,
        }),
        Err(e) if !h.explicit => {
            let why = if e.kind() == io::ErrorKind::AddrInUse {
                "is in use by another program".to_string()
            } else {
                format!("is not available ({})", e.kind())
            };
            Ok(HttpBound {
                listener: None,
                warning: Some(format!(
                    "the HTTP API is off: its default address {} {why}; pass --http ADDR \
                     (port 0 picks a free port) or --http off",
                    h.addr
                )),
            })
        }
        Err(e) => Err(DaemonError::Socket(format!(
            "cannot listen for HTTP on {}: {e}; pass another --http ADDR (port 0 picks a free \
             port), or --http off",
            h.addr
        ))),
    }
}

fn run_bound(
    config: DaemonConfig,
    bound: Bound,
    http: HttpBound,
    ready: Option<OwnedFd>,
) -> Result<(), DaemonError> {
    match fdpass::raise_fd_limit() {
        Ok(_) => {}
        Err(e) => eprintln!("ringtail: warning: cannot raise the open-file limit ({e}); fewer sources can be read at once"),
    }
    let ring = Arc::new(Ring::open(&config.ring)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ringtail")
        .build()
        .map_err(|e| DaemonError::Start(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve(config, bound, http, ring, ready));
    // A source read on the blocking pool that is stuck in a read must not
    // keep the process from exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The part that runs on the runtime.
async fn serve(
    config: DaemonConfig,
    bound: Bound,
    http_bound: HttpBound,
    ring: Arc<Ring>,
    ready: Option<OwnedFd>,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let start_err = |what: &str, e: io::Error| DaemonError::Start(format!("{what}: {e}"));
    // Handlers go in before readiness is reported, so a SIGTERM sent as soon
    // as the sockets answer is not lost.
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| start_err("cannot handle SIGTERM", e))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| start_err("cannot handle SIGINT", e))?;

    let selflog = SelfLog::new(ring.clone())?;
    let token = CancellationToken::new();
    // The echo follower starts first, so it prints the start entry and
    // every line after it.
    let echo_stop = CancellationToken::new();
    let echo = if config.echo {
        let thread = spawn_echo(ring.clone(), echo_stop.clone())
            .map_err(|e| start_err("cannot start the --echo thread", e))?;
        Some(thread)
    } else {
        None
    };

    let recovery = ring.recovery();
    if recovery.reopened {
        let file = config.ring.file.as_deref().map(Path::display);
        let msg = format!(
            "ring file {} reopened: {} entries intact, {} torn entries dropped (opening {})",
            file.map(|f| f.to_string()).unwrap_or_default(),
            recovery.intact,
            recovery.torn,
            recovery.epoch
        );
        if recovery.torn > 0 {
            selflog.warn(msg);
        } else {
            selflog.info(msg);
        }
    }
    let http_listener = match (http_bound.listener, &config.http) {
        (Some(l), Some(h)) => {
            let l = l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .map_err(|e| start_err("cannot use the HTTP listener", e))?;
            let addr = l
                .local_addr()
                .map_err(|e| start_err("cannot read the HTTP listener's address", e))?;
            Some((l, addr, h.config.clone()))
        }
        _ => None,
    };
    let http_addr = http_listener.as_ref().map(|(_, addr, _)| *addr);
    selflog.info(start_summary(&config, &bound, &ring, http_addr));

    let log_socket =
        to_tokio_datagram(bound.log).map_err(|e| start_err("cannot use the ingest socket", e))?;
    let query_listener =
        to_tokio_listener(bound.query).map_err(|e| start_err("cannot use the query socket", e))?;
    let pacer = Arc::new(Pacer::new(ring.clone(), config.ingest.follower_pacing));
    let mut ingest = tokio::spawn(fdpass::serve(
        log_socket,
        ring.clone(),
        pacer.clone(),
        selflog.clone(),
        config.ingest.clone(),
        token.clone(),
    ));
    let mut queries = tokio::spawn(memlogq::serve(
        query_listener,
        ring.clone(),
        pacer,
        selflog.clone(),
        config.query.clone(),
        token.clone(),
    ));

    let mut http_task = http_listener.map(|(listener, _, http_config)| {
        let app = http::app(ring.clone(), selflog.clone(), http_config, token.clone());
        tokio::spawn(http::serve(listener, app, token.clone()))
    });

    let http_where = match http_addr {
        Some(addr) => format!(", HTTP API on http://{addr}/"),
        None => String::new(),
    };
    eprintln!(
        "ringtail: listening: ingest (fd passing) on {}, queries on {}{http_where}",
        bound.log_name, bound.query_name
    );
    if let Some(w) = &http_bound.warning {
        eprintln!("ringtail: warning: {w}");
        selflog.warn(w);
    }
    report_ready(ready);

    let failed = |what: &'static str, r: Result<io::Result<()>, tokio::task::JoinError>| {
        let error = match r {
            Ok(Ok(())) => "it ended on its own".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        DaemonError::Task { what, error }
    };
    let (reason, mut outcome) = tokio::select! {
        _ = sigterm.recv() => ("SIGTERM".to_string(), Ok(())),
        _ = sigint.recv() => ("SIGINT".to_string(), Ok(())),
        r = &mut ingest => {
            let e = failed("the ingest socket", r);
            (e.to_string(), Err(e))
        }
        r = &mut queries => {
            let e = failed("the query socket", r);
            (e.to_string(), Err(e))
        }
        r = async {
            match &mut http_task {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => {
            http_task = None;
            let e = failed("the HTTP API", r);
            (e.to_string(), Err(e))
        }
    };

    // Stop accepting first: new clients find no socket file and fail fast.
    token.cancel();
    for path in &bound.created {
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("ringtail: warning: cannot remove {}: {e}", path.display());
            }
        }
    }
    // Ingest stores what it has read before its task ends; a task that
    // does not end in time is abandoned rather than holding up a stop
    // the service manager would end with SIGKILL anyway.
    const DRAIN: Duration = Duration::from_secs(10);
    let mut tasks = vec![("ingest", &mut ingest), ("queries", &mut queries)];
    if let Some(task) = &mut http_task {
        tasks.push(("the HTTP API", task));
    }
    for (what, task) in tasks {
        if task.is_finished() {
            continue;
        }
        match tokio::time::timeout(DRAIN, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                eprintln!("ringtail: warning: {what} ended with an error while stopping: {e}")
            }
            Ok(Err(e)) => eprintln!("ringtail: warning: {what} failed while stopping: {e}"),
            Err(_) => eprintln!(
                "ringtail: warning: {what} did not stop within {DRAIN:?}; stopping anyway"
            ),
        }
    }
    selflog.info(format!("ringtail stopped ({reason})"));
    if let Some(echo) = echo {
        // The echo thread prints what is left (the stop entry included),
        // then sees the token.
        echo_stop.cancel();
        let _ = echo.join();
    }
    if config.ring.file.is_some() {
        if let Err(e) = ring.flush() {
            eprintln!("ringtail: warning: cannot flush the ring file: {e}");
            if outcome.is_ok() {
                outcome = Err(DaemonError::Start(format!(
                    "cannot flush the ring file: {e}"
                )));
            }
        }
    }
    outcome
}

/// The start entry: version, sockets, ring geometry, ingest settings.
fn start_summary(
    config: &DaemonConfig,
    bound: &Bound,
    ring: &Ring,
    http: Option<std::net::SocketAddr>,
) -> String {
    let g = ring.geometry();
    let ring_where = match &config.ring.file {
        Some(f) => format!("file {}", f.display()),
        None => "memory".to_string(),
    };
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_string()).unwrap_or_default()
    };
    let long_lines = name(clap::ValueEnum::to_possible_value(
        &config.ingest.long_lines,
    ));
    let query_format = name(clap::ValueEnum::to_possible_value(&config.query.format));
    let rate = match config.ingest.rate_limit {
        Some(r) => format!("{}/{:?}", r.lines, r.interval),
        None => "off".to_string(),
    };
    let http = match http {
        Some(addr) => format!("http://{addr}/"),
        None => "off".to_string(),
    };
    format!(
        "ringtail {} started: ingest {}, queries {}, http {http}, ring in {ring_where} ({} lines, {} bytes, {} sources), \
         max-line-len {}, long-lines {long_lines}, rate-limit {rate}, query-format {query_format}, pid {}",
        env!("CARGO_PKG_VERSION"),
        bound.log_name,
        bound.query_name,
        g.slots,
        g.data_words * 8,
        g.origin_slots,
        config.ingest.max_line_len,
        std::process::id()
    )
}

// ----------------------------------------------------------------------
// sockets

fn bind_sockets(config: &DaemonConfig, fds: &mut FdTaker) -> Result<Bound, DaemonError> {
    let mut activated = if config.systemd_activation {
        take_activated_sockets(fds)?
    } else {
        Activated::default()
    };
    if let (SocketSpec::Fd(a), SocketSpec::Fd(b)) = (&config.log_socket, &config.query_socket) {
        if a == b {
            return Err(DaemonError::Socket(format!(
                "{} and {} name the same fd {a}; the ingest socket is a datagram socket and the query socket a stream socket",
                config.log_flag.replace("socket", "fd"),
                config.query_flag.replace("socket", "fd")
            )));
        }
    }
    if let (SocketSpec::Path(a), SocketSpec::Path(b)) = (&config.log_socket, &config.query_socket) {
        if a == b {
            return Err(DaemonError::Socket(format!(
                "the ingest and query sockets are both {}; give {} and {} different paths",
                a.display(),
                config.log_flag,
                config.query_flag
            )));
        }
    }
    let mut created = Vec::new();
    let needs_dir = |spec: &SocketSpec, from_systemd: bool| {
        matches!(spec, SocketSpec::Path(_)) && !from_systemd
    };
    if needs_dir(&config.log_socket, activated.datagram.is_some())
        || needs_dir(&config.query_socket, activated.stream.is_some())
    {
        if let Some((dir, mode)) = &config.socket_dir {
            prepare_socket_dir(dir, *mode, config)?;
        }
    }

    let (log, log_name) = match (&config.log_socket, activated.datagram.take()) {
        (SocketSpec::Fd(n), _) => {
            let fd = fds.adopt(*n, &config.log_flag.replace("socket", "fd"))?;
            check_socket(&fd, SockType::Datagram, *n, "the ingest socket")?;
            let name = inherited_name(&fd, *n, config);
            (UnixDatagram::from(fd), name)
        }
        (SocketSpec::Path(_), Some((fd, n))) => {
            let name = socket_name(&fd, &format!("systemd fd {n}"));
            (UnixDatagram::from(fd), name)
        }
        (SocketSpec::Path(path), None) => {
            check_stale(path, SockType::Datagram, &config.log_flag)?;
            let sock = with_umask(0o177, || UnixDatagram::bind(path))
                .map_err(|e| bind_error(path, &e, &config.log_flag))?;
            created.push(path.clone());
            set_mode(path, config.socket_mode)?;
            (sock, path.display().to_string())
        }
    };
    let (query, query_name) = match (&config.query_socket, activated.stream.take()) {
        (SocketSpec::Fd(n), _) => {
            let fd = fds.adopt(*n, &config.query_flag.replace("socket", "fd"))?;
            check_socket(&fd, SockType::Stream, *n, "the query socket")?;
            let name = inherited_name(&fd, *n, config);
            (UnixListener::from(fd), name)
        }
        (SocketSpec::Path(_), Some((fd, n))) => {
            let name = socket_name(&fd, &format!("systemd fd {n}"));
            (UnixListener::from(fd), name)
        }
        (SocketSpec::Path(path), None) => {
            let bound = check_stale(path, SockType::Stream, &config.query_flag).and_then(|()| {
                with_umask(0o177, || UnixListener::bind(path))
                    .map_err(|e| bind_error(path, &e, &config.query_flag))
            });
            let sock = match bound {
                Ok(s) => s,
                Err(e) => {
                    remove_created(&created);
                    return Err(e);
                }
            };
            created.push(path.clone());
            if let Err(e) = set_mode(path, config.socket_mode) {
                remove_created(&created);
                return Err(e);
            }
            (sock, path.display().to_string())
        }
    };
    if let Some(handover) = &config.handover {
        // Files the parent of `-daemonize` created for these sockets.
        created.extend(handover.owned_sockets.iter().cloned());
    }
    Ok(Bound {
        log,
        query,
        log_name,
        query_name,
        created,
    })
}

fn remove_created(created: &[PathBuf]) {
    for p in created {
        let _ = fs::remove_file(p);
    }
}

/// Creates the default socket directory, or checks that an existing one is
/// ours: a directory someone else owns (or may write to) could hold a
/// socket file of theirs where clients expect ours.
fn prepare_socket_dir(dir: &Path, mode: u32, config: &DaemonConfig) -> Result<(), DaemonError> {
    let hint = format!("or pass {} and {}", config.log_flag, config.query_flag);
    match fs::DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(DaemonError::Socket(format!(
                "cannot create the socket directory {}: permission denied; run as root {hint}",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(DaemonError::Socket(format!(
                "cannot create the socket directory {}: {e}; {hint}",
                dir.display()
            )))
        }
    }
    let md = fs::symlink_metadata(dir)
        .map_err(|e| DaemonError::Socket(format!("cannot inspect {}: {e}", dir.display())))?;
    let me = rustix::process::geteuid().as_raw();
    if !md.file_type().is_dir() {
        return Err(DaemonError::Socket(format!(
            "{} is not a directory (a symlink or a file is there); remove it {hint}",
            dir.display()
        )));
    }
    if md.uid() != me || md.mode() & 0o022 != 0 {
        return Err(DaemonError::Socket(format!(
            "the socket directory {} belongs to uid {} with mode {:o}; it must be yours and writable only by you: remove it {hint}",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Removes a stale socket file (nothing answers on it); refuses a live one.
fn check_stale(path: &Path, kind: SockType, flag: &str) -> Result<(), DaemonError> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(DaemonError::Socket(format!(
                "cannot inspect {}: {e}; pass {flag} PATH",
                path.display()
            )))
        }
    };
    if !md.file_type().is_socket() {
        return Err(DaemonError::Socket(format!(
            "{} exists and is not a socket; remove it or pass {flag} PATH",
            path.display()
        )));
    }
    let probe = match kind {
        SockType::Datagram => UnixDatagram::unbound().and_then(|s| s.connect(path)),
        _ => UnixStream::connect(path).map(drop),
    };
    let in_use = || {
        DaemonError::Socket(format!(
            "another ringtail (or memlogd) is listening on {}; stop it or pass {flag} PATH",
            path.display()
        ))
    };
    match probe {
        Ok(()) => Err(in_use()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DaemonError::Socket(format!(
                "cannot remove the stale socket {}: {e}; remove it or pass {flag} PATH",
                path.display()
            ))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A live socket of the other kind answers with EPROTOTYPE.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => Err(in_use()),
        Err(e) => Err(DaemonError::Socket(format!(
            "{} exists and cannot be checked ({e}); remove it if no daemon uses it, or pass {flag} PATH",
            path.display()
        ))),
    }
}

fn bind_error(path: &Path, e: &io::Error, flag: &str) -> DaemonError {
    let shown = path.display();
    DaemonError::Socket(match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("cannot bind {shown}: permission denied; run as root or pass {flag} PATH")
        }
        io::ErrorKind::NotFound => {
            format!(
            "cannot bind {shown}: the directory {} does not exist; create it or pass {flag} PATH",
            path.parent().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
        )
        }
        io::ErrorKind::AddrInUse => {
            format!("another ringtail (or memlogd) is listening on {shown}; stop it or pass {flag} PATH")
        }
        _ => format!("cannot bind {shown}: {e}; pass {flag} PATH"),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), DaemonError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        DaemonError::Socket(format!(
            "cannot set mode {mode:o} on {}: {e}",
            path.display()
        ))
    })
}

/// Runs `f` with the umask set to `mask`, so a socket file is never
/// reachable with looser permissions than asked, not even between bind
/// and chmod. The umask is process-wide: this runs before any thread.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    let out = f();
    nix::sys::stat::umask(old);
    out
}

/// The path a socket is bound to, for messages.
fn socket_name(fd: &OwnedFd, fallback: &str) -> String {
    match nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()) {
        Ok(addr) => match addr.path() {
            Some(p) => format!("{} ({fallback})", p.display()),
            None => fallback.to_string(),
        },
        Err(_) => fallback.to_string(),
    }
}

/// The name of a socket inherited by number, for messages: its path and
/// fd number; only the path for one the parent of `-daemonize` bound, as
/// that one named it.
fn inherited_name(fd: &OwnedFd, n: RawFd, config: &DaemonConfig) -> String {
    let owned = config.handover.as_ref().map(|h| &h.owned_sockets[..]);
    let path = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd())
        .ok()
        .and_then(|addr| addr.path().map(Path::to_path_buf));
    match (path, owned) {
        (Some(path), Some(owned)) if owned.contains(&path) => path.display().to_string(),
        _ => socket_name(fd, &format!("fd {n}")),
    }
}

/// Takes over fds this process inherited and was told about by number
/// (flags, `LISTEN_FDS`), each number at most once: taking one closes the
/// number, which may then be reused by an fd of ringtail's own.
#[derive(Default)]
struct FdTaker {
    /// The numbers taken so far, with the flag that named each.
    taken: Vec<(RawFd, String)>,
}

impl FdTaker {
    fn adopt(&mut self, n: RawFd, flag: &str) -> Result<OwnedFd, DaemonError> {
        if let Some((_, by)) = self.taken.iter().find(|(t, _)| *t == n) {
            return Err(DaemonError::Socket(format!(
                "{flag} {n}: fd {n} is already taken as {by}; name each inherited socket once"
            )));
        }
        let fd = adopt_fd(n, flag)?;
        self.taken.push((n, flag.to_string()));
        Ok(fd)
    }
}

/// Takes ownership of fd `n`, which this process inherited and was told
/// about by number: returns it as an `OwnedFd` (close-on-exec) and closes
/// the number itself. Only [`FdTaker::adopt`] calls it.
fn adopt_fd(n: RawFd, flag: &str) -> Result<OwnedFd, DaemonError> {
    if n <= 2 {
        return Err(DaemonError::Socket(format!(
            "{flag} {n} names stdin, stdout or stderr; pass the fd number of an inherited socket"
        )));
    }
    if let Err(e) = nix::fcntl::fcntl(n, FcntlArg::F_GETFD) {
        return Err(DaemonError::Socket(format!(
            "{flag} {n}: fd {n} is not open ({e}); the process that starts ringtail must pass the socket as fd {n}"
        )));
    }
    let fd = duplicate_fd(n).map_err(|e| {
        DaemonError::Socket(format!(
            "{flag} {n}: cannot take over fd {n}: {e}; bind the sockets by path instead \
             (--socket-log and --socket-query)"
        ))
    })?;
    // The duplicate is ours now. The number itself is closed, so that the
    // socket is not held twice nor leaks into anything ringtail starts.
    // Closing by number is right here: fd `n` is open (F_GETFD), it was
    // inherited and named precisely so that ringtail takes it over, so
    // nothing else in this process owns it; and `FdTaker` never takes a
    // number twice, so a number closed here and since reused by an fd of
    // ringtail's own is never closed again. A failing close (EINTR or EIO:
    // Linux frees the number anyway) changes nothing for us.
    let _ = nix::unistd::close(n);
    Ok(fd)
}

/// A duplicate of fd `n`, as an `OwnedFd` (close-on-exec), without
/// `unsafe`: the fd is sent to this process itself over a socket pair
/// with SCM_RIGHTS; the kernel checks the number and installs a new fd for
/// the same open file, which rustix hands over as owned.
///
/// Not `pidfd_getfd(2)`, which would do the same in one call: it needs
/// Linux 5.6, and seccomp profiles commonly refuse it (Docker's default
/// one without CAP_SYS_PTRACE). Passing fds over a unix socket is what
/// ringtail's ingest socket is for, so this works wherever ringtail does.
fn duplicate_fd(n: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketFlags,
        SocketType,
    };
    let (tx, rx) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let fds = [n];
    sendmsg::<UnixAddr>(
        tx.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        &rx,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    let received = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    received.ok_or_else(|| io::Error::other("the kernel passed no fd back"))
}

fn check_socket(fd: &OwnedFd, want: SockType, n: RawFd, what: &str) -> Result<(), DaemonError> {
    let kind = |t: SockType| match t {
        SockType::Datagram => "a datagram socket",
        SockType::Stream => "a stream socket",
        _ => "another kind of socket",
    };
    match getsockopt(fd, sockopt::SockType) {
        Ok(t) if t == want => Ok(()),
        Ok(t) => Err(DaemonError::Socket(format!(
            "fd {n} is {}, but {what} must be {}",
            kind(t),
            kind(want)
        ))),
        Err(e) => Err(DaemonError::Socket(format!(
            "fd {n} is not a socket ({e}); {what} must be {}",
            kind(want)
        ))),
    }
}

/// Sockets passed by systemd socket activation.
#[derive(Default)]
struct Activated {
    /// The datagram socket and its fd number.
    datagram: Option<(OwnedFd, RawFd)>,
    stream: Option<(OwnedFd, RawFd)>,
}

/// Takes the sockets systemd passed (`LISTEN_PID` is this process,
/// `LISTEN_FDS` of them from fd 3), by kind: one datagram socket (ingest)
/// and one stream socket (queries). Unsets the variables, as
/// `sd_listen_fds(1)` does.
fn take_activated_sockets(fds: &mut FdTaker) -> Result<Activated, DaemonError> {
    let mut out = Activated::default();
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(out);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(out);
    }
    // Called before any thread exists (see `run`), so changing the
    // environment races with nothing.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let count: RawFd = count.trim().parse().map_err(|_| {
        DaemonError::Socket(format!("LISTEN_FDS={count:?} is not a number of sockets"))
    })?;
    const SD_LISTEN_FDS_START: RawFd = 3;
    for n in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        let fd = fds.adopt(n, "LISTEN_FDS")?;
        let slot = match getsockopt(&fd, sockopt::SockType) {
            Ok(SockType::Datagram) => &mut out.datagram,
            Ok(SockType::Stream) => &mut out.stream,
            _ => {
                return Err(DaemonError::Socket(format!(
                    "systemd passed fd {n}, which is neither a unix datagram nor a stream socket; \
                     list one ListenDatagram= and one ListenStream= path in the .socket unit"
                )))
            }
        };
        if slot.is_some() {
            return Err(DaemonError::Socket(format!(
                "systemd passed two sockets of the same kind (fd {n}); \
                 list one ListenDatagram= and one ListenStream= path in the .socket unit"
            )));
        }
        *slot = Some((fd, n));
    }
    Ok(out)
}

fn to_tokio_datagram(sock: UnixDatagram) -> io::Result<tokio::net::UnixDatagram> {
    sock.set_nonblocking(true)?;
    tokio::net::UnixDatagram::from_std(sock)
}

fn to_tokio_listener(sock: UnixListener) -> io::Result<tokio::net::UnixListener> {
    sock.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(sock)
}

// ----------------------------------------------------------------------
// daemonizing (re-executing, not forking: see the module docs) and readiness

/// `-daemonize`: starts this program again in the background (see the
/// module docs) with the sockets handed over, and returns `Ok` once it
/// serves; an error, with its exit status, if it exits before. The caller
/// removes the socket files it created when this fails; once it succeeds
/// they are the background daemon's.
fn relaunch(config: &DaemonConfig, bound: Bound, http: HttpBound) -> Result<(), DaemonError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        DaemonError::Start(format!("-daemonize: {what}: {e}"))
    };
    let Some((arg0, args)) = config.relaunch.split_first() else {
        return Err(DaemonError::Start(
            "-daemonize: no command line to start the background daemon with".to_string(),
        ));
    };
    let exe = std::env::current_exe().map_err(|e| {
        fail(
            "cannot find this program's executable (is /proc mounted?)",
            &e,
        )
    })?;
    let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| fail("cannot create the readiness pipe", &e))?;
    let handover = Handover {
        ready_fd: ready_write.as_raw_fd(),
        http_fd: http.listener.as_ref().map(AsRawFd::as_raw_fd),
        owned_sockets: bound.created.clone(),
    };
    let (log_fd, query_fd) = (bound.log.as_raw_fd(), bound.query.as_raw_fd());
    // The fds the background daemon inherits, at the same numbers: these
    // lose close-on-exec (this process starts nothing else, and exits
    // soon); every other fd of this process keeps it.
    let mut inherited = vec![log_fd, query_fd, handover.ready_fd];
    inherited.extend(handover.http_fd);
    for fd in inherited {
        nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| fail("cannot pass the sockets on", &e))?;
    }
    let mut command = Command::new(&exe);
    command
        .arg0(arg0)
        .args(args)
        .args(background_args(log_fd, query_fd, &handover))
        .stdin(Stdio::null())
        // Errors before it serves reach the caller; it then moves stderr to
        // /dev/null itself (see `report_ready`).
        .stderr(Stdio::inherit())
        .stdout(if config.echo {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let mut child = command
        .spawn()
        .map_err(|e| fail(&format!("cannot start {}", exe.display()), &e))?;
    // Only the background daemon holds the write end from now on, so that
    // its exit reads as end-of-file here.
    drop(ready_write);
    let mut pipe = fs::File::from(ready_read);
    let mut byte = [0u8; 1];
    let outcome = loop {
        match io::Read::read(&mut pipe, &mut byte) {
            Ok(n) => break Ok(n == 1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            let status = match child.wait() {
                Ok(status) => status.to_string(),
                Err(e) => format!("exit status unknown: {e}"),
            };
            Err(DaemonError::Start(format!(
                "the background daemon exited before it served ({status}); its error, if it \
                 printed one, is above"
            )))
        }
        Err(e) => Err(DaemonError::Start(format!(
            "cannot tell whether the background daemon (pid {}) serves: reading its readiness \
             pipe failed: {e}",
            child.id()
        ))),
    }
}

/// Tells whoever waits that the daemon serves: the process that started
/// it with `-daemonize`, and systemd (`NOTIFY_SOCKET`, `Type=notify`).
fn report_ready(ready: Option<OwnedFd>) {
    if let Some(fd) = ready {
        // The caller of `-daemonize` returns now. stderr goes to /dev/null
        // first (as memlogd's background daemon's does), so that the daemon
        // neither writes to a terminal it has left nor keeps open a pipe
        // that the caller's caller reads to the end.
        if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
        }
        let _ = nix::unistd::write(fd.as_fd(), b"R");
    }
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let sent = UnixDatagram::unbound().and_then(|sock| {
            let bytes = path.as_encoded_bytes();
            if let Some(name) = bytes.strip_prefix(b"@") {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(b"READY=1", &addr)
            } else {
                sock.send_to(b"READY=1", Path::new(&path))
            }
        });
        if let Err(e) = sent {
            eprintln!("ringtail: warning: cannot notify systemd through NOTIFY_SOCKET: {e}");
        }
    }
}

// ----------------------------------------------------------------------
// echo

/// Prints every entry to stdout as memlogd does (`<RFC3339Nano>;<source>;<msg>`),
/// from a follower of its own: stdout can be as slow as it likes, writers
/// never wait for it, and what it falls behind on is reported as a gap
/// line. Stops once `token` is cancelled and everything up to then is
/// printed.
fn spawn_echo(
    ring: Arc<Ring>,
    token: CancellationToken,
) -> io::Result<std::thread::JoinHandle<()>> {
    // Start from the entry appended next, not from wherever the ring is
    // once the thread runs.
    let from = ring.published_seq();
    std::thread::Builder::new()
        .name("ringtail-echo".into())
        .spawn(move || {
            let mut cursor = ring.cursor(from, All);
            let mut batch = ReadBatch::new();
            let mut out = Vec::with_capacity(64 * 1024);
            let stdout = io::stdout();
            loop {
                let stopping = token.is_cancelled();
                batch.clear();
                let status = cursor.read(&mut batch, 1024);
                for item in batch.iter() {
                    match item {
                        Read::Entry(e) => format::write_entry(&mut out, Format::Logread, &e),
                        Read::Gap { first_seq, missed } => format::write_gap(
                            &mut out,
                            Format::Logread,
                            first_seq,
                            missed,
                            crate::timefmt::now_ns(),
                        ),
                    }
                }
                if !out.is_empty() {
                    let mut lock = stdout.lock();
                    if lock.write_all(&out).and_then(|()| lock.flush()).is_err() {
                        // stdout is gone (closed pipe): nothing more to echo to.
                        return;
                    }
                    out.clear();
                }
                if status == crate::ring::ReadStatus::More {
                    continue;
                }
                if stopping {
                    return;
                }
                cursor.wait_blocking(Duration::from_millis(250));
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn an_fd_named_by_number_is_taken_over_once() {
        let (ours, peer) = UnixDatagram::pair().unwrap();
        // Give up ownership, as a socket inherited across exec has none.
        let n = ours.into_raw_fd();
        let mut fds = FdTaker::default();
        let taken = UnixDatagram::from(fds.adopt(n, "--fd-log").unwrap());
        taken.send(b"hi").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        let flags = nix::fcntl::fcntl(taken.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
        assert!(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC));
        // The number is closed (and may be reused): never taken again.
        let e = fds.adopt(n, "--fd-query").unwrap_err().to_string();
        assert!(e.contains("already taken as --fd-log"), "{e}");
    }

    #[test]
    fn fds_that_cannot_be_taken_over_are_refused_with_the_reason() {
        let mut fds = FdTaker::default();
        let e = fds.adopt(1, "--fd-log").unwrap_err().to_string();
        assert!(e.contains("stdin, stdout or stderr"), "{e}");
        // Above any possible fd number: never open.
        let e = fds
            .adopt(2_000_000_000, "--fd-query")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not open"), "{e}");
    }
}
