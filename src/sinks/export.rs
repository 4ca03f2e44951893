//! Per-source log files with rotation: LinuxKit's logwrite service
//! (protocols.md, section 3), resuming by seq.
//!
//! The exporter asks the query socket for a dump followed by a follow,
//! starting at the seq where it stopped last time, and appends each entry to
//! `<dir>/<file name of source>.log` as `<RFC 3339 time> <source> <msg>\n`.
//! A file that passes `max_log_size` bytes is rotated: `x.log` becomes
//! `x.log.0`, `x.log.0` becomes `x.log.1`, and so on, keeping
//! `max_log_files` rotated files. Entries whose source starts with one of
//! the skip prefixes (`logwrite`, the exporter's own output) are not
//! written.
//!
//! # File names: source names are untrusted
//!
//! Any program can register any source name, so a name never becomes a
//! path as it is. [`file_stem`] maps it to a file name that stays inside
//! the directory, one to one:
//!
//! - the bytes `A-Z a-z 0-9 . _ -` are kept, except a `.` at the start;
//! - every other byte (of the name's UTF-8), `%` included, becomes `%XX`
//!   (two upper-case hex digits), so `/`, NUL, control characters, spaces
//!   and a leading `.` (hence `.` and `..`) can never appear as such;
//! - the empty name becomes `%empty` (encoding never produces a `%` that is
//!   not followed by two upper-case hex digits, so this collides with
//!   nothing);
//! - a name whose encoding is longer than 200 bytes is cut at 200 bytes and
//!   ends with `~` and 16 hex digits of its FNV-1a hash (`~` is never kept
//!   as is, so these collide with nothing else either; they cannot be
//!   decoded back, but every line of the file carries the full source).
//!
//! [`source_of_stem`] decodes a name. Files are opened with `O_NOFOLLOW`,
//! must be regular files (a FIFO or device planted in the directory is
//! refused, not opened for blocking), and are created with mode 0640.
//!
//! # Resuming without duplicates or holes
//!
//! A small state file in the directory (`.ringtail-export.state`, replaced
//! atomically by writing a temporary file and renaming it) holds the next
//! seq to export. Lines are written in batches, with a write-ahead step:
//! before a batch, the state records the length of every file the batch
//! will append to; after it, the state records the new next seq and
//! nothing pending. On start, files longer than their recorded length are
//! cut back to it (the lines of a batch that was interrupted), and the
//! export resumes at the recorded seq. So a restart, even after `kill -9`
//! of the exporter, neither repeats nor skips a line, as long as the daemon
//! still holds the entries. The state also holds the id of the ring the
//! seq counts in; the exporter sends it with the seq, and a daemon whose
//! ring is another (restarted without `--ring-file`) refuses, so the export
//! starts that ring from its oldest entry instead of skipping its first
//! seqs. Rotation happens only between batches, after a
//! commit. Entries the daemon evicted before the exporter got them are
//! reported as a gap: a line in `ringtail.log` (the file of the daemon's
//! own source) and a warning on stderr.
//!
//! A lock (`.ringtail-export.lock`, `flock`) keeps two exporters out of one
//! directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{parse_record, Record, RecordError};
use crate::format::Format;
use crate::serve::memlogq::{self, ClientRequest, JsonRequest};
use crate::timefmt::write_rfc3339_secs;

/// The state file's name in the export directory. It starts with `.`, so
/// no source's file name can be the same.
pub const STATE_FILE: &str = ".ringtail-export.state";
const STATE_TMP: &str = ".ringtail-export.state.tmp";
const LOCK_FILE: &str = ".ringtail-export.lock";
/// The source whose file also gets the exporter's gap notes.
const GAP_SOURCE: &str = crate::selflog::SOURCE;
/// The longest encoded name kept whole (see the module docs).
const MAX_STEM: usize = 200;
/// Entries written per batch, at most.
const BATCH: usize = 4096;

/// How the exporter runs.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The directory of the log files (created if missing).
    pub dir: PathBuf,
    /// The daemon's query socket.
    pub socket: PathBuf,
    /// Rotated files kept per source (`x.log.0` .. `x.log.<N-1>`).
    pub max_log_files: usize,
    /// A file is rotated once it passes this many bytes.
    pub max_log_size: u64,
    /// Keep following new entries (and reconnect when the daemon goes
    /// away); otherwise export what the daemon holds and return.
    pub follow: bool,
    /// Entries whose source starts with one of these are not written.
    pub skip_prefixes: Vec<String>,
}

