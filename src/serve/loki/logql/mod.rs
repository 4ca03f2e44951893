//! LogQL, the query language of the Loki API: parsing, the log pipeline,
//! and evaluation over the ring.
//!
//! | room | what it holds |
//! |------|---------------|
//! | [`lexer`] | tokens and the `line:column` errors every stage reports |
//! | [`ast`] | the syntax tree |
//! | [`parser`] | text to tree, with Loki's rules and ringtail's messages |
//! | [`units`] | Go/Prometheus durations, bytes, Go number formatting |
//! | [`pipeline`] | what `\| json \| x > 1 \| line_format ...` does to one entry |
//! | [`template`] | the Go-template language of `line_format`/`label_format` |
//! | [`eval`] | running a query over a ring snapshot: scans, log queries, range and vector aggregation, binary operators |
//!
//! The answers are Loki's: every room names the Loki source or document
//! its rules come from, and `tests/logql_conformance/` checks whole
//! queries against the answers Loki's documentation and tests give.
//! What ringtail does not implement is refused by name at parse time.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod pipeline;
pub mod template;
pub mod units;

pub use ast::*;
pub use lexer::ParseError;
pub use parser::{parse, parse_selector, valid_label_name};
