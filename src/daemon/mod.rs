//! The daemon: binds every listener, opens the ring, runs the sources, the
//! servers (query socket, HTTP) and the sinks on one tokio runtime, and
//! shuts down cleanly.
//!
//! It knows sources and sinks only through their traits
//! ([`crate::sources::Source`], [`crate::sinks::Sink`]): it binds the
//! [`Listener`]s each asks for, starts each, and waits for each at
//! shutdown. Adding a source or a sink changes nothing here.
//!
//! What it promises:
//! - **Sockets** come from where [`crate::listener`] says (a handover,
//!   systemd by name, an inherited fd, a path or an address), all bound
//!   before anything runs. The HTTP listener on its default address is
//!   optional: a port already taken only turns HTTP off, with a warning; an
//!   address given with `--http` that cannot be bound stops the start.
//! - **Daemonizing** (`-daemonize`, as memlogd): the sockets are bound
//!   first, in the foreground, so that errors reach the caller; then
//!   ringtail starts itself again in the background with every socket
//!   handed over by listener name ([`daemonize`]). The caller exits 0 only
//!   once the background daemon serves.
//! - **Readiness** is reported (to the caller of `-daemonize`, and to
//!   systemd's `NOTIFY_SOCKET`) only once every source, server and sink has
//!   started and every socket answers.
//! - **Self log.** Start (with the configuration and where it listens),
//!   stop, and a ring file's recovery are entries with source `ringtail`.
//! - **Shutdown** on SIGTERM or SIGINT: stop accepting, let every source
//!   store what it has read (at most [`DRAIN`] each), remove the socket
//!   files it created (or that the process which daemonized it created;
//!   never other inherited ones), write the stop entry, let sinks deliver
//!   it, flush a ring file, return `Ok`.

pub mod daemonize;
pub mod notify;

use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::listener::{self, BindOptions, BoundAll, FdTaker, ListenError, Listener, Socket};
use crate::ring::{Ring, RingConfig, RingError};
use crate::selflog::SelfLog;
use crate::serve::http;
use crate::serve::memlogq::{self, QueryConfig};
use crate::sinks::{self, Sink};
use crate::sources::{self, fdpass, IngestConfig, Pipeline, Source};

/// How long shutdown waits for one part (a source storing what it read, a
/// sink delivering the last entries) before it stops anyway.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The listener name of the query socket.
pub const QUERY_LISTENER: &str = "query";
/// The listener name of the HTTP API.
pub const HTTP_LISTENER: &str = "http";

