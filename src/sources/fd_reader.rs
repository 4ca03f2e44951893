//! Reading an fd to its end, for any source whose input is a byte stream:
//! the fds handed over on memlogd's socket, Docker's FIFOs, `/dev/kmsg`.
//!
//! A source describes *what* the bytes mean with an [`FdInput`] (split
//! lines, decode frames, parse records); this module owns *how* the fd is
//! read, and promises, for every input:
//!
//! - **No thread per fd.** Each fd is a small tokio task waiting for
//!   readiness with epoll. Fds epoll refuses (regular files, `/dev/zero`
//!   and other character devices) are read on tokio's blocking pool
//!   instead, at most [`BLOCKING_READERS`] at a time, in slices, so they
//!   take turns.
//! - **Large reads, one ring claim per read.** An input reads up to 64 KiB
//!   at a time straight into its own buffer and stores what one read
//!   completes with one append.
//! - **Fairness.** A reader yields to the scheduler after a read that
//!   filled its buffer (more is waiting), so one that never stops writing
//!   shares the CPU with the others. An fd that epoll refuses and that is
//!   not a regular file (a character device such as `/dev/zero`, which
//!   never blocks and never ends) is read at most [`DEVICE_READ_RATE`]
//!   bytes per second, so it can neither burn a core nor wash every other
//!   source out of the ring in an instant; regular files are read at full
//!   speed.
//! - **Bounded idle cost.** An idle reader holds no read buffer (buffers go
//!   back to a [`BufferPool`] whenever it has nothing to read), only its
//!   task, its epoll registration and its input's unfinished line or
//!   frame.
//! - **Pacing.** While a follower that reads at full speed lags in a burst,
//!   readers store in steps and wait between them, within the
//!   `--follower-pacing` budget ([`super::pace`]): the producer's pipe
//!   holds its output meanwhile.
//! - **Nothing is lost at the end.** At end of file, and at shutdown, the
//!   input stores what it holds (an unfinished line included) before the
//!   task ends. (A read on the blocking pool that blocks forever, on a
//!   device that epoll refuses and that never returns, would hold that
//!   up; regular files and `/dev/zero` do not block.)

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::lines::BufferPool;
use super::pipeline::{Limiter, Pipeline};
use crate::entry::Level;
use crate::ring::{OriginHandle, Span};

/// Fds read on the blocking pool at once (fds epoll refuses).
pub const BLOCKING_READERS: usize = 8;

/// Bytes per second read from an fd that epoll refuses and that is not a
/// regular file (see the module doc). 1 MiB/s is about a thousand
/// full-length lines a second: more than any real device logs, little CPU.
pub const DEVICE_READ_RATE: u64 = 1 << 20;

/// A blocking-pool reader gives its turn back after this many reads or
/// this long, whichever comes first.
const SLICE_READS: usize = 32;
const SLICE_TIME: Duration = Duration::from_millis(5);

/// What one read completed: entries of one origin, as spans over a buffer
/// the input owns.
pub struct Chunk<'a> {
    pub origin: &'a OriginHandle,
    pub limiter: Option<&'a mut Limiter>,
    pub buf: &'a [u8],
    pub spans: &'a [Span],
}

/// What a read error means to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The input dealt with it (e.g. `/dev/kmsg`'s `EPIPE` after an
    /// overrun); read on.
    Continue,
    /// Stop reading this fd.
    Stop,
}

