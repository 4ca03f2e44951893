//! What the integration tests share: one in-process builder for a ring with
//! its sources and servers ([`Stack`]), one harness for a real `ringtail
//! serve` process ([`Daemon`]), waits on conditions, and self-verifying
//! messages ([`verify`]).
//!
//! No wait here sleeps a fixed time and then asserts: every wait polls a
//! condition with a generous deadline that only matters when the test is
//! failing anyway.
#![allow(dead_code)]

pub mod dockerd;
pub mod fake_loki;
pub mod fake_relp;
pub mod moto;
pub mod rsyslog;
pub mod verify;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringtail::entry::Entry;
use ringtail::listener::Socket;
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::serve::http::{self, HttpConfig};
use ringtail::serve::memlogq::{self, QueryConfig};
use ringtail::sources::pace::Pacer;
use ringtail::sources::{fdpass, Context, IngestConfig, Pipeline};
use tokio_util::sync::CancellationToken;

/// How long any one condition may take to come true. Generous on purpose:
/// it bounds only how long a broken test takes to fail, and a passing test
/// never waits for it, while CI runs every test at once on two cores (a
/// RELP catch-up of 20,000 lines took 28 s of a 30 s limit there).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `cond` until it holds, or fails the test naming `what`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `ringtail` binary of this build, or `$RINGTAIL_BIN` when set (a
/// target directory shared by several checkouts holds one `ringtail` at a
/// time: copy yours aside and point this at it).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("RINGTAIL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringtail").to_string())
    })
}

/// `ringtail serve ARGS --check`: (exit code, stdout, stderr).
pub fn serve_check(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(bin())
        .arg("serve")
        .args(args)
        .arg("--check")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every entry a ring holds now.
pub fn entries(ring: &Ring) -> Vec<Entry> {
    let snap = ring.snapshot();
    let mut cursor = snap.cursor(All);
    let mut batch = ReadBatch::new();
    let mut out = Vec::new();
    loop {
        let status = cursor.read(&mut batch, 4096);
        for item in batch.iter() {
            if let Read::Entry(e) = item {
                out.push(e.to_owned());
            }
        }
        if status != ReadStatus::More {
            return out;
        }
    }
}

// ----------------------------------------------------------------------
// in process

/// Builds a [`Stack`]: a ring, the ingest pipeline, and the parts a test
/// asks for, on a runtime of its own, with sockets in a temp dir.
pub struct StackBuilder {
    ring: RingConfig,
    ingest: IngestConfig,
    pacer: Option<Box<dyn FnOnce(Arc<Ring>) -> Pacer>>,
    fdpass: bool,
    query: Option<QueryConfig>,
    http: Option<HttpConfig>,
}

impl StackBuilder {
    pub fn ring(mut self, config: RingConfig) -> Self {
        self.ring = config;
        self
    }

    pub fn lines(mut self, lines: u64) -> Self {
        self.ring = RingConfig::new(lines);
        self
    }

    pub fn ingest(mut self, config: IngestConfig) -> Self {
        self.ingest = config;
        self
    }

    /// A pacer of other limits than the ingest config's.
    pub fn pacer(mut self, pacer: impl FnOnce(Arc<Ring>) -> Pacer + 'static) -> Self {
        self.pacer = Some(Box::new(pacer));
        self
    }

    /// The fd-passing ingest socket, at [`Stack::log`].
    pub fn fdpass(mut self) -> Self {
        self.fdpass = true;
        self
    }

    /// The query socket, at [`Stack::query`].
    pub fn query(mut self, config: QueryConfig) -> Self {
        self.query = Some(config);
        self
    }

    /// The HTTP API (with the Loki API and the dashboard) on a free
    /// loopback port, at [`Stack::http`].
    pub fn http(mut self, config: HttpConfig) -> Self {
        self.http = Some(config);
        self
    }

    pub fn start(self) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log.sock");
        let query = dir.path().join("query.sock");
        let ring = Arc::new(Ring::open(&self.ring).expect("open the ring"));
        let selflog = SelfLog::new(ring.clone()).expect("self log");
        let pacer = match self.pacer {
            Some(make) => Arc::new(make(ring.clone())),
            None => Arc::new(Pacer::new(ring.clone(), self.ingest.follower_pacing)),
        };
        let pipeline = Pipeline::with_pacer(ring.clone(), selflog.clone(), self.ingest, pacer);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut http_addr = None;
        {
            let _guard = runtime.enter();
            if self.fdpass {
                let socket =
                    std::os::unix::net::UnixDatagram::bind(&log).expect("bind the ingest socket");
                let source = fdpass::Args {
                    socket_log: Some(log.clone()),
                    fd_log: None,
                }
                .sources(
                    &ringtail::sources::Defaults {
                        memlogd_paths: false,
                    },
                    &[],
                )
                .expect("the fd-passing source")
                .pop()
                .expect("one source");
                let context = Context {
                    pipeline: pipeline.clone(),
                    shutdown: shutdown.clone(),
                };
                let running = source.start(vec![Socket::UnixDatagram(socket)], context);
                tasks.push(runtime.spawn(async move { running.await.map_err(|e| e.to_string()) }));
            }
            if let Some(config) = self.query {
                let listener =
                    tokio::net::UnixListener::bind(&query).expect("bind the query socket");
                let (p, stop) = (pipeline.clone(), shutdown.clone());
                tasks.push(runtime.spawn(async move {
                    memlogq::serve(listener, p, config, stop)
                        .await
                        .map_err(|e| e.to_string())
                }));
            }
            if let Some(config) = self.http {
                let run = runtime
                    .block_on(http::start(
                        "127.0.0.1:0".parse().unwrap(),
                        pipeline.clone(),
                        config,
                    ))
                    .expect("start the HTTP server");
                http_addr = Some(run.addr);
                let stop = shutdown.clone();
                let inner = run.shutdown.clone();
                tasks.push(runtime.spawn(async move {
                    stop.cancelled().await;
                    inner.cancel();
                    run.task
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())
                }));
            }
        }
        Stack {
            _dir: dir,
            log,
            query,
            http: http_addr,
            ring,
            selflog,
            pipeline,
            shutdown,
            tasks,
            runtime: Some(runtime),
        }
    }
}

