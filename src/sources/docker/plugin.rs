//! The Docker logging driver as a source: `ringtail serve --docker-plugin`.
//!
//! It serves the logging-plugin API ([`super::http`]) on a unix socket,
//! `/run/docker/plugins/ringtail.sock` by default, where dockerd finds a
//! legacy plugin by its name (`--log-driver ringtail`; the name is the
//! file name without `.sock`). The socket is a [`Listener`] named
//! [`LISTENER`], so systemd (`FileDescriptorName=docker-plugin`) and
//! `-daemonize` can hand it over like any other. [`Driver`] implements the
//! API's side effects:
//!
//! - **StartLogging** opens the FIFO, starts its reader ([`super::fifo`])
//!   and records it in the state file before it answers, so dockerd starts
//!   the container with ringtail already reading. A call for a FIFO that is
//!   already being read answers success again (dockerd retries calls).
//! - **StopLogging** reads the FIFO until it would block, stores every
//!   line, forgets the FIFO and only then answers.
//! - **ReadLogs** answers from the ring ([`super::logs`]).
//! - **Restarts**: dockerd never repeats StartLogging to a restarted
//!   plugin, so at start the source re-opens every FIFO of the state file
//!   ([`super::state`]) before it serves. dockerd holds each FIFO open
//!   read-write, so what the containers wrote meanwhile waited in the pipe
//!   and is read now; nothing is lost unless a pipe filled up (a container
//!   in dockerd's default blocking mode then waited; with
//!   `--log-opt mode=non-blocking` dockerd dropped lines and counts them
//!   itself). A FIFO that is gone (its container stopped meanwhile) is
//!   dropped from the state.
//!
//! Each container's entries carry its metadata ([`super::info`]) as one
//! origin; the stream (`stdout`/`stderr`) is in each entry's flags, which
//! every query sees as the label `stream`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fifo::{End, FifoReader};
use super::frame::DEFAULT_MAX_FRAME_LEN;
use super::http::{self, LogDriver};
use super::info::{ContainerMeta, Info, ReadLogs, StartLogging, StopLogging};
use super::logs::{self, Chunks};
use super::state::{FifoRecord, PluginState, StateFile, DEFAULT_MAX_STATE_LEN, DEFAULT_STATE_PATH};
use crate::entry::Level;
use crate::listener::{Address, Listener, Socket, SocketKind};
use crate::sources::pipeline::{OriginError, Pipeline};
use crate::sources::{Context, Defaults, Running, Source, SourceError};

/// Where dockerd looks for a legacy plugin named `ringtail`.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/ringtail.sock";

/// The listener name of the plugin socket (systemd's `FileDescriptorName=`).
pub const LISTENER: &str = "docker-plugin";

/// The flags of the Docker logging driver.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Docker logging driver")]
#[group(id = "DockerArgs")]
pub struct Args {
    /// Serve Docker's logging-plugin API on this unix socket (default
    /// /run/docker/plugins/ringtail.sock): `docker run --log-driver
    /// ringtail` then logs into the ring and `docker logs` reads it back.
    /// The driver's name is the socket's file name without `.sock`. In the
    /// config file: docker-plugin = "PATH".
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = DEFAULT_SOCKET
    )]
    pub docker_plugin: Option<PathBuf>,

    /// The file that remembers which FIFOs the plugin reads, so that a
    /// restarted ringtail re-attaches to the containers that were logging
    /// (default /run/ringtail/docker-plugin.json).
    #[arg(long, value_name = "PATH")]
    pub docker_state: Option<PathBuf>,

    /// The largest Docker log frame read (default 1MB, as Docker's `local`
    /// driver); a larger one is skipped, counted and reported.
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::parse_size)]
    pub docker_max_frame: Option<u64>,
}

