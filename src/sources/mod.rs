//! Sources bring entries into the ring.
//!
//! # Adding a source
//!
//! A source is one module here that implements [`Source`] (what it listens
//! on, and its loop) and has an `Args` struct: its flags, under a help
//! heading of its own, flattened into `ringtail serve`, each also a key of
//! the config file, plus an optional list of `[[<module>]]` tables in the
//! config file for what flags cannot say. Then one line in the
//! [`sources!`] list below. Nothing in the daemon changes: it binds the
//! [`Listener`]s a source asks for (a path, an inherited fd, or a systemd
//! socket matched by name, handed over by `-daemonize` like any other),
//! starts its loop, and waits for it at shutdown.
//!
//! Every source stores through the one ingest [`pipeline`]: origin checks,
//! the long-line policy, the rate limit, batches, pacing, throttled
//! notices. Byte-stream inputs (fds, FIFOs, character devices) reuse
//! [`fd_reader`] and, for lines, [`lines`].
//!
//! Ways in that live inside the HTTP server (`POST /api/v1/entries`,
//! `POST /loki/api/v1/push`) are in [`http_ingest`] and [`loki_push`]:
//! they take no listener of their own but store through the same pipeline.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::listener::{Listener, Socket};

pub mod budget;
pub mod docker;
pub mod fd_reader;
pub mod fdpass;
pub mod http_ingest;
pub mod kmsg;
pub mod lines;
pub mod loki_push;
pub mod pace;
pub mod pipeline;
pub mod syslog;
pub mod thread;

pub use pipeline::Pipeline;

/// What happens to a line longer than the line-length limit.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    /// Store it as several entries of at most the limit each; every piece
    /// but the last is flagged `partial`, so nothing is lost and a reader
    /// can join the pieces again.
    #[default]
    Split,
    /// Store the first `max_line_len` bytes as one entry flagged
    /// `truncated` and drop the rest of the line (memlogd drops it too, but
    /// silently).
    Truncate,
}

/// A per-source rate limit: at most `lines` entries per `interval`; the
/// excess is dropped and counted in one self-log entry per interval
/// ("suppressed N lines from SOURCE"), as journald does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub lines: u64,
    pub interval: Duration,
}

/// The longest entry a line becomes by default (memlogd's `-max-line-len`).
pub const DEFAULT_MAX_LINE_LEN: usize = 1024;
/// The most fds read at once by default.
pub const DEFAULT_MAX_SOURCES: usize = 100_000;

/// Settings shared by every source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// The longest entry a line becomes (`-max-line-len`). Keep it at or
    /// below the ring's `max_entry_len`, which would otherwise cut entries
    /// to its own limit.
    pub max_line_len: usize,
    /// What happens to longer lines (`--long-lines`).
    pub long_lines: LongLines,
    /// Optional per-source rate limit; `None` keeps every line.
    pub rate_limit: Option<RateLimit>,
    /// The most fds read at once; a registration past it is refused with a
    /// self-log entry.
    pub max_sources: usize,
    /// The most share of time, in percent, sources may wait for followers
    /// that read at full speed but lag ([`pace`]; 0 turns it off).
    pub follower_pacing: u8,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            long_lines: LongLines::Split,
            rate_limit: None,
            max_sources: DEFAULT_MAX_SOURCES,
            follower_pacing: pace::DEFAULT_PERCENT,
        }
    }
}

/// What a running source gets from the daemon.
#[derive(Clone)]
pub struct Context {
    /// Where it stores.
    pub pipeline: Pipeline,
    /// Cancelled at shutdown: the source stops taking input, stores what it
    /// has read, and returns.
    pub shutdown: CancellationToken,
}

/// Why a source stopped before shutdown (which stops the daemon).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl From<std::io::Error> for SourceError {
    fn from(e: std::io::Error) -> SourceError {
        SourceError(e.to_string())
    }
}

/// A source's loop, as the daemon runs it.
pub type Running = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// One source: what it listens on and its loop.
pub trait Source: Send + 'static {
    /// What it is, for the start entry and errors: "fd passing", "syslog".
    fn kind(&self) -> &'static str;

    /// The sockets the daemon binds for it, before it starts (and, with
    /// `-daemonize`, in the foreground, so errors reach the caller).
    fn listeners(&self) -> Vec<Listener> {
        Vec::new()
    }

    /// Starts its loop with its sockets bound, in the order of
    /// [`listeners`](Self::listeners). The loop runs until
    /// `context.shutdown` is cancelled and then returns once everything it
    /// read is stored; returning earlier with an error stops the daemon.
    fn start(self: Box<Self>, sockets: Vec<Socket>, context: Context) -> Running;
}

/// What building the list of sources from flags and the config file needs
/// to know besides each source's own flags.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// `--memlogd-paths`: memlogd's socket paths instead of ringtail's.
    pub memlogd_paths: bool,
}

/// Declares the sources: each entry is a module of this directory with an
/// `Args` (clap, flattened into `serve`) that has
/// `fn sources(&self, defaults: &Defaults, tables: &[toml::Table]) -> Result<Vec<Box<dyn Source>>, String>`,
/// where `tables` are the config file's `[[<module>]]` entries.
macro_rules! sources {
    ($($module:ident),* $(,)?) => {
        /// The flags of every source, flattened into `ringtail serve`.
        #[derive(clap::Args, Debug, Clone, Default)]
        pub struct SourceArgs {
            $(
                #[command(flatten)]
                pub $module: $module::Args,
            )*
        }

        impl SourceArgs {
            /// The config file's list tables that belong to sources.
            pub const TABLES: &'static [&'static str] = &[$(stringify!($module)),*];

            /// Every source these flags and tables ask for.
            pub fn sources(
                &self,
                defaults: &Defaults,
                tables: &crate::cli::config::Tables,
            ) -> Result<Vec<Box<dyn Source>>, String> {
                #[allow(unused_mut)]
                let mut all: Vec<Box<dyn Source>> = Vec::new();
                $(
                    all.extend(self.$module.sources(defaults, tables.get(stringify!($module)))?);
                )*
                Ok(all)
            }
        }
    };
}

sources! {
    fdpass,
    syslog,
    kmsg,
    docker,
}