/// Why the export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Dir(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Write(String),
}

/// Asks a running export to stop: it finishes the batch in hand, commits
/// its state and returns.
#[derive(Default)]
pub struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
    /// The connection being read, shut down to end a blocked read.
    conn: Mutex<Option<UnixStream>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn request(&self) {
        *self.requested.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.requested.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps up to `d`; returns whether a stop was requested.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    fn watch(&self, conn: &UnixStream) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn.try_clone().ok();
        // A stop requested just before the connection was registered.
        if self.is_requested() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What the state file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The seq of the next entry to export (0: from the oldest one).
    next_seq: u64,
    /// Files a batch in progress appends to, with their length before it.
    #[serde(default)]
    pending: BTreeMap<String, u64>,
    /// The id of the ring `next_seq` counts in (16 hex digits; absent in
    /// state files from before ring ids, and until the first answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring_id: Option<String>,
}

/// An open log file and its size.
struct LogFile {
    file: File,
    /// Its size, counting `unwritten`.
    size: u64,
    /// Lines of the current transaction not yet written (one write per
    /// file per batch instead of one per line).
    unwritten: Vec<u8>,
}

/// The exporter: the directory, its state, the files it has open.
pub struct Exporter {
    config: ExportConfig,
    state: State,
    /// Open files by file name; closed in bulk past `MAX_OPEN`.
    files: HashMap<String, LogFile>,
    /// Holds the directory's lock for the exporter's life.
    _lock: nix::fcntl::Flock<File>,
    /// Entries written and gaps seen, for the caller's summary.
    pub written: u64,
    pub missed: u64,
}

/// Open log files kept at once; more are closed and reopened on demand.
const MAX_OPEN: usize = 256;