/// What the bytes of one fd mean: implemented by each kind of input.
///
/// Reading goes `read_buf` → (the read) → `commit`, repeatedly; `release`
/// when the fd has nothing more for now; `finish` once at the end.
pub trait FdInput: Send + 'static {
    /// A name for messages (the source name).
    fn name(&self) -> &str;

    /// Where the next read goes: at least a few KiB. The input takes a
    /// buffer from `pool` when it holds none.
    fn read_buf(&mut self, pool: &BufferPool) -> &mut [u8];

    /// Takes in the `n` bytes just read into [`read_buf`](Self::read_buf)
    /// and returns the entries they complete, if any.
    fn commit(&mut self, n: usize) -> Option<Chunk<'_>>;

    /// At the end (end of file, an error, shutdown): the entries the input
    /// still holds (an unfinished line); called again after each is stored,
    /// until it returns `None`, so the input can report what it must after
    /// its last entries.
    fn finish(&mut self, pipeline: &Pipeline) -> Option<Chunk<'_>>;

    /// The fd has nothing more to read for now: give the read buffer back
    /// to `pool`, keeping only what is unfinished.
    fn release(&mut self, pool: &BufferPool);

    /// A read failed with `e` (not `EINTR` or `EAGAIN`).
    fn on_error(&mut self, _e: &io::Error) -> OnError {
        OnError::Stop
    }

    /// When [`on_timer`](Self::on_timer) should run next, if ever (a rate
    /// limit's window end).
    fn timer(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _pipeline: &Pipeline) {}
}

/// What the readers of one source share: the pipeline they store through,
/// their buffer pool, the blocking pool's turns, the count of open fds,
/// and the shutdown signal.
pub struct FdReaders {
    pipeline: Pipeline,
    pool: BufferPool,
    blocking: Semaphore,
    active: AtomicUsize,
    shutdown: CancellationToken,
}

