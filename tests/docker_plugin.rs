//! The logging-plugin API against a real dockerd: ringtail's plugin API
//! module ([`ringtail::sources::docker::http`]) served as a legacy plugin
//! with a recording stand-in for the daemon's side effects, which reads each
//! FIFO with ringtail's frame decoder.
//!
//! These tests check what dockerd really sends (call order, frames, partial
//! pieces, ReadLogs options, the calls for a stopped container's logs) and
//! print it (`--nocapture`). `peer_figures` (ignored by default) measures
//! Docker's own drivers, the figures the finished plugin is compared with:
//! `cargo test --release --test docker_plugin -- --ignored --nocapture`.
//!
//! They need root and a dockerd (see `support/dockerd.rs`); elsewhere they
//! return early unless `RINGTAIL_REQUIRE_DOCKER=1`.

mod support;

use support::dockerd;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use ringtail::entry::Flags;
use ringtail::sources::docker::frame::{
    encode_frame, Decoded, FrameDecoder, LogEntry, ReadLogsEncoder, DEFAULT_MAX_FRAME_LEN,
};
use ringtail::sources::docker::http::{router, LogDriver};
use ringtail::sources::docker::info::{
    ContainerMeta, ReadConfig, ReadLogs, StartLogging, StopLogging,
};
use ringtail::sources::docker::partial::PartialJoiner;
use ringtail::sources::LongLines;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use dockerd::{note, plugin_socket_path, unique_plugin_name, Dockerd};

/// One dockerd at a time: they share `/run/docker/plugins` and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// What reached the stand-in, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Request {
        path: String,
        body: String,
    },
    Start {
        file: PathBuf,
        container: String,
    },
    Stop {
        file: PathBuf,
    },
    Read {
        container: String,
        config: ReadConfig,
    },
}

/// What one FIFO delivered.
#[derive(Default)]
struct Fifo {
    entries: Vec<LogEntry>,
    /// The first bytes read, to compare with ringtail's own encoding.
    raw_head: Vec<u8>,
    truncated: Option<String>,
    other_events: Vec<String>,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// By FIFO path.
    fifos: Mutex<HashMap<PathBuf, Arc<Mutex<Fifo>>>>,
    /// FIFO paths by container id, in StartLogging order.
    by_container: Mutex<HashMap<String, Vec<PathBuf>>>,
    /// Stop requests for the reader tasks: the task drains to EAGAIN, then
    /// answers.
    stoppers: Mutex<HashMap<PathBuf, oneshot::Sender<oneshot::Sender<()>>>>,
}

#[derive(Debug, thiserror::Error)]
enum StandInError {
    #[error("cannot open the FIFO {file}: {source}")]
    Open {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("no FIFO {0} is being read")]
    Unknown(PathBuf),
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Everything a container's FIFOs delivered, in order.
    fn entries(&self, container: &str) -> Vec<LogEntry> {
        let paths = self
            .by_container
            .lock()
            .unwrap()
            .get(container)
            .cloned()
            .unwrap_or_default();
        let fifos = self.fifos.lock().unwrap();
        paths
            .iter()
            .flat_map(|p| fifos[p].lock().unwrap().entries.clone())
            .collect()
    }

    fn first_fifo(&self, container: &str) -> Arc<Mutex<Fifo>> {
        let path = self.by_container.lock().unwrap()[container][0].clone();
        self.fifos.lock().unwrap()[&path].clone()
    }
}

