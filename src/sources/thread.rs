//! A source loop on a thread of its own, stopped at shutdown.
//!
//! Some inputs are best read by a thread that sleeps in `poll(2)` on the fd
//! itself: `/dev/kmsg` (tokio's readiness for a plain fd needs `unsafe`),
//! and the syslog datagram sockets (a sender that blocks while the queue is
//! full is woken straight by the kernel, without the runtime's driver and
//! scheduler in between). This module owns what those loops share: the
//! thread, and a [`Stop`] that wakes the thread's `poll` when the daemon
//! shuts down, so an idle source costs no CPU and stops at once.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio_util::sync::CancellationToken;

/// The thread's side of the shutdown signal: a pipe that the async side
/// writes to when the daemon stops.
pub struct Stop(std::io::PipeReader);

impl Stop {
    /// Sleeps until `fd` is readable, the daemon stops, or `timeout`
    /// passes; `true` means stop. An interrupted `poll` is resumed.
    pub fn wait(&self, fd: BorrowedFd<'_>, timeout: PollTimeout) -> io::Result<bool> {
        loop {
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(self.0.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => return Ok(fds[1].any().unwrap_or(false)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Runs `body` on a blocking thread until it returns; at `shutdown` its
/// [`Stop`] fires, and this waits for `body` to finish what it read.
pub async fn run<F>(shutdown: &CancellationToken, body: F) -> io::Result<()>
where
    F: FnOnce(&Stop) -> io::Result<()> + Send + 'static,
{
    let (stop_rx, mut stop_tx) = std::io::pipe()?;
    let thread = tokio::task::spawn_blocking(move || body(&Stop(stop_rx)));
    tokio::pin!(thread);
    tokio::select! {
        r = &mut thread => r,
        _ = shutdown.cancelled() => {
            let _ = stop_tx.write_all(b"x");
            thread.await
        }
    }
    .unwrap_or_else(|e| Err(io::Error::other(format!("the reader thread failed: {e}"))))
}