impl Args {
    /// The plugin, when `--docker-plugin` is given.
    pub fn sources(
        &self,
        _defaults: &Defaults,
        tables: &[crate::cli::config::ConfigTable],
    ) -> Result<Vec<Box<dyn Source>>, String> {
        if let Some(t) = tables.first() {
            return Err(t.error(
                "the docker plugin is set with the keys docker-plugin, docker-state and \
                 docker-max-frame, not a [[docker]] table",
            ));
        }
        let Some(path) = &self.docker_plugin else {
            if self.docker_state.is_some() || self.docker_max_frame.is_some() {
                return Err(
                    "--docker-state and --docker-max-frame need --docker-plugin".to_string()
                );
            }
            return Ok(Vec::new());
        };
        if path.extension().is_none_or(|e| e != "sock") {
            return Err(format!(
                "--docker-plugin {}: dockerd finds a plugin only by a socket named NAME.sock \
                 (in /run/docker/plugins, or by a spec file)",
                path.display()
            ));
        }
        let max_frame_len = match self.docker_max_frame {
            None => DEFAULT_MAX_FRAME_LEN,
            Some(n) if (1..=u32::MAX as u64).contains(&n) => n as usize,
            Some(n) => {
                return Err(format!(
                    "--docker-max-frame {n}: give a size from 1 byte to 4GiB"
                ))
            }
        };
        let listener = Listener::new(
            LISTENER,
            SocketKind::UnixStream,
            Address::Path(path.clone()),
            "the docker plugin socket",
            "--docker-plugin",
        );
        Ok(vec![Box::new(DockerPlugin {
            listener,
            state: self
                .docker_state
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            max_frame_len,
        })])
    }
}

/// The Docker logging-driver source.
pub struct DockerPlugin {
    listener: Listener,
    state: PathBuf,
    max_frame_len: usize,
}

impl Source for DockerPlugin {
    fn kind(&self) -> &'static str {
        "docker plugin"
    }

    fn listeners(&self) -> Vec<Listener> {
        vec![self.listener.clone()]
    }

    fn start(self: Box<Self>, mut sockets: Vec<Socket>, context: Context) -> Running {
        Box::pin(async move {
            let socket = sockets
                .pop()
                .ok_or_else(|| SourceError("the docker plugin socket was not bound".into()))?
                .into_unix_listener()?;
            socket.set_nonblocking(true)?;
            let socket = tokio::net::UnixListener::from_std(socket)?;
            let driver = Arc::new(Driver::new(
                context.pipeline.clone(),
                StateFile::new(self.state, DEFAULT_MAX_STATE_LEN),
                self.max_frame_len,
                context.shutdown.clone(),
            ));
            driver.reattach();
            let shutdown = context.shutdown.clone();
            let served = axum::serve(socket, http::router(Arc::new(driver.clone())))
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            driver.tasks.close();
            driver.tasks.wait().await;
            context.pipeline.flush_notices();
            served.map_err(|e| SourceError(format!("the docker plugin socket failed: {e}")))
        })
    }
}

/// Why a call failed; dockerd shows the text to the user.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(
        "ringtail cannot open the log FIFO {file}: {source}; ringtail must run on the \
         same host as dockerd and see its /run/docker/logging"
    )]
    Open {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ringtail cannot log container {container}: {source}")]
    Origin {
        container: String,
        #[source]
        source: OriginError,
    },
    #[error(
        "ringtail refused container {container}: it reads {open} sources and at most {max} \
         may be open (--max-sources)"
    )]
    TooMany {
        container: String,
        open: usize,
        max: usize,
    },
}