/// A ring with the parts a test asked for, running in this process.
pub struct Stack {
    _dir: tempfile::TempDir,
    /// The fd-passing ingest socket (when built with it).
    pub log: PathBuf,
    /// The query socket (when built with it).
    pub query: PathBuf,
    /// The HTTP API's address (when built with it).
    pub http: Option<SocketAddr>,
    pub ring: Arc<Ring>,
    pub selflog: SelfLog,
    pub pipeline: Pipeline,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            ring: RingConfig::new(100_000),
            ingest: IngestConfig::default(),
            pacer: None,
            fdpass: false,
            query: None,
            http: None,
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running")
    }

    /// A pipe whose read end is registered as `name` on the ingest socket;
    /// returns the write end.
    pub fn pipe(&self, name: &str) -> std::io::PipeWriter {
        let (r, w) = std::io::pipe().expect("pipe");
        fdpass::register(&self.log, name.as_bytes(), &[r.as_fd()]).expect("register");
        w
    }

    /// Every entry in the ring now.
    pub fn entries(&self) -> Vec<Entry> {
        entries(&self.ring)
    }

    /// The messages of `source`, as text, in order.
    pub fn messages(&self, source: &str) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|e| e.origin.source == source)
            .map(|e| String::from_utf8_lossy(&e.msg).into_owned())
            .collect()
    }

    /// Polls until `check` returns something, or fails the test (showing
    /// the newest entries).
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&[Entry]) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            let entries = self.entries();
            if let Some(v) = check(&entries) {
                return v;
            }
            if start.elapsed() > DEADLINE {
                let dump: Vec<String> = entries
                    .iter()
                    .rev()
                    .take(20)
                    .map(|e| format!("{}: {}", e.origin.source, String::from_utf8_lossy(&e.msg)))
                    .collect();
                panic!("timed out waiting for {what}; newest entries: {dump:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `source` has exactly `want` as its messages.
    pub fn wait_messages(&self, source: &str, want: &[&str]) -> Vec<Entry> {
        self.wait_for(&format!("{want:?} from {source}"), |entries| {
            let got: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.origin.source == source)
                .collect();
            let texts: Vec<String> = got
                .iter()
                .map(|e| String::from_utf8_lossy(&e.msg).into_owned())
                .collect();
            (texts == want).then(|| got.into_iter().cloned().collect())
        })
    }

    /// Waits for a self-log entry containing every one of `words`.
    pub fn wait_selflog(&self, words: &[&str]) -> String {
        self.wait_for(&format!("a self-log entry with {words:?}"), |entries| {
            entries
                .iter()
                .filter(|e| e.origin.source == "ringtail")
                .map(|e| String::from_utf8_lossy(&e.msg).into_owned())
                .find(|m| words.iter().all(|w| m.contains(w)))
        })
    }

    /// Stops every part and checks that each returns cleanly.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let runtime = self.runtime();
        for task in tasks {
            let result = runtime
                .block_on(async { tokio::time::timeout(DEADLINE, task).await })
                .expect("every part returns after shutdown")
                .expect("no part panics");
            result.expect("every part ends cleanly");
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ----------------------------------------------------------------------
// a real process

/// A `ringtail serve` process started by a test, with its stdout and
/// stderr collected; killed if the test ends without stopping it.
pub struct Daemon {
    pub child: Child,
    /// The ingest and query sockets it was told to use.
    pub log: PathBuf,
    pub query: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Daemon {
    /// `ringtail serve` with both sockets in `dir`, HTTP off unless
    /// `extra` says otherwise, plus `extra` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let log = dir.join("log.sock");
        let query = dir.join("query.sock");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--socket-log".into(),
            log.display().to_string(),
            "--socket-query".into(),
            query.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::spawn(&args, log, query)
    }

    /// Runs the binary with `args`, then waits until it says it listens.
    pub fn spawn(args: &[String], log: PathBuf, query: PathBuf) -> Daemon {
        let mut command = Command::new(bin());
        command.args(args);
        Daemon::spawn_command(command, log, query)
    }

    /// Runs `command` (which starts ringtail, perhaps through a wrapper),
    /// then waits until it says it listens.
    pub fn spawn_command(mut command: Command, log: PathBuf, query: PathBuf) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringtail serve");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let d = Daemon {
            child,
            log,
            query,
            stderr,
            stdout,
        };
        d.wait_listening();
        d
    }

    fn wait_listening(&self) {
        wait_for("the daemon to say where it listens", || {
            let e = self.stderr();
            e.contains("listening") || e.contains("error") || e.contains("ringtail:")
        });
        assert!(
            self.stderr().contains("listening"),
            "daemon did not start: {}",
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// The HTTP address it printed (`HTTP API on http://ADDR/`), once the
    /// whole listening line has arrived (stderr comes in chunks that can
    /// end mid-line).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        let listening_line = || {
            let e = self.stderr();
            let start = e.find("listening")?;
            let end = start + e[start..].find('\n')?;
            Some(e[start..end].to_string())
        };
        wait_for("the daemon's whole listening line", || {
            listening_line().is_some()
        });
        let line = listening_line()?;
        let at = line.find("http://")? + "http://".len();
        line[at..].split('/').next()?.parse().ok()
    }

    /// `ringtail read --socket <query> ARGS`.
    pub fn read(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("read")
            .arg("--socket")
            .arg(&self.query)
            .args(args)
            .output()
            .expect("run ringtail read")
    }

    /// Reads (with `args`) until the output satisfies `cond`; returns it.
    pub fn read_until(&self, args: &[&str], what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        wait_for(what, || {
            let o = self.read(args);
            assert!(
                o.status.success(),
                "read failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            cond(&out)
        });
        out
    }

    /// `ringtail run --socket-log <log> ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("run")
            .arg("--socket-log")
            .arg(&self.log)
            .args(args)
            .output()
            .expect("run ringtail run")
    }

    /// Registers a pipe as `name` on the ingest socket, writes `lines`
    /// into it and closes it.
    pub fn log_lines(&self, name: &[u8], lines: &[String]) {
        use std::io::Write as _;
        let (r, w) = std::io::pipe().unwrap();
        fdpass::register(&self.log, name, &[r.as_fd()]).unwrap();
        drop(r);
        let mut w = w;
        for l in lines {
            writeln!(w, "{l}").unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM)
            .expect("send SIGTERM");
        wait_exit(&mut self.child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (within the deadline) for a child to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        assert!(start.elapsed() < DEADLINE, "the process did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects a pipe's text on a thread of its own.
pub fn collect(mut from: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

// ----------------------------------------------------------------------
// the static binary

/// The statically linked ringtail: `RINGTAIL_STATIC_BIN` if set (CI builds
/// it once, before the tests), else built here by scripts/build-static in
/// the same profile as the test (the first build takes minutes, later
/// ones reuse it).
pub fn static_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RINGTAIL_STATIC_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(root.join("scripts/build-static"));
        if cfg!(debug_assertions) {
            cmd.arg("--debug");
        }
        let o = cmd
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/build-static");
        assert!(o.status.success(), "scripts/build-static failed");
        PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
    })
}

/// A loopback TCP port that is free right now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
