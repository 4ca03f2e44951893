//! The kernel log as a source plug-in: `--kmsg [PATH]` reads `/dev/kmsg`
//! (or PATH) and stores every record as an entry of source `kernel`.
//!
//! What it promises:
//! - **Each record** becomes one entry: its text with `\xNN` unescaped,
//!   the level (in the entry's flags) and the labels `facility` and
//!   `severity` from its priority, `subsystem` and `device` from its
//!   continuation lines ([`super::record`]). A fragment (`c`) is flagged
//!   `partial`. A record whose prefix cannot be read is stored as it came,
//!   without labels, and noticed.
//! - **The backlog** (everything the kernel still holds at start) is read
//!   first; its records get, as their original time, the wall-clock time
//!   computed from their printk timestamp with the clocks read at the
//!   moment of reading ([`super::seq::wall_clock_ns`]), so queries place
//!   boot messages at boot. Records read live keep that computed time too,
//!   but only as a kept time: the entry's time is the receive time.
//! - **Missed records** (an `EPIPE` from `read()`, or a jump of the
//!   sequence number) become one self-log entry saying how many.
//! - **No duplicates across restarts on a ring file**: after each batch
//!   the next sequence number is written to a small state file
//!   (`--kmsg-state`, default `kmsg.seq` beside the ingest socket) with
//!   the boot id and the ring's id. At start it is used only when both
//!   match: the same boot (seq numbers restart at boot) and the same ring
//!   (a ring file reopened; an in-memory ring is new at every start, and
//!   then the whole backlog belongs in it).
//!
//! Inputs: a character device (`/dev/kmsg`, one record per `read()`,
//! waited on with epoll), a FIFO or a regular file of records as
//! `/dev/kmsg` shows them (fixtures, a saved `cat /dev/kmsg`), split into
//! records at each line that does not start with a space. A FIFO or file
//! that ends leaves the source idle until shutdown.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use super::record::{parse_record, Fragment, Record};
use super::seq::{wall_clock_ns, SeqCheck, SeqTracker};
use crate::entry::{Flags, Level, Origin, SourceTime};
use crate::ring::OriginHandle;
use crate::sources::pipeline::Batch;
use crate::sources::{Context, Defaults, Pipeline, Running, Source, SourceError};

/// The kernel's device.
pub const DEVICE: &str = "/dev/kmsg";
/// The source name of kernel entries.
pub const SOURCE: &str = "kernel";
/// One `read()` of `/dev/kmsg` returns one record of at most 8 KiB less
/// its prefix; a smaller buffer gets `EINVAL`.
const READ_BUF: usize = 16 * 1024;
/// The longest record gathered from a stream input; a longer one is cut.
pub const MAX_RECORD: usize = 64 * 1024;
/// Origins kept for reuse (priority x subsystem x device).
const CACHE_MAX: usize = 1024;
/// Records stored per batch before the state file is written.
const BATCH_RECORDS: usize = 256;

/// syslog's severity keywords (the same as the syslog source's labels).
const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The flags of the kernel log source.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Kernel log")]
#[group(id = "kmsg_args")]
pub struct Args {
    /// Store the kernel log: /dev/kmsg, or records from PATH (a file or
    /// FIFO in /dev/kmsg's format); `off` (the default) reads none.
    #[arg(
        long,
        value_name = "PATH|off",
        num_args = 0..=1,
        default_missing_value = DEVICE
    )]
    pub kmsg: Option<String>,

    /// Where the kernel log's position is kept between runs, so that a
    /// restart on the same ring file stores no record twice [default:
    /// kmsg.seq beside the ingest socket].
    #[arg(long, value_name = "FILE")]
    pub kmsg_state: Option<PathBuf>,
}

impl Args {
    pub fn sources(
        &self,
        defaults: &Defaults,
        tables: &[crate::cli::config::ConfigTable],
    ) -> Result<Vec<Box<dyn Source>>, String> {
        if let Some(t) = tables.first() {
            return Err(t.error(
                "the kernel log is set with the keys kmsg and kmsg-state, not a [[kmsg]] table",
            ));
        }
        let path = match self.kmsg.as_deref() {
            None | Some("off") => return Ok(Vec::new()),
            Some("") => PathBuf::from(DEVICE),
            Some(p) => PathBuf::from(p),
        };
        let state = self.kmsg_state.clone().unwrap_or_else(|| {
            crate::cli::default_log_socket(defaults.memlogd_paths).with_file_name("kmsg.seq")
        });
        Ok(vec![Box::new(Kmsg { path, state })])
    }
}

/// The kernel log source.
pub struct Kmsg {
    path: PathBuf,
    state: PathBuf,
}