/// One FIFO being read.
struct Fifo {
    info: Info,
    /// StartLogging order, for the state file.
    order: u64,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// A container with FIFOs being read: followers of its logs end when the
/// last one stops.
struct Container {
    fifos: usize,
    stopped: CancellationToken,
}

#[derive(Default)]
struct Inner {
    fifos: HashMap<PathBuf, Fifo>,
    containers: HashMap<String, Container>,
    next_order: u64,
}

/// The side effects of the plugin API (see the module docs).
pub struct Driver {
    pipeline: Pipeline,
    state: StateFile,
    /// Serialises state saves, so the last save holds the latest state.
    saving: Mutex<()>,
    max_frame_len: usize,
    shutdown: CancellationToken,
    inner: Mutex<Inner>,
    tasks: TaskTracker,
}

impl Driver {
    pub fn new(
        pipeline: Pipeline,
        state: StateFile,
        max_frame_len: usize,
        shutdown: CancellationToken,
    ) -> Driver {
        Driver {
            pipeline,
            state,
            saving: Mutex::new(()),
            max_frame_len,
            shutdown,
            inner: Mutex::new(Inner::default()),
            tasks: TaskTracker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// FIFOs being read now.
    pub fn fifos(&self) -> usize {
        self.lock().fifos.len()
    }

    /// Re-opens the FIFOs of the state file (see the module docs).
    pub fn reattach(self: &Arc<Self>) {
        let state = match self.state.load() {
            Ok(s) => s,
            Err(e) => {
                self.pipeline.selflog().error(e.to_string());
                return;
            }
        };
        if state.fifos.is_empty() {
            return;
        }
        let (mut attached, mut gone) = (0, Vec::new());
        for rec in state.fifos {
            let meta = match ContainerMeta::from_info(&rec.info) {
                Ok(m) => m,
                Err(e) => {
                    gone.push(format!("{} ({e})", rec.file.display()));
                    continue;
                }
            };
            match self.attach(&rec.file, rec.info, meta) {
                Ok(()) => attached += 1,
                Err(e) => gone.push(format!("{} ({e})", rec.file.display())),
            }
        }
        self.pipeline.selflog().info(format!(
            "docker plugin: re-attached to {attached} container FIFO(s) from {}; lines \
             written meanwhile waited in the pipes{}",
            self.state.path().display(),
            if gone.is_empty() {
                String::new()
            } else {
                format!(
                    "; dropped {} that are gone: {}",
                    gone.len(),
                    gone.join(", ")
                )
            }
        ));
        self.save();
    }

    /// Opens `file` and starts reading it as `info`'s container.
    fn attach(
        self: &Arc<Self>,
        file: &Path,
        info: Info,
        meta: ContainerMeta,
    ) -> Result<(), DriverError> {
        let container = info.container_id.clone();
        {
            let inner = self.lock();
            if inner.fifos.contains_key(file) {
                return Ok(());
            }
            let max = self.pipeline.config().max_sources;
            if inner.fifos.len() >= max {
                return Err(DriverError::TooMany {
                    container,
                    open: inner.fifos.len(),
                    max,
                });
            }
        }
        let origin =
            self.pipeline
                .origin(meta.origin(None))
                .map_err(|source| DriverError::Origin {
                    container: container.clone(),
                    source,
                })?;
        let rx = pipe::OpenOptions::new()
            .open_receiver(file)
            .map_err(|source| DriverError::Open {
                file: file.to_path_buf(),
                source,
            })?;
        super::fifo::enlarge_pipe(&rx);
        let reader = FifoReader::new(
            file.to_path_buf(),
            &self.pipeline,
            origin,
            self.max_frame_len,
        );
        let stop = CancellationToken::new();
        let mut inner = self.lock();
        if inner.fifos.contains_key(file) {
            // A retried call raced this one; the first reader stays.
            return Ok(());
        }
        let order = inner.next_order;
        inner.next_order += 1;
        let c = inner
            .containers
            .entry(container.clone())
            .or_insert_with(|| Container {
                fifos: 0,
                stopped: CancellationToken::new(),
            });
        c.fifos += 1;
        let task = self.tasks.spawn(read_task(
            Arc::clone(self),
            file.to_path_buf(),
            container,
            reader,
            rx,
            stop.clone(),
        ));
        inner.fifos.insert(
            file.to_path_buf(),
            Fifo {
                info,
                order,
                stop,
                task: Some(task),
            },
        );
        Ok(())
    }

    /// Forgets `file`; returns its reader task if it was being read.
    fn forget(&self, file: &Path) -> Option<(CancellationToken, Option<JoinHandle<()>>)> {
        let mut inner = self.lock();
        let mut fifo = inner.fifos.remove(file)?;
        let id = fifo.info.container_id.clone();
        if let Some(c) = inner.containers.get_mut(&id) {
            c.fifos -= 1;
            if c.fifos == 0 {
                c.stopped.cancel();
                inner.containers.remove(&id);
            }
        }
        Some((fifo.stop.clone(), fifo.task.take()))
    }

    /// Writes the FIFOs being read to the state file; a failure is
    /// self-logged (the containers go on logging; only a restart would
    /// miss them).
    fn save(&self) {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let state = {
            let inner = self.lock();
            let mut fifos: Vec<(&u64, FifoRecord)> = inner
                .fifos
                .iter()
                .map(|(file, f)| {
                    (
                        &f.order,
                        FifoRecord {
                            file: file.clone(),
                            info: f.info.clone(),
                        },
                    )
                })
                .collect();
            fifos.sort_by_key(|(o, _)| **o);
            PluginState {
                fifos: fifos.into_iter().map(|(_, r)| r).collect(),
            }
        };
        if let Err(e) = self.state.save(&state) {
            self.pipeline.notice(Level::Error, || {
                format!("docker plugin: {e}; after a restart ringtail would not re-attach to these containers")
            });
        }
    }
}

/// Reads one FIFO to its end, then stores what is left and reports.
async fn read_task(
    driver: Arc<Driver>,
    file: PathBuf,
    container: String,
    mut reader: FifoReader,
    rx: pipe::Receiver,
    stop: CancellationToken,
) {
    let end = reader.run(rx, stop, driver.shutdown.clone()).await;
    reader.finish();
    let stats = reader.stats();
    let pipeline = &driver.pipeline;
    let (f, j) = (stats.frames, stats.joins);
    if f.oversized + f.garbage + f.truncated + j.broken_lines > 0 {
        pipeline.selflog().warn(format!(
            "docker plugin: container {container} ({}): {} entries; skipped {} oversized \
             frame(s) ({} bytes) and {} frame(s) that were not log entries; {} cut frame(s); \
             {} line(s) ended without their last piece",
            file.display(),
            f.entries,
            f.oversized,
            f.oversized_bytes,
            f.garbage,
            f.truncated,
            j.broken_lines
        ));
    }
    match end {
        End::Stopped | End::Shutdown => {}
        End::Eof => {
            // dockerd closed its end without StopLogging (it went away).
            if driver.forget(&file).is_some() {
                driver.save();
            }
        }
        End::Failed(e) => {
            pipeline.selflog().error(format!(
                "docker plugin: stopped reading {} of container {container}: {e}",
                file.display()
            ));
            if driver.forget(&file).is_some() {
                driver.save();
            }
        }
    }
}

/// The body of a ReadLogs answer.
pub struct LogsBody(Chunks);

impl From<LogsBody> for Body {
    fn from(b: LogsBody) -> Body {
        Body::from_stream(futures_util::stream::unfold(b.0, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        }))
    }
}

impl LogDriver for Arc<Driver> {
    type Logs = LogsBody;
    type Error = DriverError;