/// Reads one FIFO until asked to stop; then reads what is left until it
/// would block, and says so.
async fn read_fifo(
    rx: pipe::Receiver,
    fifo: Arc<Mutex<Fifo>>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut buf = vec![0u8; 64 * 1024];
    let take = |bytes: &[u8], decoder: &mut FrameDecoder| {
        let mut f = fifo.lock().unwrap();
        if f.raw_head.len() < 256 {
            let n = bytes.len().min(256 - f.raw_head.len());
            f.raw_head.extend_from_slice(&bytes[..n]);
        }
        decoder.feed(bytes, |ev| match ev {
            Decoded::Entry(e) => f.entries.push(e.clone()),
            other => f.other_events.push(format!("{other:?}")),
        });
    };
    loop {
        tokio::select! {
            ready = rx.readable() => {
                if ready.is_err() {
                    return;
                }
                loop {
                    match rx.try_read(&mut buf) {
                        Ok(0) => {
                            if let Err(e) = decoder.finish() {
                                fifo.lock().unwrap().truncated = Some(e.to_string());
                            }
                            return;
                        }
                        Ok(n) => take(&buf[..n], &mut decoder),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    }
                }
            }
            done = &mut stop => {
                while let Ok(n) = rx.try_read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    take(&buf[..n], &mut decoder);
                }
                if let Err(e) = decoder.finish() {
                    fifo.lock().unwrap().truncated = Some(e.to_string());
                }
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

impl LogDriver for Recorder {
    type Logs = Body;
    type Error = StandInError;

    async fn start_logging(
        &self,
        req: StartLogging,
        _meta: ContainerMeta,
    ) -> Result<(), StandInError> {
        let rx = pipe::OpenOptions::new()
            .open_receiver(&req.file)
            .map_err(|source| StandInError::Open {
                file: req.file.clone(),
                source,
            })?;
        let fifo = Arc::new(Mutex::new(Fifo::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        self.fifos
            .lock()
            .unwrap()
            .insert(req.file.clone(), fifo.clone());
        self.stoppers
            .lock()
            .unwrap()
            .insert(req.file.clone(), stop_tx);
        self.by_container
            .lock()
            .unwrap()
            .entry(req.info.container_id.clone())
            .or_default()
            .push(req.file.clone());
        self.seen.lock().unwrap().push(Seen::Start {
            file: req.file.clone(),
            container: req.info.container_id.clone(),
        });
        tokio::spawn(read_fifo(rx, fifo, stop_rx));
        Ok(())
    }

    async fn stop_logging(&self, req: StopLogging) -> Result<(), StandInError> {
        self.seen.lock().unwrap().push(Seen::Stop {
            file: req.file.clone(),
        });
        let stopper = self.stoppers.lock().unwrap().remove(&req.file);
        let stopper = stopper.ok_or_else(|| StandInError::Unknown(req.file.clone()))?;
        let (done_tx, done_rx) = oneshot::channel();
        if stopper.send(done_tx).is_ok() {
            let _ = done_rx.await;
        }
        Ok(())
    }

    async fn read_logs(&self, req: ReadLogs) -> Result<Body, StandInError> {
        self.seen.lock().unwrap().push(Seen::Read {
            container: req.info.container_id.clone(),
            config: req.config,
        });
        let mut entries = self.entries(&req.info.container_id);
        if let Some(tail) = req.config.tail {
            let skip = entries.len().saturating_sub(tail as usize);
            entries.drain(..skip);
        }
        let mut out = Vec::new();
        let mut enc = ReadLogsEncoder::new();
        for e in &entries {
            enc.encode(&mut out, e.stream(), e.time_nano, &e.line, !e.partial);
        }
        Ok(Body::from(out))
    }
}

/// A private dockerd, the busybox image, and the recorder served as the
/// legacy plugin `name`.
struct Setup {
    docker: Dockerd,
    recorder: Arc<Recorder>,
    name: String,
    /// Serves the plugin socket for as long as the setup lives.
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn new() -> Option<Setup> {
        let docker = Dockerd::start()?;
        docker.import_busybox("bb:latest");
        let recorder = Arc::new(Recorder::default());
        let name = unique_plugin_name("rt-test");
        let sock = plugin_socket_path(&name);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rec = recorder.clone();
        let app =
            router(recorder.clone()).layer(middleware::from_fn(move |req: Request, next: Next| {
                let rec = rec.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    rec.seen.lock().unwrap().push(Seen::Request {
                        path: parts.uri.path().to_string(),
                        body: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
            }));
        let listener = runtime
            .block_on(async { tokio::net::UnixListener::bind(&sock) })
            .unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Some(Setup {
            docker,
            recorder,
            name,
            _runtime: runtime,
        })
    }

    fn run(&self, args: &[&str]) -> String {
        String::from_utf8(self.docker.run(args).stdout).unwrap()
    }

    /// Calls that reached the side effects (requests left out).
    fn calls(&self) -> Vec<Seen> {
        self.recorder
            .seen()
            .into_iter()
            .filter(|s| !matches!(s, Seen::Request { .. }))
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.recorder
            .seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Request { path, .. } => Some(path),
                _ => None,
            })
            .collect()
    }

    fn bodies(&self, path: &str) -> Vec<String> {
        self.recorder
            .seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Request { path: p, body } if p == path => Some(body),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to a minute) until `container` delivered `n` entries.
    fn wait_entries(&self, container: &str, n: usize) -> Vec<LogEntry> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.recorder.entries(container);
            if e.len() >= n || Instant::now() > deadline {
                return e;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(plugin_socket_path(&self.name));
        // dockerd removes a FIFO when it stops logging, but leaves it behind
        // when StartLogging failed (seen with 20.10): remove what is left.
        for body in self.bodies("/LogDriver.StartLogging") {
            if let Ok(req) = serde_json::from_str::<serde_json::Value>(&body) {
                if let Some(file) = req["File"].as_str() {
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn container_id(s: &Setup) -> String {
    s.calls()
        .iter()
        .rev()
        .find_map(|c| match c {
            Seen::Start { container, .. } => Some(container.clone()),
            _ => None,
        })
        .expect("a StartLogging")
}

#[test]
fn legacy_plugin_gets_the_container_lines_in_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new() else { return };
    let before = now_ns();
    let out = s.run(&[
        "run",
        "--rm",
        "--log-driver",
        &s.name,
        "--log-opt",
        "tag={{.ImageName}}/{{.ID}}",
        "bb:latest",
        "sh",
        "-c",
        "echo hi; echo err >&2",
    ]);
    let after = now_ns();
    assert_eq!(out, "hi\n", "docker run still attaches the output");
    assert_eq!(
        s.paths(),
        [
            "/Plugin.Activate",
            "/LogDriver.Capabilities",
            "/LogDriver.StartLogging",
            "/LogDriver.StopLogging"
        ]
    );
    let id = container_id(&s);
    let calls = s.calls();
    let Seen::Start { file, .. } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert!(file.starts_with("/run/docker/logging/"), "{file:?}");
    assert_eq!(calls[1], Seen::Stop { file: file.clone() });

    let mut entries = s.recorder.entries(&id);
    // stdout and stderr are copied by two goroutines: their order is not
    // fixed.
    entries.sort_by(|a, b| a.source.cmp(&b.source));
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        (entries[0].source.as_str(), &entries[0].line[..]),
        ("stderr", &b"err"[..])
    );
    assert_eq!(
        (entries[1].source.as_str(), &entries[1].line[..]),
        ("stdout", &b"hi"[..])
    );
    for e in &entries {
        assert!(!e.partial && e.partial_log_metadata.is_none(), "{e:?}");
        assert!(
            (before..=after).contains(&e.time_nano),
            "time_nano {} is not between {before} and {after}",
            e.time_nano
        );
    }
    // ringtail encodes a frame exactly as dockerd did.
    let mut ours = Vec::new();
    for e in &s.recorder.entries(&id) {
        encode_frame(&mut ours, e);
    }
    let fifo = s.recorder.first_fifo(&id);
    let fifo = fifo.lock().unwrap();
    assert_eq!(fifo.truncated, None);
    assert!(fifo.other_events.is_empty(), "{:?}", fifo.other_events);
    assert_eq!(fifo.raw_head, ours);
    note(&format!(
        "frames as dockerd wrote them: {:02x?}",
        fifo.raw_head
    ));

    // The StartLogging body, as dockerd sends it.
    let start = &s.bodies("/LogDriver.StartLogging")[0];
    note(&format!("StartLogging body: {start}"));
    let req = StartLogging::parse(start.as_bytes()).unwrap();
    assert_eq!(req.info.container_id, id);
    assert_eq!(req.info.container_image_name, "bb:latest");
    assert!(req.info.container_name.starts_with('/'));
    let meta = ContainerMeta::from_info(&req.info).unwrap();
    assert_eq!(meta.source, format!("bb:latest/{}", &id[..12]));
    for b in s
        .bodies("/Plugin.Activate")
        .iter()
        .chain(&s.bodies("/LogDriver.Capabilities"))
    {
        assert_eq!(b, "", "Activate and Capabilities come with no body");
    }

    // Log-opts dockerd reads itself reach the plugin too; selected labels
    // and env become labels.
    s.run(&[
        "run",
        "--rm",
        "--log-driver",
        &s.name,
        "--log-opt",
        "mode=non-blocking",
        "--log-opt",
        "max-buffer-size=1m",
        "--log-opt",
        "labels=com.example.team",
        "--log-opt",
        "env-regex=^APP_",
        "--label",
        "com.example.team=core",
        "-e",
        "APP_MODE=prod",
        "bb:latest",
        "true",
    ]);
    let start = s.bodies("/LogDriver.StartLogging").pop().unwrap();
    note(&format!(
        "StartLogging body with log-opts, labels and env: {start}"
    ));
    let req = StartLogging::parse(start.as_bytes()).unwrap();
    assert_eq!(
        req.info.config.get("mode").map(String::as_str),
        Some("non-blocking")
    );
    let origin = ContainerMeta::from_info(&req.info)
        .unwrap()
        .origin(Some(ringtail::entry::Stream::Stdout));
    assert_eq!(origin.label("com_example_team"), Some("core"));
    assert_eq!(origin.label("APP_MODE"), Some("prod"));
    assert_eq!(origin.label("container_name"), Some(req.info.name()));

    // A log-opt the driver does not know, and a tag it cannot render: the
    // container does not start, and the user reads why.
    for (opt, why) in [
        (
            "lables=x",
            "unknown log-opt \"lables\" for the ringtail log driver",
        ),
        (
            "tag={{.Hostname}}",
            "log-opt tag: {{.Hostname}} is not supported by ringtail",
        ),
    ] {
        let out = s.docker.try_run(&[
            "run",
            "--rm",
            "--log-driver",
            &s.name,
            "--log-opt",
            opt,
            "bb:latest",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        note(&format!("docker run --log-opt {opt}: {}", err.trim()));
        assert!(!out.status.success());
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn partials_and_docker_logs_as_dockerd_sends_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new() else { return };

    // A 100 KiB line, then a short one.
    s.run(&[
        "run",
        "--rm",
        "--log-driver",
        &s.name,
        "bb:latest",
        "sh",
        "-c",
        "head -c 102400 /dev/zero | tr '\\0' a; echo; echo short",
    ]);
    let id = container_id(&s);
    let entries = s.recorder.entries(&id);
    let summary: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} len={} partial={} meta={:?}",
                e.source,
                e.line.len(),
                e.partial,
                e.partial_log_metadata
                    .as_ref()
                    .map(|m| (m.ordinal, m.last, m.id.len()))
            )
        })
        .collect();
    note(&format!(
        "a 100 KiB line on the wire:\n  {}",
        summary.join("\n  ")
    ));
    let pieces: Vec<&LogEntry> = entries.iter().filter(|e| e.partial).collect();
    assert_eq!(
        pieces.len(),
        7,
        "100 KiB in 16 KiB pieces: 6 full and the rest"
    );
    let id0 = &pieces[0].partial_log_metadata.as_ref().unwrap().id;
    for (k, p) in pieces.iter().enumerate() {
        let m = p
            .partial_log_metadata
            .as_ref()
            .expect("dockerd 20.10 sends metadata");
        assert_eq!(m.ordinal, k as i32 + 1);
        assert_eq!(m.last, k == 6);
        assert_eq!(&m.id, id0);
        assert_eq!(p.time_nano, pieces[0].time_nano, "one time for every piece");
        if k < 6 {
            assert_eq!(p.line.len(), 16 * 1024);
        }
    }
    let total: usize = pieces.iter().map(|p| p.line.len()).sum();
    assert_eq!(total, 102_400);
    // Joined and cut at 1024 bytes: 100 pieces, all but the last partial,
    // then the short line.
    let mut joiner = PartialJoiner::new(1024, LongLines::Split);
    let mut out: Vec<(Flags, Vec<u8>)> = Vec::new();
    for e in &entries {
        joiner.push(e, |p| out.push((p.flags, p.msg.to_vec())));
    }
    joiner.finish(|p| out.push((p.flags, p.msg.to_vec())));
    assert_eq!(out.len(), 101);
    assert!(out[..99]
        .iter()
        .all(|(f, m)| f.partial() && m.len() == 1024 && m.iter().all(|&b| b == b'a')));
    assert!(!out[99].0.partial() && out[99].1.len() == 1024);
    assert_eq!(out[100].1, b"short");

    // `docker logs` of a running container.
    let run_id = s
        .run(&[
            "run",
            "-d",
            "--log-driver",
            &s.name,
            "bb:latest",
            "sh",
            "-c",
            "echo a; echo b; exec sleep 300",
        ])
        .trim()
        .to_string();
    assert_eq!(s.wait_entries(&run_id, 2).len(), 2);
    let before = s.calls().len();
    assert_eq!(s.run(&["logs", &run_id]), "a\nb\n");
    assert_eq!(s.run(&["logs", "--tail", "1", &run_id]), "b\n");
    s.run(&[
        "logs",
        "--since",
        "2020-01-02T03:04:05Z",
        "--until",
        "2099-01-01T00:00:00.5+01:00",
        &run_id,
    ]);
    // The stand-in's answer ends, so `-f` ends too.
    assert_eq!(s.run(&["logs", "-f", "--tail", "all", &run_id]), "a\nb\n");
    let reads: Vec<Seen> = s.calls()[before..].to_vec();
    note(&format!("docker logs of a running container: {reads:#?}"));
    let configs: Vec<ReadConfig> = reads
        .iter()
        .map(|c| match c {
            Seen::Read { container, config } if *container == run_id => *config,
            other => panic!("only ReadLogs for a running container, got {other:?}"),
        })
        .collect();
    assert_eq!(
        configs,
        [
            ReadConfig::default(),
            ReadConfig {
                tail: Some(1),
                ..ReadConfig::default()
            },
            ReadConfig {
                since: Some(1_577_934_245_000_000_000),
                until: Some(4_070_905_200_500_000_000),
                ..ReadConfig::default()
            },
            ReadConfig {
                follow: true,
                ..ReadConfig::default()
            },
        ]
    );
    for body in s.bodies("/LogDriver.ReadLogs") {
        note(&format!("ReadLogs body: {body}"));
    }
    s.run(&["rm", "-f", &run_id]);

    // `docker logs` of a stopped container.
    let stopped = s
        .run(&[
            "run",
            "-d",
            "--log-driver",
            &s.name,
            "bb:latest",
            "sh",
            "-c",
            "echo x",
        ])
        .trim()
        .to_string();
    s.run(&["wait", &stopped]);
    assert_eq!(s.wait_entries(&stopped, 1).len(), 1);
    // dockerd stops a container's logging after `docker wait` may have
    // returned, and ends a read's FIFO after `docker logs` may have: wait
    // for each StopLogging, or the calls of one would be counted in the
    // other.
    let stopped_fifo = s
        .calls()
        .iter()
        .find_map(|c| match c {
            Seen::Start { file, container } if *container == stopped => Some(file.clone()),
            _ => None,
        })
        .expect("StartLogging came for the container");
    support::wait_for("the container's StopLogging", || {
        s.calls()
            .iter()
            .any(|c| matches!(c, Seen::Stop { file } if *file == stopped_fifo))
    });
    let before = s.calls().len();
    let paths_before = s.paths().len();
    assert_eq!(s.run(&["logs", &stopped]), "x\n");
    support::wait_for("the read's StopLogging", || {
        s.calls()[before..]
            .iter()
            .any(|c| matches!(c, Seen::Stop { .. }))
    });
    let calls = s.calls()[before..].to_vec();
    note(&format!(
        "docker logs of a stopped container: {:?}\n{calls:#?}",
        &s.paths()[paths_before..]
    ));
    // A fresh FIFO, ReadLogs, then StopLogging of that FIFO.
    match &calls[..] {
        [Seen::Start {
            file: f1,
            container: c1,
        }, Seen::Read { container: c2, .. }, Seen::Stop { file: f2 }] => {
            assert_eq!((c1, c2), (&stopped, &stopped));
            assert_eq!(f1, f2);
        }
        other => panic!("unexpected calls for a stopped container's logs: {other:?}"),
    }
    s.run(&["rm", &stopped]);
}

/// Docker's own drivers on this machine, the figures the plugin is
/// measured against.
#[test]
#[ignore = "a benchmark: run it on purpose (see the module docs)"]
fn peer_figures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(docker) = Dockerd::start() else {
        return;
    };
    docker.import_busybox("bb:latest");
    const RUNS: usize = 3;
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
    let time = |args: &[&str]| {
        let t = Instant::now();
        let out = docker.run(args);
        (t.elapsed().as_secs_f64(), out.stdout.len())
    };
    let mut report = Vec::new();
    for driver in ["none", "local", "json-file"] {
        let runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                time(&[
                    "run",
                    "--rm",
                    "--log-driver",
                    driver,
                    "bb",
                    "sh",
                    "-c",
                    "seq 1 1000000",
                ])
                .0
            })
            .collect();
        report.push(format!(
            "run --log-driver {driver}: {runs:.2?} median {:.2} s",
            median(runs.clone())
        ));
    }
    let mut logs = Vec::new();
    for k in 0..RUNS {
        let name = format!("seq{k}");
        docker.run(&[
            "run",
            "--name",
            &name,
            "--log-driver",
            "json-file",
            "bb",
            "sh",
            "-c",
            "seq 1 1000000",
        ]);
        let (secs, bytes) = time(&["logs", &name]);
        assert_eq!(bytes, 6_888_896, "docker logs gave every line");
        logs.push(secs);
        docker.run(&["rm", &name]);
    }
    report.push(format!(
        "docker logs (json-file, 1M lines): {logs:.2?} median {:.2} s",
        median(logs.clone())
    ));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    note(&format!(
        "peer figures ({RUNS} runs each, load {}):\n  {}",
        load.trim(),
        report.join("\n  ")
    ));
}