impl Source for Kmsg {
    fn kind(&self) -> &'static str {
        "kernel log (kmsg)"
    }

    fn start(self: Box<Self>, _sockets: Vec<crate::listener::Socket>, context: Context) -> Running {
        Box::pin(async move {
            let file = open(&self.path).map_err(SourceError)?;
            let mut reader = Reader::new(context.pipeline.clone(), self.state.clone());
            let device = file
                .metadata()
                .is_ok_and(|m| m.file_type().is_char_device());
            let result = if device {
                crate::sources::thread::run(&context.shutdown, move |stop| {
                    let mut buf = vec![0u8; READ_BUF];
                    let r = reader.run_device(file, &mut buf, stop);
                    reader.flush();
                    r
                })
                .await
            } else {
                let r = reader.run(file, &self.path, &context).await;
                reader.flush();
                r
            };
            context.pipeline.flush_notices();
            result.map_err(|e| {
                SourceError(format!(
                    "reading the kernel log {} failed: {e}",
                    self.path.display()
                ))
            })
        })
    }
}

fn open(path: &Path) -> Result<File, String> {
    // A FIFO is opened for writing too, so that it never reads as ended
    // while no writer has it open (writers may come and go).
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    std::fs::OpenOptions::new()
        .read(true)
        .write(fifo)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let hint = match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    "; reading it needs root (or CAP_SYSLOG with kernel.dmesg_restrict=1); \
                     pass --kmsg off to do without it"
                }
                io::ErrorKind::NotFound => "; pass --kmsg off to do without it",
                _ => "",
            };
            format!("cannot open the kernel log {}: {e}{hint}", path.display())
        })
}

/// Splits a byte stream of `/dev/kmsg` records (as `cat /dev/kmsg` writes
/// them) into records: a record starts at a line that does not start with
/// a space; lines starting with a space continue it.
#[derive(Default)]
pub struct RecordSplitter {
    pending: Vec<u8>,
    partial_line: Vec<u8>,
}

impl RecordSplitter {
    /// Feeds bytes; calls `out` for each record known to be complete.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let (line, complete, rest) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..=i], true, &bytes[i + 1..]),
                None => (bytes, false, &bytes[bytes.len()..]),
            };
            bytes = rest;
            if self.partial_line.len() + line.len() <= MAX_RECORD {
                self.partial_line.extend_from_slice(line);
            }
            if !complete {
                return;
            }
            let line = std::mem::take(&mut self.partial_line);
            if !line.starts_with(b" ") {
                self.finish(out);
            }
            if self.pending.len() + line.len() <= MAX_RECORD {
                self.pending.extend_from_slice(&line);
            }
            self.partial_line = line;
            self.partial_line.clear();
        }
    }

    /// Emits what is gathered (at the end of the input, or when it runs
    /// dry: a writer writes whole records).
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        let partial = std::mem::take(&mut self.partial_line);
        if partial.starts_with(b" ") {
            // An unterminated continuation line ends the record it continues.
            if self.pending.len() + partial.len() <= MAX_RECORD {
                self.pending.extend_from_slice(&partial);
            }
        }
        if !self.pending.is_empty() {
            out(&self.pending);
            self.pending.clear();
        }
        if !partial.is_empty() && !partial.starts_with(b" ") {
            // An unterminated first line of the next record.
            out(&partial);
        }
        self.partial_line = partial;
        self.partial_line.clear();
    }
}

/// The saved position: boot id, ring id, next seq.
#[derive(Debug, PartialEq, Eq)]
struct Saved {
    boot_id: String,
    ring_id: u64,
    next: u64,
}