    async fn start_logging(
        &self,
        req: StartLogging,
        meta: ContainerMeta,
    ) -> Result<(), DriverError> {
        self.attach(&req.file, req.info, meta)?;
        self.save();
        Ok(())
    }

    async fn stop_logging(&self, req: StopLogging) -> Result<(), DriverError> {
        // A FIFO not being read (already stopped, or gone at a restart) is
        // fine to stop again: dockerd retries calls.
        if let Some((stop, task)) = self.forget(&req.file) {
            stop.cancel();
            if let Some(task) = task {
                let _ = task.await;
            }
            self.save();
        }
        Ok(())
    }

    async fn read_logs(&self, req: ReadLogs) -> Result<LogsBody, DriverError> {
        let stopped = self
            .lock()
            .containers
            .get(&req.info.container_id)
            .map(|c| c.stopped.clone());
        Ok(LogsBody(logs::stream(
            self.pipeline.ring().clone(),
            &req.info.container_id,
            req.config,
            stopped,
            self.shutdown.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    //! The driver against a scripted dockerd: a real FIFO written by the
    //! test, for what a real dockerd cannot be made to send (oversized,
    //! garbage and cut frames). tests/docker_source.rs runs a real one.
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    use super::*;
    use crate::entry::{Flags, Origin, SourceTime};
    use crate::ring::{All, Read, ReadBatch, Ring, RingConfig};
    use crate::selflog::SelfLog;
    use crate::sources::docker::frame::{
        encode_frame, Decoded, FrameDecoder, LogEntry, PartialLogEntryMetadata,
    };
    use crate::sources::docker::info::ReadConfig;
    use crate::sources::IngestConfig;

    struct Rig {
        dir: tempfile::TempDir,
        ring: Arc<Ring>,
        driver: Arc<Driver>,
        rt: tokio::runtime::Runtime,
    }

    fn rig(max_frame_len: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(Ring::open(&RingConfig::new(4096)).unwrap());
        let pipeline = Pipeline::new(
            ring.clone(),
            SelfLog::new(ring.clone()).unwrap(),
            IngestConfig::default(),
        );
        let driver = Arc::new(Driver::new(
            pipeline,
            StateFile::new(dir.path().join("state.json"), DEFAULT_MAX_STATE_LEN),
            max_frame_len,
            CancellationToken::new(),
        ));
        // One thread, running only inside `block_on`: a line the test
        // writes is not seen by the reactor until the next call, as when
        // dockerd calls StopLogging right after a write on a busy host.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Rig {
            dir,
            ring,
            driver,
            rt,
        }
    }

    impl Rig {
        /// A FIFO as dockerd makes it (held open read-write) and a
        /// StartLogging for it.
        fn start(&self, name: &str, id: &str) -> (PathBuf, std::fs::File) {
            let file = self.dir.path().join(name);
            nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let w = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&file)
                .unwrap();
            let info = Info {
                container_id: id.into(),
                container_name: "/web".into(),
                container_image_name: "bb:latest".into(),
                ..Info::default()
            };
            let meta = ContainerMeta::from_info(&info).unwrap();
            let req = StartLogging {
                file: file.clone(),
                info,
            };
            self.rt
                .block_on(self.driver.start_logging(req, meta))
                .unwrap();
            (file, w)
        }

        fn stop(&self, file: &Path) {
            self.rt
                .block_on(self.driver.stop_logging(StopLogging { file: file.into() }))
                .unwrap();
        }

        /// (source, msg, flags, source time) of every entry.
        fn entries(&self) -> Vec<(String, Vec<u8>, Flags, SourceTime)> {
            let mut batch = ReadBatch::new();
            self.ring.snapshot().cursor(All).read(&mut batch, 10_000);
            batch
                .iter()
                .filter_map(|r| match r {
                    Read::Entry(e) => Some((
                        e.origin.source.clone(),
                        e.msg.to_vec(),
                        e.flags,
                        e.source_time,
                    )),
                    _ => None,
                })
                .collect()
        }

        fn container_msgs(&self) -> Vec<String> {
            self.entries()
                .into_iter()
                .filter(|(s, ..)| s == "web")
                .map(|(_, m, ..)| String::from_utf8_lossy(&m).into_owned())
                .collect()
        }

        fn selflog(&self) -> String {
            self.entries()
                .into_iter()
                .filter(|(s, ..)| s != "web")
                .map(|(_, m, ..)| String::from_utf8_lossy(&m).into_owned() + "\n")
                .collect()
        }

        /// The frames a ReadLogs answer holds, as (stream, time, line).
        fn read_logs(&self, id: &str, config: ReadConfig) -> Vec<(String, i64, String)> {
            let _in_runtime = self.rt.enter();
            let mut rx = logs::stream(
                self.ring.clone(),
                id,
                config,
                None,
                CancellationToken::new(),
            );
            let mut bytes = Vec::new();
            self.rt.block_on(async {
                while let Some(chunk) = rx.recv().await {
                    bytes.extend_from_slice(&chunk.unwrap());
                }
            });
            let mut out = Vec::new();
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            d.feed(&bytes, |ev| {
                if let Decoded::Entry(e) = ev {
                    out.push((
                        e.source.clone(),
                        e.time_nano,
                        String::from_utf8_lossy(&e.line).into_owned(),
                    ))
                }
            });
            d.finish().unwrap();
            out
        }
    }

    fn frame(source: &str, t: i64, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            &LogEntry {
                source: source.into(),
                time_nano: t,
                line: line.to_vec(),
                ..LogEntry::default()
            },
        );
        out
    }

    fn piece(t: i64, line: &[u8], ordinal: i32, last: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            &LogEntry {
                source: "stdout".into(),
                time_nano: t,
                line: line.to_vec(),
                partial: true,
                partial_log_metadata: Some(PartialLogEntryMetadata {
                    last,
                    id: "p1".into(),
                    ordinal,
                }),
            },
        );
        out
    }

