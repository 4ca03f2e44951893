//! `ringtail read`: prints the logs a running daemon keeps (LinuxKit's
//! `logread`): a dump by default, `-f` to follow new entries, `-F` to dump
//! then follow.
//!
//! Filters run in the daemon (one JSON request on the query socket); the
//! answer comes back as NDJSON and is rendered here by [`crate::format`],
//! so every output format shows the same entries. A gap (entries the ring
//! evicted before this reader got them) is reported on stderr, and also in
//! the output stream with `-o ndjson`. `ringtail read | head` ends quietly.
//!
//! With `--ring-file PATH` no daemon is asked: the ring file (of a crashed
//! host, or beside a running daemon) is copied into memory read-only and
//! recovered as a reopening daemon would ([`Ring::open_copy`]), and the same
//! request is served from the copy here, with the daemon's filter code, so
//! every filter and output format gives what the daemon would have given.
//! Torn entries are dropped and counted on stderr, never shown.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use clap::Args;

use crate::format::{self, Format};
use crate::ring::{Read, ReadBatch, ReadStatus, Ring};
use crate::serve::memlogq::{self, ClientRequest, JsonRequest, Mode, TimeValue};
use crate::sinks::{parse_record, Record, RecordError};

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Follow: print entries as they arrive (no dump).
    #[arg(short = 'f', conflicts_with_all = ["dump_follow", "ring_file"])]
    pub follow: bool,

    /// Dump what the daemon holds, then follow.
    #[arg(short = 'F', conflicts_with = "ring_file")]
    pub dump_follow: bool,

    /// Read this ring file (`serve --ring-file`) instead of asking a
    /// daemon: post-mortem reading after a crash, from a read-only copy, or
    /// beside a running daemon. The file is only read; entries a writer
    /// left torn are dropped and counted on stderr.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["socket", "memlogd_paths"])]
    pub ring_file: Option<PathBuf>,

    /// The daemon's query socket (default: the one `ringtail serve` uses by
    /// default). `--socket` (logread's and logwrite's name) is an alias.
    #[arg(long = "socket-query", visible_alias = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Use memlogd's query socket (/var/run/memlogdq.sock).
    #[arg(long)]
    pub memlogd_paths: bool,

    /// Only entries of this source: a name, or a pattern with `*` and `?`
    /// (repeatable; any of them matches).
    #[arg(long = "source", value_name = "NAME|GLOB")]
    pub sources: Vec<String>,

    /// Only entries whose origin has this label (repeatable; all must
    /// match): `--label container_name=web` reads one Docker container.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Only entries from this time on: RFC 3339, Unix seconds, or an age
    /// such as 10m, 2h, 1d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Start with the last N matching entries (with -F: then follow).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<u64>,

    /// Only entries whose message contains this text.
    #[arg(long, value_name = "TEXT")]
    pub contains: Option<String>,

    /// Only entries whose message matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub regex: Option<String>,

    /// Output format: logread (`time;source;msg`, LinuxKit's logread),
    /// json (memlogd's lines), text (older memlogd), raw (messages only),
    /// etw (Docker's etwlogs messages), ndjson (every field, with seq and
    /// gap records).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value = "logread"
    )]
    pub output: Format,
}

impl ReadArgs {
    /// The request these flags make.
    pub fn request(&self) -> JsonRequest {
        let mode = if self.dump_follow {
            Mode::DumpFollow
        } else if self.follow {
            Mode::Follow
        } else {
            Mode::Dump
        };
        JsonRequest {
            mode,
            tail: self.lines,
            sources: self.sources.clone(),
            labels: self.labels.iter().cloned().collect(),
            since: self.since.clone().map(TimeValue::Text),
            contains: self.contains.clone(),
            regex: self.regex.clone(),
            format: Some(Format::Ndjson),
            ..JsonRequest::default()
        }
    }
}

/// `KEY=VALUE` of `--label`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if crate::filter::valid_label_key(k) => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?}: give KEY=VALUE, KEY of letters, digits, `_`, `-` and `.`"
        )),
    }
}

