//! `ringtail export --dir DIR`: per-source log files with rotation, resumed
//! by seq (LinuxKit's logwrite service; the behaviour is documented in
//! [`crate::sinks::export`]).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::sinks::export::{ExportConfig, Exporter, Stop};

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Directory of the log files: one `<source>.log` per source (names
    /// are encoded so that no source can write outside DIR).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Rotated files kept per source (x.log.0 is the newest).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_log_files: usize,

    /// A file is rotated once it passes this size (1MiB, 512KiB, 10MB or bytes).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = super::parse_size)]
    pub max_log_size: u64,

    /// The daemon's query socket (default: the one `ringtail serve` uses by
    /// default). `--socket` (logread's and logwrite's name) is an alias.
    #[arg(long = "socket-query", visible_alias = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Use memlogd's query socket (/var/run/memlogdq.sock).
    #[arg(long)]
    pub memlogd_paths: bool,

    /// Export what the daemon holds now, then exit (instead of following
    /// new entries and reconnecting when the daemon restarts).
    #[arg(long)]
    pub once: bool,

    /// Do not write entries whose source starts with PREFIX (repeatable;
    /// replaces the default: `logwrite` and `ringtail-export`, the output of
    /// the exporter itself when it runs under `ringtail run`).
    #[arg(long = "skip-prefix", value_name = "PREFIX", default_values_t = ["logwrite".to_string(), "ringtail-export".to_string()])]
    pub skip_prefixes: Vec<String>,
}

/// Runs `ringtail export`; returns the exit code.
pub fn main(args: ExportArgs) -> i32 {
    // Block the stop signals before any thread exists, so that only the
    // signal thread below takes them (and turns them into a clean stop).
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        super::print_error(format!("cannot block signals: {e}"));
        return 1;
    }
    let config = ExportConfig {
        dir: args.dir.clone(),
        socket: args
            .socket
            .clone()
            .unwrap_or_else(|| super::default_query_socket(args.memlogd_paths)),
        max_log_files: args.max_log_files,
        max_log_size: args.max_log_size,
        follow: !args.once,
        skip_prefixes: args.skip_prefixes.clone(),
    };
    let mut exporter = match Exporter::open(config) {
        Ok(e) => e,
        Err(e) => {
            super::print_error(e);
            return 1;
        }
    };
    let stop = Arc::new(Stop::new());
    let watcher = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("ringtail-signals".into())
        .spawn(move || {
            if signals.wait().is_ok() {
                watcher.request();
            }
        });
    if let Err(e) = spawned {
        super::print_error(format!("cannot start the signal thread: {e}"));
        return 1;
    }
    match exporter.run(&stop) {
        Ok(()) => 0,
        Err(e) => {
            super::print_error(e);
            1
        }
    }
}