/// Everything the daemon needs; the command line builds it.
pub struct DaemonConfig {
    pub ring: RingConfig,
    pub ingest: IngestConfig,
    /// Every source, in start order.
    pub sources: Vec<Box<dyn Source>>,
    /// Every sink (`--echo`, forwarders).
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where the sinks' counters are listed for the HTTP API (the same
    /// registry as in the HTTP configuration).
    pub sink_registry: sinks::Registry,
    /// The memlogq query socket.
    pub query: (Listener, QueryConfig),
    /// The HTTP API; `None` is off.
    pub http: Option<(Listener, http::HttpConfig)>,
    /// How sockets are bound (mode, default directory, systemd, handover).
    pub bind: BindOptions,
    /// Go to the background once the sockets are bound (see the module
    /// docs): start [`DaemonConfig::relaunch`] with the sockets handed over.
    pub daemonize: bool,
    /// The command line (program name first) that starts this same daemon
    /// again, without `-daemonize`; [`daemonize`] adds the handover flags.
    pub relaunch: Vec<OsString>,
    /// Set in the background daemon that `-daemonize` started: the write end
    /// of its readiness pipe.
    pub ready_fd: Option<RawFd>,
    /// The settings the start entry reports, as `key value` pairs.
    pub summary: Vec<(String, String)>,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Socket(#[from] ListenError),
    #[error("cannot open the ring: {0}")]
    Ring(#[from] RingError),
    #[error("{0}")]
    Start(String),
    #[error("{what} stopped: {error}")]
    Task { what: String, error: String },
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("ring", &self.ring)
            .field("ingest", &self.ingest)
            .field(
                "sources",
                &self.sources.iter().map(|s| s.kind()).collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("query", &self.query)
            .field("http", &self.http)
            .field("bind", &self.bind)
            .field("daemonize", &self.daemonize)
            .finish_non_exhaustive()
    }
}

impl DaemonConfig {
    /// Every listener, in the order they are bound: sources', then the
    /// query socket, then HTTP.
    fn listeners(&self) -> Vec<Listener> {
        let mut all: Vec<Listener> = self.sources.iter().flat_map(|s| s.listeners()).collect();
        all.push(self.query.0.clone());
        if let Some((l, _)) = &self.http {
            all.push(l.clone());
        }
        all
    }
}

/// Runs the daemon until SIGTERM or SIGINT; with `daemonize`, returns
/// `Ok` as soon as the background daemon serves. Call it before any thread
/// exists (from `main`): it changes the umask while it binds, and the
/// environment when it takes systemd's sockets.
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let mut fds = FdTaker::default();
    let ready = match config.ready_fd {
        Some(n) => {
            // The background daemon of `-daemonize`: a session of its own,
            // so no controlling terminal, and no SIGHUP or SIGINT from the
            // shell that started its parent. (setsid fails only in a
            // process group leader, which a spawned child is not.)
            let _ = nix::unistd::setsid();
            Some(fds.adopt(n, "--ready-fd")?)
        }
        None => None,
    };
    let bound = listener::bind_all(&config.listeners(), &config.bind, &mut fds)?;
    let created = bound.created.clone();
    let result = if config.daemonize {
        daemonize::relaunch(&config, &bound)
    } else {
        run_bound(config, bound, ready)
    };
    if result.is_err() {
        // Whatever went wrong after binding, leave no socket file behind
        // (at a normal stop `serve` has removed them already).
        listener::remove_files(&created);
    }
    result
}

fn run_bound(
    config: DaemonConfig,
    bound: BoundAll,
    ready: Option<OwnedFd>,
) -> Result<(), DaemonError> {
    if let Err(e) = fdpass::raise_fd_limit() {
        eprintln!("ringtail: warning: {e}");
    }
    let ring = Arc::new(Ring::open(&config.ring)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ringtail")
        .build()
        .map_err(|e| DaemonError::Start(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve(config, bound, ring, ready));
    // A source read on the blocking pool that is stuck in a read must not
    // keep the process from exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// One running part: what it is, and its task.
struct Part {
    what: String,
    task: JoinHandle<Result<(), String>>,
}

/// Starts `run` as a part that says when it ends (on `ended`: its name and
/// why), so that the daemon notices a part that stops on its own.
fn spawn_part(
    what: String,
    run: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ended: &tokio::sync::mpsc::UnboundedSender<(String, String)>,
) -> Part {
    let ended = ended.clone();
    let name = what.clone();
    let task = tokio::spawn(async move {
        let r = run.await;
        let why = match &r {
            Ok(()) => "it ended on its own".to_string(),
            Err(e) => e.clone(),
        };
        let _ = ended.send((name, why));
        r
    });
    Part { what, task }
}

/// The part that runs on the runtime.
async fn serve(
    config: DaemonConfig,
    mut bound: BoundAll,
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
    let pipeline = Pipeline::new(ring.clone(), selflog.clone(), config.ingest.clone());
    // Sources stop first, then servers; sinks last, so that they deliver
    // the stop entry.
    let stop_sources = CancellationToken::new();
    let stop_servers = CancellationToken::new();
    let stop_sinks = CancellationToken::new();
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();

    // Sinks start first, so that they see the start entry and every line
    // after it.
    let mut sinks_running = Vec::new();
    for sink in config.sinks {
        let what = format!("sink {}", sink.name());
        let run = sinks::run(
            sink,
            pipeline.clone(),
            stop_sinks.clone(),
            &config.sink_registry,
        );
        sinks_running.push(spawn_part(what, run, &ended_tx));
    }

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

    // Where each part listens, for the start entry and the "listening" line.
    let mut places: Vec<Place> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut take = |bound: &mut BoundAll, l: &Listener| -> Option<Socket> {
        let b = bound.take(&l.name)?;
        if let Some(w) = b.warning {
            warnings.push(w);
        }
        if b.socket.is_some() {
            places.push(Place {
                name: l.name.clone(),
                what: l.what.clone(),
                shown: b.shown,
            });
        }
        b.socket
    };

    let mut sources_running = Vec::new();
    for source in config.sources {
        let what = source.kind().to_string();
        let sockets: Vec<Socket> = source
            .listeners()
            .iter()
            .filter_map(|l| take(&mut bound, l))
            .collect();
        let context = sources::Context {
            pipeline: pipeline.clone(),
            shutdown: stop_sources.clone(),
        };
        let running = source.start(sockets, context);
        let run = async move { running.await.map_err(|e| e.to_string()) };
        sources_running.push(spawn_part(what, run, &ended_tx));
    }

    let mut servers_running = Vec::new();
    let (query_listener, query_config) = config.query;
    if let Some(socket) = take(&mut bound, &query_listener) {
        let listener = socket
            .into_unix_listener()
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(l)
            })
            .map_err(|e| start_err("cannot use the query socket", e))?;
        let (p, stop) = (pipeline.clone(), stop_servers.clone());
        let run = async move {
            memlogq::serve(listener, p, query_config, stop)
                .await
                .map_err(|e| e.to_string())
        };
        servers_running.push(spawn_part("the query socket".into(), run, &ended_tx));
    }
    if let Some((http_listener, http_config)) = config.http {
        if let Some(socket) = take(&mut bound, &http_listener) {
            let listener = socket
                .into_tcp_listener()
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .map_err(|e| start_err("cannot use the HTTP listener", e))?;
            let (app, state) = http::app(pipeline.clone(), http_config, stop_servers.clone());
            let stop = stop_servers.clone();
            let run = async move {
                http::serve(listener, app, stop, &state)
                    .await
                    .map_err(|e| e.to_string())
            };
            servers_running.push(spawn_part("the HTTP API".into(), run, &ended_tx));
        }
    }

    selflog.info(start_summary(&config.summary, &places, &ring));
    let where_ = places
        .iter()
        .map(|p| {
            if p.name == HTTP_LISTENER {
                format!("{} on http://{}/", p.what, p.shown)
            } else {
                format!("{} on {}", p.what, p.shown)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("ringtail: listening: {where_}");
    for w in &warnings {
        eprintln!("ringtail: warning: {w}");
        selflog.warn(w);
    }
    daemonize::report_ready(ready, &format!("serving: {where_}"));

    // With `WatchdogSec=`, systemd hears from the runtime while every source
    // and server still runs (one that ends stops the daemon below anyway).
    let alive = || {
        sources_running
            .iter()
            .chain(&servers_running)
            .all(|p| !p.task.is_finished())
    };
    let watchdog = async {
        match notify::watchdog_interval() {
            Some(interval) => notify::watchdog(interval, alive).await,
            None => std::future::pending().await,
        }
    };
    // The first part to end on its own stops the daemon, as a signal does.
    let (reason, mut outcome) = tokio::select! {
        () = watchdog => unreachable!("the watchdog pings forever"),
        _ = sigterm.recv() => ("SIGTERM".to_string(), Ok(())),
        _ = sigint.recv() => ("SIGINT".to_string(), Ok(())),
        Some((what, error)) = ended.recv() => {
            let e = DaemonError::Task { what, error };
            (e.to_string(), Err(e))
        }
    };

    notify::notify(&format!("STOPPING=1\nSTATUS=stopping ({reason})"));
    // Stop accepting first: new clients find no socket file and fail fast.
    stop_sources.cancel();
    stop_servers.cancel();
    for path in &bound.created {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("ringtail: warning: cannot remove {}: {e}", path.display());
            }
        }
    }
    // Sources store what they have read before their tasks end; a task
    // that does not end in time is abandoned rather than holding up a stop
    // the service manager would end with SIGKILL anyway.
    for part in sources_running.iter_mut().chain(servers_running.iter_mut()) {
        drain(part).await;
    }
    selflog.info(format!("ringtail stopped ({reason})"));
    // Sinks deliver what is left (the stop entry included), then stop.
    stop_sinks.cancel();
    for part in &mut sinks_running {
        drain(part).await;
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

/// Waits (at most [`DRAIN`]) for a part that was told to stop.
async fn drain(part: &mut Part) {
    if part.task.is_finished() {
        return;
    }
    let what = &part.what;
    match tokio::time::timeout(DRAIN, &mut part.task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            eprintln!("ringtail: warning: {what} ended with an error while stopping: {e}")
        }
        Ok(Err(e)) => eprintln!("ringtail: warning: {what} failed while stopping: {e}"),
        Err(_) => {
            eprintln!("ringtail: warning: {what} did not stop within {DRAIN:?}; stopping anyway")
        }
    }
}

/// The start entry: version, where each part listens (by listener name:
/// `ingest`, `queries`, `http`, then the others), ring geometry, the
/// settings the command line chose to report.
fn start_summary(settings: &[(String, String)], places: &[Place], ring: &Ring) -> String {
    let g = ring.geometry();
    let label = |name: &str| match name {
        fdpass::LISTENER => "ingest".to_string(),
        QUERY_LISTENER => "queries".to_string(),
        other => other.to_string(),
    };
    let mut out = format!("ringtail {} started:", env!("CARGO_PKG_VERSION"));
    for p in places.iter().filter(|p| p.name != HTTP_LISTENER) {
        out.push_str(&format!(" {} {},", label(&p.name), p.shown));
    }
    match places.iter().find(|p| p.name == HTTP_LISTENER) {
        Some(p) => out.push_str(&format!(" http http://{}/,", p.shown)),
        None => out.push_str(" http off,"),
    }
    let mut settings = settings.iter();
    let ring_in = settings
        .next()
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "memory".into());
    out.push_str(&format!(
        " ring in {ring_in} ({} lines, {} bytes, {} sources)",
        g.slots,
        g.data_words * 8,
        g.origin_slots
    ));
    for (k, v) in settings {
        out.push_str(&format!(", {k} {v}"));
    }
    out.push_str(&format!(", pid {}", std::process::id()));
    out
}

/// Where one listener listens, for the start entry and the "listening"
/// line.
struct Place {
    name: String,
    what: String,
    shown: String,
}
