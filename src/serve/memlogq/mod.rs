//! The memlogd query socket ("memlogq"): a unix stream socket on which a
//! client asks for a dump, a follow, or both, and reads entries as lines.
//!
//! # What a client can rely on
//!
//! **memlogd's protocol, unchanged.** The client writes one mode byte:
//! `0` dump (every entry in the ring at the moment of the request, oldest
//! first, then the server closes), `1` follow (entries published after the
//! request, until the client goes away), `2` dump then follow, with no
//! entry missing or repeated at the seam (one cursor reads the dump and
//! goes on following). Lines are memlogd's JSON (or the older text lines,
//! [`QueryFormat::Text`]). Bytes after the mode byte are read and thrown
//! away. Any other first byte closes the connection at once. A client that
//! sends nothing is dropped after [`QueryConfig::idle_timeout`], and delays
//! no one meanwhile: every connection is its own task.
//!
//! **Nothing is lost silently.** A reader that falls behind is not cut off
//! and does not make anyone wait: it reads the ring at its own pace, and if
//! the ring evicts entries before it gets to them it receives, in band, a
//! line from source `ringtail` saying how many it missed (see
//! [`format::write_gap`]), and ringtail's self log records it. Memory per
//! connection is bounded (one read batch and one output buffer of a few
//! hundred KiB), however slow the reader and however big the ring.
//!
//! **A richer request.** When the first byte is `{`, the client sends one
//! JSON object on one line (at most [`MAX_REQUEST_LEN`] bytes), for example
//! `{"mode":"dump+follow","since_seq":1234,"sources":["web*"],"contains":"error"}`.
//! Fields (all optional; unknown fields are an error):
//!
//! | field | meaning |
//! |-------|---------|
//! | `mode` | `"dump"` (default), `"follow"`, `"dump+follow"` |
//! | `since_seq` | resume strictly after this seq (the last one the client saw); evicted entries in between come first as a gap record |
//! | `tail` | start with the last N matching entries (dump modes) |
//! | `limit` | send at most N entries, then close |
//! | `sources` | source names or patterns with `*` and `?` |
//! | `streams` | `"stdout"`, `"stderr"` |
//! | `labels` | `{"key":"value"}`: origin labels that must match |
//! | `since`, `until` | times: RFC 3339, Unix seconds (number or string), or `"10m"` ago; `until` only with `"dump"` |
//! | `contains` | the message contains this text |
//! | `regex` | the message matches this regular expression |
//! | `format` | `"ndjson"` (default), or any [`Format`] |
//! | `ring_info` | `true`: the answer starts with `{"ring":{"id":"<16 hex digits>","first_seq":N,"end_seq":N}}` (ndjson only) |
//! | `ring_id` | the ring `since_seq` was read from; if the daemon's ring is another (it restarted without `--ring-file`), the request is refused, so a resuming client starts over instead of skipping |
//!
//! The answer is NDJSON entries carrying `seq`, with explicit
//! `{"gap":{"first_seq":N,"missed":N}}` records, so a reader that saw seq N
//! reconnects with `since_seq: N` and neither misses nor repeats anything.
//! A bad request gets one line `{"error":"...","code":"..."}`, then the
//! server closes. The `code` ([`ErrorCode`]) is what a program matches:
//! `too_long`, `bad_request`, `future_seq` (since_seq past the newest
//! entry) and `other_ring` (ring_id names another ring); the last two mean
//! the ring a resuming client read from is gone
//! ([`ErrorCode::ring_replaced`]).
//!
//! # Rooms
//!
//! - [`protocol`]: the request, the answer's refusal line and the ring id,
//!   as both ends see them; the pure parser [`parse_request`].
//! - [`server`]: the socket, connections, dumps, and follows through the
//!   shared follow loop ([`crate::serve::follow`]).
//! - [`client`]: [`connect`], the small synchronous client used by
//!   `ringtail read`, `ringtail export` and the tests.

pub mod client;
mod conn;
pub mod protocol;
pub mod server;

pub use client::{connect, ClientRequest};
pub use protocol::{
    parse_request, parse_request_at, parse_ring_id, ring_id_text, ErrorCode, JsonRequest, Mode,
    Refusal, Request, RequestError, TimeValue, MAX_REQUEST_LEN,
};
pub use server::{serve, QueryConfig, QueryFormat, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS};
