//! Reading one container's FIFO into the ring.
//!
//! A [`FifoReader`] owns what one FIFO needs: the frame decoder
//! ([`super::frame`]), the partial joiner ([`super::partial`]), a batch and
//! the container's origin. [`FifoReader::run`] reads the FIFO as readiness
//! comes and promises:
//!
//! - **A container never waits on ringtail.** Every read that returns
//!   bytes is decoded and stored at once, with no lock on the way: the
//!   ring evicts its oldest entries rather than make a writer wait, and
//!   readers that lagged are told by a gap. One read buffer of
//!   [`READ_LEN`] bytes per FIFO; a FIFO that never stops writing yields to
//!   the others after [`READS_PER_TURN`] full reads.
//! - **Few wake-ups when a container floods.** dockerd writes one frame
//!   per `write(2)`, so a reader woken by each write would pay a wake-up,
//!   a read and a ring append per line. After a pass that emptied the
//!   pipe, the reader waits [`GATHER`] before it looks again, so a flood
//!   is read in batches of up to a millisecond's worth; meanwhile the
//!   frames wait in the pipe, which is enlarged to [`PIPE_LEN`] so that a
//!   container would have to write faster than about 500 MB/s to fill it.
//!   During that wait the FIFO is out of the reactor's epoll set, since
//!   Linux wakes a polled pipe's waiters on every write: registered, each
//!   of dockerd's writes would wake a worker thread for nothing. A lone
//!   line is read at once (its wait comes after it); a line that follows
//!   within the millisecond waits at most that long.
//! - **Frames are decoded, not guessed**: each entry keeps the container's
//!   `time_nano` as its source time ([`SourceTime::Kept`]); oversized and
//!   garbage frames are skipped in sync, counted, and reported through the
//!   pipeline's throttled notices; a frame cut short at the end is
//!   reported, never parsed.
//! - **StopLogging loses nothing**: when told to stop ([`End::Stopped`]) it
//!   reads until the FIFO would block, stores what that completed, ends
//!   the lines still open and only then returns, so the caller answers
//!   dockerd (which closes its end after the answer) with every line
//!   stored.
//! - **A restart resumes at a frame boundary**: at shutdown it reads on
//!   until it is between frames (waiting at most [`BOUNDARY_WAIT`] for the
//!   rest of a frame), so the next ringtail that re-attaches to the FIFO
//!   starts at a length prefix. What it has not read stays in the pipe,
//!   where dockerd (which holds the FIFO open read-write) keeps it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::frame::{Decoded, FrameDecoder, FrameStats};
use super::partial::{JoinStats, PartialJoiner};
use crate::entry::{Level, SourceTime};
use crate::ring::OriginHandle;
use crate::sources::pipeline::{Batch, Limiter, Pipeline};

/// Bytes read at once from a FIFO (the size of the pipe's default buffer).
pub const READ_LEN: usize = 64 * 1024;

/// The pipe buffer a FIFO is given when it is opened (Linux's default is
/// 64 KiB): room for the frames that arrive while the reader gathers.
pub const PIPE_LEN: usize = 1024 * 1024;

/// How long a reader waits after a pass that emptied the pipe before it
/// looks again (see the module docs).
pub const GATHER: Duration = Duration::from_millis(1);

/// Gives the pipe behind `rx` a [`PIPE_LEN`] buffer, or leaves it as it is
/// when the kernel refuses (an unprivileged process past
/// `/proc/sys/fs/pipe-max-size` or its user's pipe quota); returns the
/// size the pipe has.
pub fn enlarge_pipe(rx: &pipe::Receiver) -> Option<usize> {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::AsRawFd;
    let fd = rx.as_raw_fd();
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_LEN as libc::c_int));
    fcntl(fd, FcntlArg::F_GETPIPE_SZ).ok().map(|n| n as usize)
}

