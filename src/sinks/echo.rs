//! `--echo`: every entry printed to stdout as memlogd does
//! (`<RFC3339Nano>;<source>;<msg>`, LinuxKit logread's format).
//!
//! A sink like any other: stdout can be as slow as it likes, writers never
//! wait for it, and what it falls behind on is printed as a gap line. It
//! starts with the entry appended next (the daemon starts it before its
//! start entry), and at shutdown prints everything up to the stop entry. A
//! closed stdout ends it (nothing more can be printed).

use tokio::io::AsyncWriteExt as _;

use super::{Delivering, FollowOptions, Position, Sink, SinkError, Start};
use crate::format::{self, Format};
use crate::ring::Read;

/// Prints entries to stdout.
pub struct Echo {
    out: Vec<u8>,
    stdout: tokio::io::Stdout,
}

impl Echo {
    pub fn new() -> Echo {
        Echo {
            out: Vec::with_capacity(64 * 1024),
            stdout: tokio::io::stdout(),
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Echo::new()
    }
}

impl Sink for Echo {
    fn name(&self) -> String {
        "echo".into()
    }

    fn target(&self) -> String {
        "stdout".into()
    }

    fn options(&self) -> FollowOptions {
        FollowOptions {
            start: Start::Next,
            ..FollowOptions::default()
        }
    }

    fn writes_stdout(&self) -> bool {
        true
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Read<'a>], _next: Position) -> Delivering<'a> {
        Box::pin(async move {
            self.out.clear();
            for item in batch {
                match item {
                    Read::Entry(e) => format::write_entry(&mut self.out, Format::Logread, e),
                    Read::Gap { first_seq, missed } => format::write_gap(
                        &mut self.out,
                        Format::Logread,
                        *first_seq,
                        *missed,
                        crate::timefmt::now_ns(),
                    ),
                }
            }
            let written = async {
                self.stdout.write_all(&self.out).await?;
                self.stdout.flush().await
            };
            written
                .await
                .map_err(|e| SinkError::Fatal(format!("cannot write to stdout: {e}")))?;
            Ok(Default::default())
        })
    }
}