impl Exporter {
    /// Opens (or creates) the export directory, takes its lock, reads the
    /// state and cuts back what an interrupted batch wrote.
    pub fn open(config: ExportConfig) -> Result<Exporter, ExportError> {
        let dir = &config.dir;
        fs::create_dir_all(dir).map_err(|e| {
            ExportError::Dir(format!(
                "cannot create {}: {e}; pass --dir DIR",
                dir.display()
            ))
        })?;
        let lock_file = open_regular(&dir.join(LOCK_FILE), OpenMode::Create).map_err(|e| {
            ExportError::Dir(format!(
                "cannot open the lock file in {}: {e}",
                dir.display()
            ))
        })?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |(_, e)| {
                ExportError::Dir(format!(
                    "another `ringtail export` is writing to {} ({e}); stop it or pass another --dir",
                    dir.display()
                ))
            },
        )?;
        let state = read_state(dir)?;
        let mut exporter = Exporter {
            config,
            state,
            files: HashMap::new(),
            _lock: lock,
            written: 0,
            missed: 0,
        };
        exporter.recover()?;
        Ok(exporter)
    }

    /// The seq the next export starts at.
    pub fn next_seq(&self) -> u64 {
        self.state.next_seq
    }

    /// Cuts every file of an interrupted batch back to its length before
    /// the batch, then commits.
    fn recover(&mut self) -> Result<(), ExportError> {
        if self.state.pending.is_empty() {
            return Ok(());
        }
        for (name, len) in std::mem::take(&mut self.state.pending) {
            let path = self.config.dir.join(&name);
            if !is_own_file_name(&name) {
                continue;
            }
            match open_regular(&path, OpenMode::Existing) {
                Ok(f) => {
                    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    if size > len {
                        f.set_len(len).map_err(|e| {
                            ExportError::Write(format!(
                                "cannot cut {} back to {len} bytes after an interrupted export: {e}",
                                path.display()
                            ))
                        })?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ExportError::Write(format!(
                        "cannot repair {} after an interrupted export: {e}",
                        path.display()
                    )))
                }
            }
        }
        self.commit(self.state.next_seq)
    }

    /// Exports until the dump ends (`follow` off) or `stop` is requested.
    pub fn run(&mut self, stop: &Stop) -> Result<(), ExportError> {
        let mut warned_connect = false;
        let mut backoff = Duration::from_millis(200);
        loop {
            if stop.is_requested() {
                return Ok(());
            }
            let conn = match self.connect() {
                Ok(c) => c,
                Err(e) if self.config.follow => {
                    if !warned_connect {
                        eprintln!("ringtail export: {e}; retrying until the daemon answers");
                        warned_connect = true;
                    }
                    if stop.sleep(backoff) {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if warned_connect {
                eprintln!(
                    "ringtail export: connected to {}",
                    self.config.socket.display()
                );
                warned_connect = false;
            }
            backoff = Duration::from_millis(200);
            stop.watch(&conn);
            let ended = self.read_connection(conn, stop)?;
            if let ConnEnd::Refused(reason) = &ended {
                if self.state.next_seq > 0 && reason.ring_replaced() {
                    // The daemon's ring is not the one the state refers to
                    // (it restarted without --ring-file): start again from
                    // its oldest entry, and say so.
                    self.note(&format!(
                        "export: the daemon's ring was replaced (next seq was {}); exporting it from its oldest entry",
                        self.state.next_seq
                    ))?;
                    self.state.ring_id = None;
                    self.commit(0)?;
                    continue;
                }
                return Err(ExportError::Connect(format!(
                    "{} refused the export request: {reason}",
                    self.config.socket.display()
                )));
            }
            if !self.config.follow || stop.is_requested() {
                return Ok(());
            }
            // The daemon went away (restarted?): pick up where we are.
            match ended {
                ConnEnd::Failed(e) => {
                    eprintln!("ringtail export: lost the daemon ({e}); reconnecting")
                }
                _ => eprintln!("ringtail export: the daemon closed the connection; reconnecting"),
            }
            if stop.sleep(backoff) {
                return Ok(());
            }
        }
    }

    /// Writes a note of the exporter's own into `ringtail.log` and stderr.
    fn note(&mut self, note: &str) -> Result<(), ExportError> {
        eprintln!("ringtail {note}");
        let name = log_file_name(GAP_SOURCE);
        let line = format_line(crate::timefmt::now_ns(), GAP_SOURCE, note.as_bytes());
        let lines = [(name.clone(), line, self.state.next_seq)];
        self.begin(&lines)?;
        self.append(&name, &lines[0].1)?;
        self.commit(self.state.next_seq)
    }

    fn connect(&self) -> Result<UnixStream, ExportError> {
        let request = ClientRequest::Json(JsonRequest {
            mode: if self.config.follow {
                memlogq::Mode::DumpFollow
            } else {
                memlogq::Mode::Dump
            },
            // The daemon resumes strictly after the seq it is given, and
            // refuses if its ring is not the one that seq counts in.
            since_seq: self.state.next_seq.checked_sub(1),
            ring_id: self
                .state
                .ring_id
                .clone()
                .filter(|_| self.state.next_seq > 0),
            ring_info: true,
            format: Some(Format::Ndjson),
            ..JsonRequest::default()
        });
        memlogq::connect(&self.config.socket, &request)
            .map_err(|e| ExportError::Connect(e.to_string()))
    }

    /// Reads one connection to its end, writing what it brings; an error
    /// is returned only when writing fails.
    fn read_connection(&mut self, conn: UnixStream, stop: &Stop) -> Result<ConnEnd, ExportError> {
        let mut reader = BufReader::with_capacity(256 * 1024, conn);
        let mut line = Vec::with_capacity(2048);
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        loop {
            // Block for the first line, then take what is already buffered.
            batch.clear();
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(ConnEnd::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if stop.is_requested() => return Ok(ConnEnd::Closed),
                Err(e) => return Ok(ConnEnd::Failed(e)),
            }
            loop {
                if !line.ends_with(b"\n") {
                    // Cut off mid-line: the connection ended; that entry
                    // comes again on the next connection.
                    self.write_batch(&batch)?;
                    return Ok(ConnEnd::Closed);
                }
                match parse_record(&line) {
                    Ok(r) => batch.push(r),
                    Err(RecordError::Refused(reason)) => {
                        self.write_batch(&batch)?;
                        return Ok(ConnEnd::Refused(reason));
                    }
                    Err(e @ RecordError::Malformed(_)) => {
                        eprintln!("ringtail export: skipping a line: {e}")
                    }
                }
                if batch.len() >= BATCH || memchr::memchr(b'\n', reader.buffer()).is_none() {
                    break;
                }
                line.clear();
                if reader.read_until(b'\n', &mut line).is_err() {
                    break;
                }
            }
            self.write_batch(&batch)?;
        }
    }

    /// Writes one batch of records as one transaction (module docs).
    fn write_batch(&mut self, batch: &[Record]) -> Result<(), ExportError> {
        let mut next_seq = self.state.next_seq;
        // (file name, line) for each thing to write, with the seq after it.
        let mut lines: Vec<(String, Vec<u8>, u64)> = Vec::with_capacity(batch.len());
        for record in batch {
            match record {
                Record::Ring { id } => {
                    // The daemon checked the id we sent; this records the
                    // ring's id the first time (and for older state files).
                    let id = memlogq::ring_id_text(*id);
                    if self.state.ring_id.as_deref() != Some(id.as_str()) {
                        self.state.ring_id = Some(id);
                        self.commit(self.state.next_seq)?;
                    }
                }
                Record::Entry(e) => {
                    if e.seq != 0 && e.seq < next_seq {
                        // Already exported (the daemon resent it).
                        continue;
                    }
                    let after = e.seq.saturating_add(1).max(next_seq);
                    next_seq = after;
                    let source = e.origin.source.as_str();
                    if self
                        .config
                        .skip_prefixes
                        .iter()
                        .any(|p| source.starts_with(p.as_str()))
                    {
                        continue;
                    }
                    lines.push((
                        log_file_name(source),
                        format_line(e.time, source, &e.msg),
                        after,
                    ));
                }
                Record::Gap { first_seq, missed } => {
                    let after = first_seq.saturating_add(*missed).max(next_seq);
                    next_seq = after;
                    self.missed += missed;
                    let last = first_seq + missed.saturating_sub(1);
                    let note = format!(
                        "export: missed {missed} entries (seqs {first_seq} to {last}): the daemon evicted them before they were exported"
                    );
                    eprintln!("ringtail {note}");
                    let now = crate::timefmt::now_ns();
                    lines.push((
                        log_file_name(GAP_SOURCE),
                        format_line(now, GAP_SOURCE, note.as_bytes()),
                        after,
                    ));
                }
            }
        }
        let mut rest = &lines[..];
        while let Some((_, _, last_after)) = rest.last() {
            self.begin(rest)?;
            let mut rotated_at = None;
            for (i, (name, line, after)) in rest.iter().enumerate() {
                if self.append(name, line)? {
                    // Commit everything up to here, then rotate, then go on
                    // with a new transaction.
                    self.commit(*after)?;
                    self.rotate(name)?;
                    rotated_at = Some(i + 1);
                    break;
                }
            }
            match rotated_at {
                Some(done) => rest = &rest[done..],
                None => {
                    self.commit((*last_after).max(next_seq))?;
                    rest = &[];
                }
            }
        }
        if self.state.next_seq < next_seq {
            // Only skipped entries: move on all the same.
            self.commit(next_seq)?;
        }
        Ok(())
    }

    /// Writes every file's buffered lines.
    fn write_out(&mut self) -> Result<(), ExportError> {
        for (name, f) in self.files.iter_mut() {
            if f.unwritten.is_empty() {
                continue;
            }
            f.file.write_all(&f.unwritten).map_err(|e| {
                ExportError::Write(format!(
                    "cannot write to {}: {e}",
                    self.config.dir.join(name).display()
                ))
            })?;
            f.unwritten.clear();
        }
        Ok(())
    }

    /// The write-ahead step: records the current length of every file the
    /// lines will append to.
    fn begin(&mut self, lines: &[(String, Vec<u8>, u64)]) -> Result<(), ExportError> {
        let mut pending = BTreeMap::new();
        for (name, _, _) in lines {
            if !pending.contains_key(name) {
                let size = self.file(name)?.size;
                pending.insert(name.clone(), size);
            }
        }
        self.state.pending = pending;
        write_state(&self.config.dir, &self.state)
    }

    fn commit(&mut self, next_seq: u64) -> Result<(), ExportError> {
        // The lines first, then the state that says they are there.
        self.write_out()?;
        self.state.next_seq = next_seq;
        self.state.pending.clear();
        write_state(&self.config.dir, &self.state)
    }

    /// Appends a line; returns whether the file passed the size limit.
    fn append(&mut self, name: &str, line: &[u8]) -> Result<bool, ExportError> {
        let max = self.config.max_log_size;
        let f = self.file(name)?;
        f.unwritten.extend_from_slice(line);
        f.size += line.len() as u64;
        let full = f.size > max;
        self.written += 1;
        Ok(full)
    }

    /// The open file `name`, opened (created) if needed.
    fn file(&mut self, name: &str) -> Result<&mut LogFile, ExportError> {
        if !self.files.contains_key(name) {
            if self.files.len() >= MAX_OPEN {
                self.write_out()?;
                self.files.clear();
            }
            let path = self.config.dir.join(name);
            let file = open_regular(&path, OpenMode::Append)
                .map_err(|e| ExportError::Write(format!("cannot open {}: {e}", path.display())))?;
            let size = file
                .metadata()
                .map_err(|e| ExportError::Write(format!("cannot inspect {}: {e}", path.display())))?
                .len();
            self.files.insert(
                name.to_string(),
                LogFile {
                    file,
                    size,
                    unwritten: Vec::new(),
                },
            );
        }
        Ok(self.files.get_mut(name).expect("inserted above"))
    }

    /// `x.log` -> `x.log.0` -> `x.log.1` ... keeping `max_log_files`.
    fn rotate(&mut self, name: &str) -> Result<(), ExportError> {
        self.write_out()?;
        self.files.remove(name);
        let dir = &self.config.dir;
        let keep = self.config.max_log_files;
        let rename = |from: &Path, to: &Path| match fs::rename(from, to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExportError::Write(format!(
                "cannot rotate {} to {}: {e}",
                from.display(),
                to.display()
            ))),
        };
        if keep == 0 {
            // No rotated files: start the file again.
            let path = dir.join(name);
            let f = open_regular(&path, OpenMode::Existing)
                .map_err(|e| ExportError::Write(format!("cannot open {}: {e}", path.display())))?;
            f.set_len(0)
                .map_err(|e| ExportError::Write(format!("cannot empty {}: {e}", path.display())))?;
            return Ok(());
        }
        for i in (0..keep).rev() {
            let from = if i == 0 {
                dir.join(name)
            } else {
                dir.join(format!("{name}.{}", i - 1))
            };
            rename(&from, &dir.join(format!("{name}.{i}")))?;
        }
        Ok(())
    }
}

/// How a connection ended.
enum ConnEnd {
    /// End of the answer (a finished dump, or the daemon stopped).
    Closed,
    /// Reading failed.
    Failed(io::Error),
    /// The daemon refused the request, with this reason and code.
    Refused(memlogq::Refusal),
}

/// One line of a log file: `<RFC 3339 time> <source> <msg>\n`. Newlines and
/// other control characters in the source, and newlines in the message,
/// are escaped so that one entry stays one line.
fn format_line(time_ns: u64, source: &str, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + source.len() + msg.len());
    write_rfc3339_secs(&mut out, time_ns);
    out.push(b' ');
    for &b in source.as_bytes() {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.push(b' ');
    for &b in msg {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    out.push(b'\n');
    out
}

/// The file name stem for a source name (module docs): safe, one to one.
pub fn file_stem(source: &str) -> String {
    if source.is_empty() {
        return "%empty".to_string();
    }
    let mut out = String::with_capacity(source.len());
    for (i, &b) in source.as_bytes().iter().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_STEM {
        let mut cut = MAX_STEM;
        // Never cut inside a %XX escape.
        while (cut > 0 && out.as_bytes()[cut - 1] == b'%')
            || (cut > 1 && out.as_bytes()[cut - 2] == b'%')
        {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!("~{:016x}", fnv1a(source.as_bytes())));
    }
    out
}

/// The source name a stem stands for; `None` for a hashed (cut) name or
/// one that is not a stem.
pub fn source_of_stem(stem: &str) -> Option<String> {
    if stem == "%empty" {
        return Some(String::new());
    }
    if stem.contains('~') || stem.starts_with('.') {
        return None;
    }
    let b = stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
            {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The log file of a source: its stem and `.log`.
pub fn log_file_name(source: &str) -> String {
    format!("{}.log", file_stem(source))
}

/// Whether `name` could be a file this exporter writes (a guard on names
/// read back from the state file, which is in a directory others may
/// write to).
fn is_own_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%' | b'~'))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// Append, creating the file.
    Append,
    /// Read and write, creating the file.
    Create,
    /// Write an existing file.
    Existing,
}

/// Opens a file in the export directory without following a symlink and
/// without blocking on a FIFO; refuses anything but a regular file.
fn open_regular(path: &Path, mode: OpenMode) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match mode {
        OpenMode::Append => o.append(true).create(true),
        OpenMode::Create => o.read(true).write(true).create(true),
        OpenMode::Existing => o.write(true),
    };
    o.mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    let file = o.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(e.kind(), "it is a symbolic link; refusing to follow it")
        } else {
            e
        }
    })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file; refusing to write to it",
        ));
    }
    Ok(file)
}

