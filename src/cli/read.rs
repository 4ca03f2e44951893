//! `ringtail read`: prints the logs a running daemon keeps (LinuxKit's
//! `logread`): a dump by default, `-f` to follow new entries, `-F` to dump
//! then follow.
//!
//! Filters run in the daemon (one JSON request on the query socket); the
//! answer comes back as NDJSON and is rendered here by [`crate::format`],
//! so every output format shows the same entries. A gap (entries the ring
//! evicted before this reader got them) is reported on stderr, and also in
//! the output stream with `-o ndjson`. `ringtail read | head` ends quietly.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use clap::Args;

use crate::format::{self, Format};
use crate::serve::memlogq::{self, ClientRequest, JsonRequest, Mode, TimeValue};
use crate::sinks::{parse_record, Record, RecordError};

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Follow: print entries as they arrive (no dump).
    #[arg(short = 'f', conflicts_with = "dump_follow")]
    pub follow: bool,

    /// Dump what the daemon holds, then follow.
    #[arg(short = 'F')]
    pub dump_follow: bool,

    /// The daemon's query socket (default: the one `ringtail serve` uses by
    /// default).
    #[arg(long, value_name = "PATH")]
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
}

fn read(args: &ReadArgs) -> Result<(), ReadError> {
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
