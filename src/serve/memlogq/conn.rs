//! One query socket connection, registered with the runtime for *readable*
//! only.
//!
//! Why not tokio's `UnixStream`: it registers every socket for both read
//! and write readiness, edge-triggered. A unix stream socket reports
//! "writable" each time its peer reads, so every line a follower sends
//! came back as a second wake-up of a runtime thread when the client read
//! it (measured: 2 wake-ups per followed line instead of 1). A follower's
//! socket almost never fills, so [`Conn`] writes straight away and only
//! waits for writability after the kernel says the buffer is full: then
//! it registers a duplicate of the fd for write readiness until that write
//! is done, so only a client that reads slower than the daemon writes pays
//! for it.

use std::io::{self, Read as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{SendFlags, Shutdown};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A connected query socket client (see the module docs).
pub(super) struct Conn {
    fd: AsyncFd<std::os::unix::net::UnixStream>,
}

impl Conn {
    /// Takes over an accepted stream (already non-blocking).
    pub(super) fn new(stream: tokio::net::UnixStream) -> io::Result<Conn> {
        let stream = stream.into_std()?;
        stream.set_nonblocking(true)?;
        Ok(Conn {
            fd: register(stream, Interest::READABLE)?,
        })
    }

    /// Reads what the client sent; 0 at end of file.
    pub(super) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|s| s.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `buf`.
    pub(super) async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        // Registered for write readiness only while a write waits.
        let mut writable: Option<AsyncFd<OwnedFd>> = None;
        while !buf.is_empty() {
            match send(self.fd.get_ref().as_fd(), buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let w = match &writable {
                        Some(w) => w,
                        None => writable.insert(register(
                            self.fd.get_ref().as_fd().try_clone_to_owned()?,
                            Interest::WRITABLE,
                        )?),
                    };
                    // Registering reports the current state, and `try_io`
                    // forgets readiness only when the send finds the buffer
                    // full again: no edge is lost in between.
                    let mut ready = w.writable().await?;
                    if let Ok(r) = ready.try_io(|fd| send(fd.as_fd(), buf)) {
                        buf = &buf[r?..];
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends the daemon's side of the connection.
    pub(super) fn shutdown_write(&self) {
        let _ = rustix::net::shutdown(self.fd.get_ref(), Shutdown::Write);
    }

    pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Registers an fd the `AsyncFd` owns with tokio's epoll.
///
/// tokio 1.54 deprecated its safe constructors (tokio PR 8587) because a
/// `T: AsRawFd` could close or swap its fd while registered. An owned
/// stream or `OwnedFd` cannot: the `AsyncFd` owns it, so it stays open and
/// the same until the registration is dropped, which is the contract of
/// the `unsafe` replacement; the safe wrapper keeps `unsafe` out of here.
#[allow(deprecated)]
fn register<T: std::os::fd::AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    AsyncFd::with_interest(fd, interest)
}

/// One non-blocking send; a client that went away is an error, not a
/// signal.
fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