/// One `read(2)` of the FIFO, whatever tokio has seen of its readiness.
///
/// The reader asks the kernel, not the reactor: the FIFO is out of the
/// reactor most of the time (see [`FifoReader::run`]), and a registered
/// one's `try_read` answers `WouldBlock` without a system call while the
/// reactor has not yet delivered its readiness, which under load can lag
/// behind a write by milliseconds; StopLogging's drain must see
/// everything dockerd wrote before the call.
fn read_now(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    nix::unistd::read(fd.as_raw_fd(), buf).map_err(io::Error::from)
}

/// Full reads in a row before a reader lets the others have a turn.
pub const READS_PER_TURN: usize = 16;

/// How long a reader stopping for shutdown waits for the rest of a frame
/// it has begun, so that the next ringtail starts between frames.
pub const BOUNDARY_WAIT: Duration = Duration::from_secs(1);

/// Why reading a FIFO ended.
#[derive(Debug)]
pub enum End {
    /// StopLogging: drained to `EAGAIN`.
    Stopped,
    /// ringtail is shutting down; the FIFO stays dockerd's and is recorded
    /// in the state file for the next start.
    Shutdown,
    /// dockerd closed its end (it stopped, or restarted).
    Eof,
    Failed(io::Error),
}

/// What one FIFO delivered, for the summary at its end.
#[derive(Clone, Copy, Debug, Default)]
pub struct FifoStats {
    pub frames: FrameStats,
    pub joins: JoinStats,
    pub bytes: u64,
}

/// One FIFO's reading state (see the module docs).
pub struct FifoReader {
    file: PathBuf,
    pipeline: Pipeline,
    origin: OriginHandle,
    decoder: FrameDecoder,
    joiner: PartialJoiner,
    batch: Batch,
    limiter: Option<Limiter>,
    bytes: u64,
}

impl FifoReader {
    /// A reader storing as `origin`, skipping frames over `max_frame_len`.
    pub fn new(
        file: PathBuf,
        pipeline: &Pipeline,
        origin: OriginHandle,
        max_frame_len: usize,
    ) -> FifoReader {
        let limit = pipeline.line_limit();
        FifoReader {
            file,
            origin,
            decoder: FrameDecoder::new(max_frame_len),
            joiner: PartialJoiner::new(limit.max_line_len, limit.long_lines),
            batch: pipeline.batch(),
            limiter: pipeline.config().rate_limit.map(Limiter::new),
            bytes: 0,
            pipeline: pipeline.clone(),
        }
    }

    pub fn stats(&self) -> FifoStats {
        FifoStats {
            frames: *self.decoder.stats(),
            joins: *self.joiner.stats(),
            bytes: self.bytes,
        }
    }

    /// Decodes `chunk` and stores the lines it completes.
    pub fn take(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        let FifoReader {
            file,
            pipeline,
            decoder,
            joiner,
            batch,
            ..
        } = self;
        let cap = decoder.max_frame_len();
        decoder.feed(chunk, |ev| match ev {
            Decoded::Entry(e) => joiner.push(e, |p| {
                let t = u64::try_from(p.time_nano)
                    .ok()
                    .filter(|&t| t > 0)
                    .map_or(SourceTime::None, SourceTime::Kept);
                batch.push(p.msg, p.flags, t);
            }),
            Decoded::Oversized { len } => pipeline.notice(Level::Warning, || {
                format!(
                    "docker plugin: skipped a {len}-byte frame on {} (over the cap of {} \
                     bytes, --docker-max-frame); the frames after it are read normally",
                    file.display(),
                    cap
                )
            }),
            Decoded::Garbage { len, error } => pipeline.notice(Level::Warning, || {
                format!(
                    "docker plugin: skipped a {len}-byte frame on {} that is not a Docker \
                     LogEntry ({error})",
                    file.display()
                )
            }),
        });
        self.store();
    }

    fn store(&mut self) {
        if !self.batch.is_empty() {
            self.pipeline
                .store_batch(&self.origin, self.limiter.as_mut(), &mut self.batch);
        }
    }