fn read_state(dir: &Path) -> Result<State, ExportError> {
    let path = dir.join(STATE_FILE);
    let text = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => {
            return Err(ExportError::Dir(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
        Ok(md) if !md.file_type().is_file() => {
            return Err(ExportError::Dir(format!(
                "{} is not a regular file; remove it to start the export from the oldest entry",
                path.display()
            )))
        }
        Ok(_) => fs::read(&path)
            .map_err(|e| ExportError::Dir(format!("cannot read {}: {e}", path.display())))?,
    };
    serde_json::from_slice(&text).map_err(|e| {
        ExportError::Dir(format!(
            "{} is damaged ({e}); remove it to start the export from the oldest entry",
            path.display()
        ))
    })
}

/// Replaces the state file atomically: a temporary file, then a rename.
fn write_state(dir: &Path, state: &State) -> Result<(), ExportError> {
    let tmp = dir.join(STATE_TMP);
    let fail = |e: io::Error| {
        ExportError::Write(format!(
            "cannot write {}: {e}",
            dir.join(STATE_FILE).display()
        ))
    };
    let text = serde_json::to_vec(state).expect("the state serializes");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(&text).map_err(fail)?;
    drop(f);
    fs::rename(&tmp, dir.join(STATE_FILE)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_reversible() {
        let names = [
            "onboot.001-dhcpcd.out",
            "",
            ".",
            "..",
            "../../etc/passwd",
            "a/b",
            "a\0b",
            "tab\there",
            "100%",
            "%empty",
            "%41",
            "héllo",
            ".hidden",
            "a.",
            "~x",
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let stem = file_stem(n);
            assert!(!stem.is_empty());
            assert!(!stem.starts_with('.'), "{n:?} -> {stem:?}");
            assert!(
                stem.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%~".contains(&b)),
                "{stem:?}"
            );
            assert_eq!(
                source_of_stem(&stem).as_deref(),
                Some(n),
                "{n:?} -> {stem:?}"
            );
            assert!(seen.insert(stem), "collision for {n:?}");
        }
        // Only a leading `.` needs encoding: with `/` encoded, a later `..` is
        // just part of a name.
        assert_eq!(file_stem("../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
        assert_eq!(file_stem("web.out"), "web.out");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "/".repeat(255);
        let stem = file_stem(&long);
        assert!(stem.len() <= MAX_STEM + 17);
        assert!(stem.contains('~'));
        assert_eq!(source_of_stem(&stem), None);
        let other = format!("{}x", "/".repeat(254));
        assert_ne!(file_stem(&other), stem);
        // Cuts never split an escape.
        let cut = &stem[..stem.find('~').unwrap()];
        assert!(source_of_stem(cut).is_some());
    }

    #[test]
    fn lines_stay_lines() {
        let line = format_line(1_531_041_413_500_000_000, "a\nb", b"x\ny");
        assert_eq!(line, b"2018-07-08T09:16:53Z a\\x0ab x\\ny\n");
    }
}