/// Runs `ringtail read`; returns the exit code.
pub fn main(args: ReadArgs) -> i32 {
    match read(&args) {
        Ok(()) => 0,
        // `ringtail read | head`: the reader went away; nothing to say.
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            super::print_error(e);
            1
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Daemon(String),
    #[error("{0}")]
    File(String),
}

fn read(args: &ReadArgs) -> Result<(), ReadError> {
    if let Some(path) = &args.ring_file {
        return read_file(args, path);
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| super::default_query_socket(args.memlogd_paths));
    let request = args.request();
    let follows = request.mode != Mode::Dump;
    let conn = memlogq::connect(&socket, &ClientRequest::Json(request))
        .map_err(|e| ReadError::Daemon(e.to_string()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, conn);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = Vec::with_capacity(2048);
    let mut rendered = Vec::with_capacity(4096);
    loop {
        // Show what we have before waiting for more (followers see each
        // line as it comes).
        if reader.buffer().is_empty() {
            out.flush()?;
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| {
            ReadError::Daemon(format!("lost the connection to {}: {e}", socket.display()))
        })?;
        if n == 0 || !line.ends_with(b"\n") {
            out.flush()?;
            if follows {
                return Err(ReadError::Daemon(format!(
                    "{} closed the connection (the daemon stopped?)",
                    socket.display()
                )));
            }
            return Ok(());
        }
        match parse_record(&line) {
            Ok(Record::Entry(e)) => {
                rendered.clear();
                format::write_entry(&mut rendered, args.output, &e.as_ref());
                out.write_all(&rendered)?;
            }
            // Not asked for (no `ring_info`); nothing to show.
            Ok(Record::Ring { .. }) => {}
            Ok(Record::Gap { first_seq, missed }) => {
                out.flush()?;
                eprintln!("ringtail: {}", format::gap_message(first_seq, missed));
                if args.output == Format::Ndjson {
                    out.write_all(&line)?;
                }
            }
            Err(RecordError::Refused(reason)) => {
                return Err(ReadError::Daemon(format!(
                    "{} refused the request: {reason}",
                    socket.display()
                )))
            }
            Err(e @ RecordError::Malformed(_)) => return Err(ReadError::Daemon(e.to_string())),
        }
    }
}

/// `read --ring-file`: the request served from a recovered copy of the
/// file, the way the daemon's query socket serves a dump.
fn read_file(args: &ReadArgs, path: &std::path::Path) -> Result<(), ReadError> {
    // The same JSON request the daemon would get, checked by the same code.
    let line = serde_json::to_vec(&args.request()).expect("a request serialises");
    let request = memlogq::parse_request(&line).map_err(|e| ReadError::File(e.to_string()))?;
    // The loom build of the ring has no ring files.
    #[cfg(feature = "loom")]
    {
        let _ = request;
        Err(ReadError::File(format!(
            "{}: this is the loom model build, which reads no ring files",
            path.display()
        )))
    }
    #[cfg(not(feature = "loom"))]
    {
        let (ring, _) = Ring::open_copy(path).map_err(|e| ReadError::File(e.to_string()))?;
        report_torn(path, &ring);
        let stdout = io::stdout();
        let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        dump(&ring, &request, args.output, &mut out)?;
        out.flush()?;
        Ok(())
    }
}

/// Says on stderr what recovery dropped from a ring file, if anything.
#[cfg(not(feature = "loom"))]
pub(crate) fn report_torn(path: &std::path::Path, ring: &Ring) {
    let torn = ring.recovery().torn;
    if torn > 0 {
        eprintln!(
            "ringtail: {}: dropped {torn} torn {} (claimed but never published: the writer died \
             while storing them, or a running daemon was storing them)",
            path.display(),
            if torn == 1 { "entry" } else { "entries" }
        );
    }
}

/// Writes the entries of a dump `request` over `ring` to `out` in `format`,
/// choosing the range as the daemon's query socket does (`since`, `tail`,
/// `until`, `limit`). Gaps (only possible if someone appends to `ring`
/// meanwhile) go to stderr, and into the stream with ndjson.
pub fn dump(
    ring: &Ring,
    request: &memlogq::Request,
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    let filter = &request.filter;
    let snap = ring.snapshot();
    let mut start = snap.first();
    if let Some(since) = filter.since_ns() {
        start = start.max(snap.seek_time(since));
    }
    if let Some(n) = request.tail {
        start = start.max(crate::serve::follow::tail_start(&snap, filter, n, start));
    }
    let stop = filter.until_ns().map_or(snap.end(), |u| snap.seek_time(u));
    let mut left = request.limit.unwrap_or(u64::MAX);
    let mut cursor = snap.cursor_from(start, filter);
    let mut batch = ReadBatch::new();
    let mut rendered = Vec::with_capacity(64 * 1024);
    while cursor.position() < stop && left > 0 {
        let room = (stop - cursor.position()).min(4096) as usize;
        let status = cursor.read(&mut batch, room);
        rendered.clear();
        for item in batch.iter() {
            match item {
                Read::Entry(e) => {
                    if left == 0 {
                        break;
                    }
                    format::write_entry(&mut rendered, format, &e);
                    left -= 1;
                }
                Read::Gap { first_seq, missed } => {
                    eprintln!("ringtail: {}", format::gap_message(first_seq, missed));
                    if format == Format::Ndjson {
                        format::write_gap(
                            &mut rendered,
                            format,
                            first_seq,
                            missed,
                            crate::timefmt::now_ns(),
                        );
                    }
                }
            }
        }
        out.write_all(&rendered)?;
        if status != ReadStatus::More {
            break;
        }
    }
    Ok(())
}
