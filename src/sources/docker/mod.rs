//! The Docker logging-driver source: containers log straight into the ring
//! (issue 12; wire facts in protocols.md sections 4 and 5).
//!
//! dockerd hands the plugin one FIFO per container (StartLogging) and writes
//! the container's lines into it as length-prefixed protobuf frames; it asks
//! for them back for `docker logs` (ReadLogs). The pieces, each usable and
//! tested on its own:
//!
//! - [`frame`]: the frame format, an incremental decoder that survives
//!   oversized, garbage and cut frames with bounded memory, and the
//!   ReadLogs encoder;
//! - [`partial`]: Docker's 16 KiB partial pieces joined back into lines,
//!   then cut by ringtail's `--max-line-len` rule;
//! - [`info`]: the API's JSON bodies, a container's labels and source name,
//!   Docker's etwlogs message;
//! - [`tag`]: the `tag` log-opt's template subset;
//! - [`state`]: the restart state file (the FIFOs to re-attach to);
//! - [`http`]: the API's calls and answers, with the side effects behind
//!   the [`http::LogDriver`] trait;
//! - [`fifo`]: one container's FIFO read into the ring;
//! - [`logs`]: `docker logs` answered from the ring;
//! - [`plugin`]: the source itself (`--docker-plugin`), which serves the
//!   API and implements [`http::LogDriver`] with the pieces above.

pub mod fifo;
pub mod frame;
pub mod http;
pub mod info;
pub mod logs;
pub mod partial;
pub mod plugin;
pub mod state;
pub mod tag;

pub use plugin::Args;