impl Saved {
    fn parse(text: &str) -> Option<Saved> {
        let mut w = text.split_whitespace();
        Some(Saved {
            boot_id: w.next()?.to_string(),
            ring_id: w.next()?.parse().ok()?,
            next: w.next()?.parse().ok()?,
        })
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn clock_ns(id: nix::time::ClockId) -> i64 {
    nix::time::clock_gettime(id)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// Stores records.
struct Reader {
    pipeline: Pipeline,
    tracker: SeqTracker,
    state_path: PathBuf,
    boot_id: String,
    saved_next: Option<u64>,
    state_failed: bool,
    cache: HashMap<(u32, Vec<u8>, Vec<u8>), OriginHandle>,
    current: Option<OriginHandle>,
    batch: Batch,
    /// Still reading what the kernel held at start.
    backlog: bool,
    /// The clocks, read once per batch of reads.
    mono_ns: i64,
    real_ns: i64,
    records: usize,
}

impl Reader {
    fn new(pipeline: Pipeline, state_path: PathBuf) -> Reader {
        let boot_id = boot_id();
        let ring_id = pipeline.ring().id();
        let saved = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| Saved::parse(&t))
            .filter(|s| s.boot_id == boot_id && s.ring_id == ring_id && !boot_id.is_empty());
        let batch = pipeline.batch();
        Reader {
            tracker: SeqTracker::new(saved.as_ref().map(|s| s.next)),
            saved_next: saved.map(|s| s.next),
            pipeline,
            state_path,
            boot_id,
            state_failed: false,
            cache: HashMap::new(),
            current: None,
            batch,
            backlog: true,
            mono_ns: 0,
            real_ns: 0,
            records: 0,
        }
    }

    fn read_clocks(&mut self) {
        self.mono_ns = clock_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        self.real_ns = clock_ns(nix::time::ClockId::CLOCK_REALTIME);
    }

    /// Reads a FIFO or a regular file of records.
    async fn run(&mut self, file: File, path: &Path, context: &Context) -> io::Result<()> {
        let kind = file.metadata()?.file_type();
        let mut buf = vec![0u8; READ_BUF];
        let mut splitter = RecordSplitter::default();
        if kind.is_fifo() {
            let mut rx = tokio::net::unix::pipe::Receiver::from_file(file)?;
            loop {
                let n = tokio::select! {
                    biased;
                    _ = context.shutdown.cancelled() => return Ok(()),
                    r = rx.read(&mut buf) => r?,
                };
                self.read_clocks();
                if n == 0 {
                    splitter.finish(&mut |r| self.record(r));
                    self.flush();
                    break;
                }
                splitter.feed(&buf[..n], &mut |r| self.record(r));
                // A writer writes whole records: what is gathered when it
                // pauses is complete.
                if n < buf.len() {
                    splitter.finish(&mut |r| self.record(r));
                    self.backlog = false;
                }
                self.flush();
            }
        } else {
            let mut file = file;
            self.read_clocks();
            loop {
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                splitter.feed(&buf[..n], &mut |r| self.record(r));
                if self.records >= BATCH_RECORDS {
                    self.flush();
                    tokio::task::yield_now().await;
                }
            }
            splitter.finish(&mut |r| self.record(r));
            self.flush();
        }
        self.pipeline.selflog().info(format!(
            "the kernel log {} ended; no more kernel records are read",
            path.display()
        ));
        context.shutdown.cancelled().await;
        Ok(())
    }

    /// Reads a character device on a thread of its own
    /// ([`crate::sources::thread`]): `/dev/kmsg` wakes `poll(2)` when a
    /// record arrives, and tokio's own readiness for a plain fd needs
    /// `unsafe` (its safe constructor is deprecated as unsound).
    fn run_device(
        &mut self,
        file: File,
        buf: &mut [u8],
        stop: &crate::sources::thread::Stop,
    ) -> io::Result<()> {
        use nix::poll::PollTimeout;
        use std::os::fd::AsFd;
        loop {
            if stop.wait(file.as_fd(), PollTimeout::NONE)? {
                return Ok(());
            }
            self.read_clocks();
            loop {
                match (&file).read(buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.record(&buf[..n]);
                        if self.records >= BATCH_RECORDS {
                            self.flush();
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                        // Overrun: the next record's seq says by how much.
                        self.tracker.overrun();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.backlog = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.flush();
        }
    }

    /// One record.
    fn record(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        if raw.is_empty() {
            return;
        }
        self.records += 1;
        let record = match parse_record(raw) {
            Ok(r) => r,
            Err(e) => {
                self.pipeline.notice(Level::Warning, || {
                    format!("a kernel log record could not be read ({e}); it is stored as it came")
                });
                let origin = match self.pipeline.origin(Origin::new(SOURCE)) {
                    Ok(o) => o,
                    Err(_) => return,
                };
                self.push(origin, raw, Flags::default(), SourceTime::None);
                return;
            }
        };
        match self.tracker.check(record.seq) {
            SeqCheck::AlreadySeen => return,
            SeqCheck::New { missed } if missed > 0 => {
                let overruns = self.tracker.overruns();
                self.flush();
                self.pipeline.selflog().warn(format!(
                    "missed {missed} kernel messages (the kernel's log buffer overwrote them \
                     before they were read{})",
                    if overruns > 0 {
                        "; the reader was overrun"
                    } else {
                        ""
                    }
                ));
            }
            SeqCheck::New { .. } => {}
        }
        let Some(origin) = self.origin(&record) else {
            return;
        };
        let level = Level::from_severity(record.priority.severity.code());
        let flags = Flags::default()
            .with_level(level)
            .with_partial(record.fragment == Fragment::Start);
        let wall =
            u64::try_from(wall_clock_ns(record.ts_usec, self.mono_ns, self.real_ns)).unwrap_or(0);
        let time = if self.backlog {
            SourceTime::Original(wall)
        } else {
            SourceTime::Kept(wall)
        };
        let text = record.text.clone();
        self.push(origin, &text, flags, time);
    }

    fn push(&mut self, origin: OriginHandle, msg: &[u8], flags: Flags, time: SourceTime) {
        if self.current.as_ref().is_some_and(|c| c.id() != origin.id()) {
            self.store();
        }
        if self.current.is_none() {
            self.current = Some(origin);
        }
        self.batch.push(msg, flags, time);
    }

    fn origin(&mut self, r: &Record<'_>) -> Option<OriginHandle> {
        let key = (
            r.priority.code(),
            r.subsystem().unwrap_or_default().to_vec(),
            r.device().unwrap_or_default().to_vec(),
        );
        if let Some(h) = self.cache.get(&key) {
            return Some(h.clone());
        }
        let mut o = Origin::new(SOURCE);
        match r.priority.facility.name() {
            Some(n) => o.set_label("facility", n),
            None => o.set_label("facility", r.priority.facility.code().to_string()),
        }
        o.set_label(
            "severity",
            SEVERITY_NAMES[usize::from(r.priority.severity.code() & 7)],
        );
        if let Some(s) = r.subsystem() {
            o.set_label("subsystem", Origin::source_from_bytes(s, 256));
        }
        if let Some(d) = r.device() {
            o.set_label("device", Origin::source_from_bytes(d, 256));
        }
        let handle = match self.pipeline.origin(o) {
            Ok(h) => h,
            Err(e) => {
                self.pipeline
                    .notice(Level::Error, || format!("dropped a kernel log record: {e}"));
                return None;
            }
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, handle.clone());
        Some(handle)
    }

    /// Stores the batch.
    fn store(&mut self) {
        if let Some(origin) = self.current.take() {
            if !self.batch.is_empty() {
                self.pipeline.store_batch(&origin, None, &mut self.batch);
            }
        }
        self.batch.clear();
    }

    /// Stores the batch and saves the position.
    fn flush(&mut self) {
        self.store();
        self.records = 0;
        let next = self.tracker.next_expected();
        if next.is_none() || next == self.saved_next {
            return;
        }
        self.saved_next = next;
        let text = format!(
            "{} {} {}\n",
            self.boot_id,
            self.pipeline.ring().id(),
            next.unwrap_or(0)
        );
        if let Err(e) = write_atomically(&self.state_path, text.as_bytes()) {
            if !self.state_failed {
                self.state_failed = true;
                self.pipeline.selflog().warn(format!(
                    "cannot save the kernel log's position in {}: {e}; after a restart on the \
                     same ring file, kernel records may be stored twice (set --kmsg-state)",
                    self.state_path.display()
                ));
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = RecordSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |r| {
                out.push(String::from_utf8_lossy(r).into_owned())
            });
        }
        s.finish(&mut |r| out.push(String::from_utf8_lossy(r).into_owned()));
        out
    }

    #[test]
    fn records_with_continuation_lines_in_any_cuts() {
        let text = b"6,1,5,-;a\n SUBSYSTEM=pci\n DEVICE=+pci:0\n4,2,6,-;b\n3,3,7,c;c";
        let want = vec![
            "6,1,5,-;a\n SUBSYSTEM=pci\n DEVICE=+pci:0\n".to_string(),
            "4,2,6,-;b\n".to_string(),
            "3,3,7,c;c".to_string(),
        ];
        assert_eq!(split(&[text]), want);
        for cut in 0..text.len() {
            assert_eq!(split(&[&text[..cut], &text[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split(&bytes), want);
    }

    #[test]
    fn an_unterminated_continuation_line_is_kept() {
        // Found by the fuzz target: a stream ending in a continuation line
        // with no newline lost that line.
        assert_eq!(split(&[b" ?"]), vec![" ?".to_string()]);
        assert_eq!(
            split(&[b"6,1,5,-;a\n", b" DEVICE=+pci:0"]),
            vec!["6,1,5,-;a\n DEVICE=+pci:0".to_string()]
        );
    }

    #[test]
    fn saved_positions() {
        assert_eq!(
            Saved::parse("abc 42 17\n"),
            Some(Saved {
                boot_id: "abc".into(),
                ring_id: 42,
                next: 17
            })
        );
        assert_eq!(Saved::parse("abc x 17"), None);
        assert_eq!(Saved::parse(""), None);
    }
}
