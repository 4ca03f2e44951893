//! Syslog: the parts of the `/dev/log`, UDP and TCP sources that do not
//! depend on the daemon.
//!
//! - [`parse`]: one message (RFC 5424, RFC 3164, the glibc/busybox local
//!   forms) from bytes to borrowed fields, and the splitting of a
//!   `/dev/log` datagram that holds several messages.
//! - [`framing`]: RFC 6587 framing of a TCP byte stream, decided per
//!   frame, in bounded memory.
//! - [`ratelimit`]: a journald-style per-sender rate limiter.
//! - [`creds`]: receiving a datagram with the sender's pid, uid and gid
//!   as the kernel reports them (`SO_PASSCRED`).
//! - [`priority`]: facilities and severities and their names.
//!
//! None of these read the clock or touch the ring: times come in as
//! arguments, so every rule can be tested on fixed inputs.
//!
//! On top of them:
//! - [`ingest`]: one message to one entry (source name, labels, level,
//!   kept timestamp), stored in batches through the pipeline;
//! - [`source`]: the listeners as a source plug-in (`--syslog-socket`,
//!   `--syslog-udp`, `--syslog-tcp`, `[[syslog]]`) and their loops.

pub mod creds;
pub mod framing;
pub mod ingest;
pub mod parse;
pub mod priority;
pub mod ratelimit;
pub mod source;

pub use priority::{Facility, Priority, Severity};
pub use source::Args;