    /// The stream is over: report a frame cut short, end open lines, store.
    pub fn finish(&mut self) {
        if let Err(cut) = self.decoder.finish() {
            let file = self.file.display();
            self.pipeline
                .notice(Level::Warning, || format!("docker plugin: {file}: {cut}"));
        }
        let batch = &mut self.batch;
        self.joiner.finish(|p| {
            let t = u64::try_from(p.time_nano)
                .ok()
                .filter(|&t| t > 0)
                .map_or(SourceTime::None, SourceTime::Kept);
            batch.push(p.msg, p.flags, t);
        });
        self.store();
        if let Some(l) = self.limiter.as_mut() {
            l.report(self.pipeline.selflog(), &self.origin.origin().source);
        }
    }

    /// Reads `rx` until stopped, shut down, at end of file or failed; see
    /// the module docs for what each way out promises.
    pub async fn run(
        &mut self,
        rx: pipe::Receiver,
        stop: CancellationToken,
        shutdown: CancellationToken,
    ) -> End {
        let fd = match rx.into_nonblocking_fd() {
            Ok(fd) => fd,
            Err(e) => return End::Failed(e),
        };
        match self.read_until_told(fd, &stop, &shutdown).await {
            Ok(end) => end,
            Err(e) => End::Failed(e),
        }
    }

    /// The body of [`FifoReader::run`]. The FIFO is registered with the
    /// reactor only while the reader waits for it to become readable: a
    /// pipe that has ever been polled wakes its waiters on every write,
    /// so a FIFO left registered through the [`GATHER`] wait would wake a
    /// worker thread (and make dockerd pay for that wake-up) once per
    /// line. Out of the reactor, the frames dockerd writes meanwhile just
    /// land in the pipe.
    async fn read_until_told(
        &mut self,
        mut fd: OwnedFd,
        stop: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> io::Result<End> {
        let mut buf = vec![0u8; READ_LEN];
        let mut full = 0;
        loop {
            if stop.is_cancelled() {
                self.drain(&fd, &mut buf)?;
                return Ok(End::Stopped);
            }
            if shutdown.is_cancelled() {
                self.read_to_boundary(fd, &mut buf).await?;
                return Ok(End::Shutdown);
            }
            match read_now(&fd, &mut buf) {
                Ok(0) => return Ok(End::Eof),
                Ok(n) if n == buf.len() => {
                    self.take(&buf[..n]);
                    full += 1;
                    if full == READS_PER_TURN {
                        tokio::task::yield_now().await;
                        full = 0;
                    }
                }
                Ok(n) => {
                    self.take(&buf[..n]);
                    full = 0;
                    // The pipe is empty: let the next frames gather (a
                    // stop or a shutdown ends the wait).
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = stop.cancelled() => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    full = 0;
                    let waiting = pipe::Receiver::from_owned_fd_unchecked(fd)?;
                    let ready = tokio::select! {
                        ready = waiting.readable() => ready,
                        _ = stop.cancelled() => Ok(()),
                        _ = shutdown.cancelled() => Ok(()),
                    };
                    fd = waiting.into_nonblocking_fd()?;
                    ready?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the FIFO would block (or ends).
    fn drain(&mut self, fd: &OwnedFd, buf: &mut [u8]) -> io::Result<()> {
        loop {
            match read_now(fd, buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the decoder is between frames, waiting a little for the
    /// rest of a frame that has begun; nothing more, so what is left stays
    /// in the pipe for the next start.
    async fn read_to_boundary(&mut self, fd: OwnedFd, buf: &mut [u8]) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + BOUNDARY_WAIT;
        let rx = pipe::Receiver::from_owned_fd_unchecked(fd)?;
        while !self.decoder.at_frame_boundary() {
            // Read no further than this frame's end: the next frame is
            // left whole in the pipe.
            let want = self.decoder.bytes_to_boundary().clamp(1, buf.len());
            // Through the reactor, so that a `WouldBlock` clears the
            // readiness `readable` waits on (a bare `read(2)` would leave
            // it set, and the wait would spin).
            match rx.try_read(&mut buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tokio::time::timeout_at(deadline, rx.readable())
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifos_get_the_larger_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // dockerd holds its end read-write; so does this test.
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)
            .unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(PIPE_LEN);
        let size = enlarge_pipe(&rx).expect("F_GETPIPE_SZ answers");
        assert!(size >= PIPE_LEN.min(max), "{size}");
    }
}