    #[test]
    fn bad_frames_are_skipped_in_sync_and_reported() {
        let r = rig(100);
        let (file, mut w) = r.start("f1", "c1");
        let mut bytes = frame("stdout", 5, b"a");
        // Over the cap of 100 bytes: skipped by its length.
        bytes.extend(frame("stdout", 6, &[b'x'; 300]));
        // Not a LogEntry (field 1 with wire type 7).
        bytes.extend([0, 0, 0, 3, 0x0f, 0xff, 0xff]);
        bytes.extend(frame("stderr", 7, b"b"));
        bytes.extend(piece(8, b"jo", 1, false));
        bytes.extend(piece(8, b"ined", 2, true));
        w.write_all(&bytes).unwrap();
        r.stop(&file);
        assert_eq!(r.container_msgs(), ["a", "b", "joined"]);
        let e: Vec<_> = r.entries().into_iter().filter(|e| e.0 == "web").collect();
        assert_eq!(e[0].3, SourceTime::Kept(5), "time_nano is kept");
        assert_eq!(e[1].2.stream(), Some(crate::entry::Stream::Stderr));
        let log = r.selflog();
        assert!(
            log.contains("-byte frame on") && log.contains("over the cap of 100 bytes"),
            "{log}"
        );
        assert!(log.contains("not a Docker LogEntry"), "{log}");
        assert!(log.contains("1 oversized frame(s)"), "{log}");
        // The FIFO is forgotten: the state file is empty again.
        let state = std::fs::read_to_string(r.dir.path().join("state.json")).unwrap();
        assert!(!state.contains("f1"), "{state}");
        drop(w);
    }

