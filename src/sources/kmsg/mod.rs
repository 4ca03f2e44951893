//! The kernel log (`/dev/kmsg`): the parts of the source that do not
//! depend on the daemon.
//!
//! - [`record`]: one record as `read()` returns it, with its continuation
//!   lines, `\xNN` unescaped.
//! - [`seq`]: which records were missed (a seq jump, an `EPIPE`) or were
//!   already stored by a previous run, and the wall-clock time of a
//!   backlog record.
//!
//! - [`source`]: the source plug-in (`--kmsg [PATH]`) that reads the
//!   device (or a file or FIFO of records) and stores each record.
//!
//! How the device is read: open `/dev/kmsg` `O_RDONLY|O_NONBLOCK`,
//! `read()` into a buffer of at least 8 KiB (one record per call; the
//! kernel's limit is 8 KiB less its prefix), treat `EAGAIN` as "caught
//! up" and `EPIPE` as "overrun, go on reading" ([`seq::SeqTracker::overrun`]).

pub mod record;
pub mod seq;
pub mod source;

pub use source::Args;
