//! ringtail's own events (start, stop, bad registrations, fd exhaustion,
//! gaps served) as entries with source `ringtail`, in the same ring as
//! everything else, so every reader sees them in order with the lines they
//! explain.

use std::sync::Arc;

use crate::entry::{Flags, Origin};
use crate::ring::{OriginHandle, Ring};

/// The source name of ringtail's own entries.
pub const SOURCE: &str = "ringtail";

/// Appends ringtail's own events to the ring. Cheap to clone.
#[derive(Clone)]
pub struct SelfLog {
    ring: Arc<Ring>,
    origin: OriginHandle,
}

/// Syslog severities used for self-log entries (they become Loki's `level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

impl SelfLog {
    /// Registers the `ringtail` source.
    pub fn new(ring: Arc<Ring>) -> Result<SelfLog, crate::ring::RingError> {
        let origin = ring.origin(Origin::new(SOURCE))?;
        Ok(SelfLog { ring, origin })
    }

    /// Appends one event; returns its seq.
    pub fn log(&self, level: Level, msg: impl AsRef<str>) -> u64 {
        let flags = Flags::default().with_level(Some(level as u8));
        self.ring
            .append(&self.origin, flags, msg.as_ref().as_bytes())
    }

    pub fn info(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Info, msg)
    }

    pub fn warn(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Warning, msg)
    }

    pub fn error(&self, msg: impl AsRef<str>) -> u64 {
        self.log(Level::Error, msg)
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }
}
