//! Sources bring lines into the ring.
//!
//! Today there is one: the memlogd fd-passing socket ([`fdpass`]), where a
//! client hands over file descriptors and ringtail reads each one to its end.
//! [`lines`] is the byte-stream-to-lines step every stream source shares;
//! [`pace`] lets fd sources wait, within a budget, for followers that read
//! at full speed but fell behind in a burst.
//!
//! This module owns the settings that hold for every source
//! ([`IngestConfig`]): how long a line may be, what happens to longer ones,
//! an optional per-source rate limit, and how many sources may be open at
//! once.

use std::time::Duration;

pub mod docker;
pub mod fdpass;
pub mod lines;
pub mod pace;

/// What happens to a line longer than the line-length limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
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

/// Settings shared by every source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// The longest entry a line becomes (`-max-line-len`, default 1024).
    /// Keep it at or below the ring's `max_entry_len`, which would
    /// otherwise cut entries to its own limit.
    pub max_line_len: usize,
    /// What happens to longer lines (`--long-lines`).
    pub long_lines: LongLines,
    /// Optional per-source rate limit; `None` keeps every line.
    pub rate_limit: Option<RateLimit>,
    /// The most fds read at once; a registration past it is refused with a
    /// self-log entry (default 100,000).
    pub max_sources: usize,
    /// The most share of time, in percent, sources may wait for followers
    /// that read at full speed but lag ([`pace`]; 0 turns it off).
    pub follower_pacing: u8,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_line_len: 1024,
            long_lines: LongLines::Split,
            rate_limit: None,
            max_sources: 100_000,
            follower_pacing: pace::DEFAULT_PERCENT,
        }
    }
}