    #[test]
    fn stop_logging_drains_and_reports_a_cut_frame() {
        let r = rig(DEFAULT_MAX_FRAME_LEN);
        let (file, mut w) = r.start("f2", "c2");
        let state = std::fs::read_to_string(r.dir.path().join("state.json")).unwrap();
        assert!(state.contains("f2") && state.contains("c2"), "{state}");
        // Many lines written just before StopLogging: all are stored.
        let mut bytes = Vec::new();
        for i in 0..2000 {
            bytes.extend(frame("stdout", 1, format!("line {i}").as_bytes()));
        }
        let cut = frame("stdout", 1, b"never whole");
        bytes.extend(&cut[..cut.len() - 3]);
        // The pipe holds 64 KiB: write what fits, let the reader take it,
        // then the rest, then stop at once.
        let mut at = 0;
        while at < bytes.len() {
            match w.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        r.stop(&file);
        let msgs = r.container_msgs();
        assert_eq!(msgs.len(), 2000);
        assert_eq!(msgs[1999], "line 1999");
        let log = r.selflog();
        assert!(log.contains("ended") && log.contains("frame"), "{log}");
        // Stopping again is fine (dockerd retries).
        r.stop(&file);
    }

    #[test]
    fn read_logs_counts_whole_lines_and_honours_the_times() {
        let r = rig(DEFAULT_MAX_FRAME_LEN);
        let ring = r.ring.clone();
        let origin = r
            .driver
            .pipeline
            .origin(Origin::new("web").with_label("container_id", "c3"))
            .unwrap();
        let other = r
            .driver
            .pipeline
            .origin(Origin::new("db").with_label("container_id", "c4"))
            .unwrap();
        let mut b = r.driver.pipeline.batch();
        let out = Flags::default().with_stream(Some(crate::entry::Stream::Stdout));
        b.push(b"one", out, SourceTime::Kept(10));
        b.push(b"tw", out.with_partial(true), SourceTime::Kept(20));
        b.push(b"o", out, SourceTime::Kept(20));
        b.push(b"three", out, SourceTime::Kept(30));
        r.driver.pipeline.store_batch(&origin, None, &mut b);
        b.push(b"not mine", out, SourceTime::Kept(15));
        r.driver.pipeline.store_batch(&other, None, &mut b);
        drop(ring);
        let lines = |c: ReadConfig| -> Vec<String> {
            r.read_logs("c3", c)
                .into_iter()
                .map(|(_, _, l)| l)
                .collect()
        };
        assert_eq!(
            lines(ReadConfig::default()),
            ["one\n", "tw", "o\n", "three\n"]
        );
        let tail = |n| ReadConfig {
            tail: Some(n),
            ..ReadConfig::default()
        };
        assert_eq!(
            lines(tail(2)),
            ["tw", "o\n", "three\n"],
            "a line of two pieces counts once"
        );
        assert_eq!(lines(tail(1)), ["three\n"]);
        assert!(lines(tail(0)).is_empty());
        assert_eq!(lines(tail(9)).len(), 4);
        let window = ReadConfig {
            since: Some(20),
            until: Some(20),
            ..ReadConfig::default()
        };
        assert_eq!(lines(window), ["tw", "o\n"], "both bounds inclusive");
        let got = r.read_logs("c3", ReadConfig::default());
        assert_eq!(
            (got[0].0.as_str(), got[0].1),
            ("stdout", 10),
            "the container's time"
        );
        assert!(r.read_logs("nope", ReadConfig::default()).is_empty());
    }
}