impl FdReaders {
    /// Readers storing through `pipeline`, with read buffers of
    /// `buffer_len` bytes (at most `keep` kept free for reuse).
    pub fn new(
        pipeline: Pipeline,
        buffer_len: usize,
        keep: usize,
        shutdown: CancellationToken,
    ) -> Arc<FdReaders> {
        Arc::new(FdReaders {
            pipeline,
            pool: BufferPool::new(buffer_len, keep),
            blocking: Semaphore::new(BLOCKING_READERS),
            active: AtomicUsize::new(0),
            shutdown,
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Fds being read now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Reads `fd` to its end (or shutdown) as `input`; the future is what a
    /// source spawns per fd. The fd counts as [`active`](Self::active) from
    /// now until the future ends or is dropped.
    pub fn read(
        self: &Arc<Self>,
        fd: OwnedFd,
        input: impl FdInput,
    ) -> impl Future<Output = ()> + Send + 'static {
        let open = Open::new(self);
        read_fd(open, fd, input)
    }
}

/// Counts an fd as open from its start until its task ends (or is dropped
/// unpolled).
struct Open(Arc<FdReaders>);

impl Open {
    fn new(readers: &Arc<FdReaders>) -> Open {
        readers.active.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(readers))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How reading an fd stopped.
enum End {
    Eof,
    Shutdown,
    Failed(io::Error),
}

/// Reads one fd until end of file, error or shutdown.
///
/// Every idle fd is one of these futures, so its size matters: the rare
/// paths are boxed, and nothing is kept twice across an await.
async fn read_fd<I: FdInput>(open: Open, fd: OwnedFd, mut input: I) {
    let readers = &open.0;
    if let Err(e) = set_nonblocking(&fd, true) {
        readers.pipeline.notice(Level::Error, || {
            format!(
                "refused an fd of source {:?}: cannot make it non-blocking: {e}",
                input.name()
            )
        });
        return;
    }
    let fd = match watch(fd) {
        Ok(fd) => fd,
        Err(refused) => {
            let (fd, e) = refused.into_parts();
            Box::pin(read_unwatchable(readers, fd, e, input)).await;
            return;
        }
    };
    let end = read_async(readers, &fd, &mut input).await;
    drop(fd);
    end_fd(readers, Some(input), end);
}

/// An fd epoll refused: regular files and some devices (EPERM) are always
/// "ready", so they are read with plain blocking reads in turns.
async fn read_unwatchable<I: FdInput>(
    readers: &Arc<FdReaders>,
    fd: OwnedFd,
    e: io::Error,
    input: I,
) {
    let (input, end) = if e.raw_os_error() != Some(Errno::PERM.raw_os_error()) {
        (Some(input), End::Failed(e))
    } else {
        match set_nonblocking(&fd, false) {
            Ok(()) => read_blocking(readers, fd, input).await,
            Err(e) => (Some(input), End::Failed(e)),
        }
    };
    end_fd(readers, input, end);
}

/// Stores what an input has left and says why it stopped, if not at end
/// of file or shutdown.
fn end_fd<I: FdInput>(readers: &FdReaders, input: Option<I>, end: End) {
    let Some(mut input) = input else {
        if let End::Failed(e) = end {
            readers
                .pipeline
                .notice(Level::Warning, || format!("stopped reading an fd: {e}"));
        }
        return;
    };
    if let End::Failed(e) = &end {
        readers.pipeline.notice(Level::Warning, || {
            format!("stopped reading an fd of source {:?}: {e}", input.name())
        });
    }
    while let Some(chunk) = input.finish(&readers.pipeline) {
        store(&readers.pipeline, chunk);
    }
    input.release(&readers.pool);
}

fn store(pipeline: &Pipeline, chunk: Chunk<'_>) {
    if !chunk.spans.is_empty() {
        pipeline.store(chunk.origin, chunk.limiter, chunk.buf, chunk.spans);
    }
}

/// Registers an fd with tokio's epoll for reads.
///
/// tokio 1.54 deprecated its safe constructors (tokio PR 8587) because a
/// `T: AsRawFd` could close or swap its fd while registered. An `OwnedFd`
/// cannot: the `AsyncFd` owns it, so it stays open and the same until the
/// registration is dropped, which is exactly the contract of the `unsafe`
/// replacement. Using the deprecated safe wrapper keeps `unsafe` out of
/// this module.
#[allow(deprecated)]
fn watch(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, tokio::io::unix::AsyncFdRegisterError<OwnedFd>> {
    AsyncFd::try_with_interest(fd, Interest::READABLE)
}

pub(crate) fn set_nonblocking(fd: &OwnedFd, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(fd)?;
    let want = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if want != flags {
        fcntl_setfl(fd, want)?;
    }
    Ok(())
}

/// What woke a waiting reader.
enum Wake<'a> {
    Shutdown,
    /// The input's timer (a rate limit's window end).
    Timer,
    Ready(io::Result<tokio::io::unix::AsyncFdReadyGuard<'a, OwnedFd>>),
}

/// Reads a pollable fd as readiness comes, one chunk per turn.
async fn read_async<I: FdInput>(readers: &FdReaders, fd: &AsyncFd<OwnedFd>, input: &mut I) -> End {
    let pipeline = &readers.pipeline;
    // One wait for all three wake-ups, hand-polled rather than a `select!`
    // per turn: this future is most of an idle reader's memory. The
    // readiness waker lives in the fd's registration (`poll_read_ready`),
    // and the timer is boxed and exists only while due.
    let mut cancelled = std::pin::pin!(readers.shutdown.cancelled());
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        pipeline.pacer().admit().await;
        // The timer follows the input's deadline, which a read may have
        // moved on.
        let due = input.timer().map(tokio::time::Instant::from);
        match (due, &mut timer) {
            (None, _) => timer = None,
            (Some(at), Some(t)) => {
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
            }
            (Some(at), None) => timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        let wake = std::future::poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if let Some(t) = &mut timer {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            fd.poll_read_ready(cx).map(Wake::Ready)
        })
        .await;
        let mut guard = match wake {
            Wake::Shutdown => return End::Shutdown,
            Wake::Timer => {
                timer = None;
                input.on_timer(pipeline);
                continue;
            }
            Wake::Ready(Ok(guard)) => guard,
            Wake::Ready(Err(e)) => return End::Failed(e),
        };
        let mut room = 0;
        let read = guard.try_io(|fd| {
            let buf = input.read_buf(&readers.pool);
            room = buf.len();
            rustix::io::read(fd.get_ref(), buf).map_err(io::Error::from)
        });
        drop(guard);
        match read {
            // Nothing more for now: an idle reader holds no buffer.
            Err(_would_block) => input.release(&readers.pool),
            Ok(Ok(0)) => return End::Eof,
            Ok(Ok(n)) => {
                if let Some(chunk) = input.commit(n) {
                    if pipeline.pacer().engaged() {
                        // Boxed: an idle reader's future must stay small.
                        Box::pin(pipeline.store_paced(
                            chunk.origin,
                            chunk.limiter,
                            chunk.buf,
                            chunk.spans,
                        ))
                        .await;
                    } else {
                        store(pipeline, chunk);
                    }
                }
                // A full buffer means more is waiting: let the other readers
                // have a turn first. A short read drained the fd, and a
                // yield then would only cost the follower woken by these
                // lines a trip through the scheduler's deferred queue.
                if n == room {
                    tokio::task::yield_now().await;
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => {
                if input.on_error(&e) == OnError::Stop {
                    return End::Failed(e);
                }
            }
        }
    }
}

/// Reads an fd epoll refuses on the blocking pool, in slices of at most
/// [`SLICE_READS`] reads or [`SLICE_TIME`], taking turns with the others.
/// The input moves to the blocking thread for each slice and comes back
/// with it; it is lost only if that thread panics.
async fn read_blocking<I: FdInput>(
    readers: &Arc<FdReaders>,
    fd: OwnedFd,
    input: I,
) -> (Option<I>, End) {
    let capped = rustix::fs::fstat(&fd)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        })
        .unwrap_or(true);
    // A capped fd reads one buffer per turn, then waits until its byte
    // budget allows the next.
    let reads_per_slice = if capped { 1 } else { SLICE_READS };
    let started = Instant::now();
    let mut total: u64 = 0;
    let mut state = (input, fd);
    loop {
        let permit = tokio::select! {
            biased;
            _ = readers.shutdown.cancelled() => return (Some(state.0), End::Shutdown),
            permit = readers.blocking.acquire() => permit.expect("the semaphore is never closed"),
        };
        let slice_readers = Arc::clone(readers);
        let job = tokio::task::spawn_blocking(move || {
            let (mut input, fd) = state;
            let (end, bytes) = read_slice(&slice_readers, &fd, &mut input, reads_per_slice);
            ((input, fd), (end, bytes))
        });
        let (back, (end, bytes)) = match job.await {
            Ok(back) => back,
            Err(e) => {
                let e = io::Error::other(format!("the reader thread failed: {e}"));
                return (None, End::Failed(e));
            }
        };
        drop(permit);
        state = back;
        if let Some(end) = end {
            return (Some(state.0), end);
        }
        total += bytes as u64;
        if capped {
            let due = started + Duration::from_secs_f64(total as f64 / DEVICE_READ_RATE as f64);
            tokio::select! {
                biased;
                _ = readers.shutdown.cancelled() => return (Some(state.0), End::Shutdown),
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        tokio::task::yield_now().await;
    }
}

/// One slice of at most `max_reads` blocking reads: how it ended (`None`
/// when reading should go on) and the bytes read.
fn read_slice<I: FdInput>(
    readers: &FdReaders,
    fd: &OwnedFd,
    input: &mut I,
    max_reads: usize,
) -> (Option<End>, usize) {
    let started = Instant::now();
    let mut end = None;
    let mut bytes = 0;
    for _ in 0..max_reads {
        if readers.shutdown.is_cancelled() {
            end = Some(End::Shutdown);
            break;
        }
        match rustix::io::read(fd, input.read_buf(&readers.pool)) {
            Ok(0) => {
                end = Some(End::Eof);
                break;
            }
            Ok(n) => {
                bytes += n;
                if let Some(chunk) = input.commit(n) {
                    store(&readers.pipeline, chunk);
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => {
                let e = io::Error::from(e);
                if input.on_error(&e) == OnError::Stop {
                    end = Some(End::Failed(e));
                    break;
                }
            }
        }
        if started.elapsed() >= SLICE_TIME {
            break;
        }
    }
    input.release(&readers.pool);
    (end, bytes)
}
