//! The one follow loop behind every live reader the daemon serves: the
//! query socket's followers ([`super::memlogq`]), HTTP follow streams
//! ([`super::http`]'s `/api/v1/follow`) and Loki tail connections
//! ([`super::loki`]'s `/loki/api/v1/tail`).
//!
//! Each of them reads the ring through its own cursor, renders what it read
//! in its own format, sends it its own way, and waits its own way (a query
//! socket client may hang up, an HTTP stream sends keep-alives, a tail
//! connection reports dropped entries). What they share is here, once:
//!
//! - **Read, render, flush, wait, in that order.** [`run`] reads a batch of
//!   at most [`Reader::room`] entries, hands it to [`Reader::render`], and
//!   flushes once [`Reader::buffered`] reaches [`Reader::flush_at`] or the
//!   cursor is caught up, so a follower that keeps up sends every entry
//!   the moment it reads it, and one with a backlog sends large chunks.
//!   Caught up, it calls [`Reader::caught_up`] (the moment to report gaps
//!   to the self log: never in the middle of a read, since a self-log entry
//!   is itself appended to the ring), flushes, and waits for
//!   [`Reader::wait`], which says what to read next.
//! - **An end that is said once.** A reader that has sent all it was asked
//!   for (a `limit`) says so from `render` ([`Flow::Done`]): the loop
//!   flushes and returns. A reader whose client is gone returns [`Gone`]
//!   from `flush` or `wait`, and the loop returns it at once.
//! - **Fair turns.** Between reads of a backlog the loop gives the runtime
//!   a chance to run other tasks (`consume_budget`), so a reader with a
//!   long backlog does not hold a worker thread while writers append.
//! - **Bounded memory.** The loop holds one [`ReadBatch`] (at most `room`
//!   entries); a reader's own buffer is flushed at `flush_at`.
//!
//! The forwarders' follower (`crate::sinks::follower`) has a different
//! contract (acknowledged deliveries, retries from the ring, cursor files)
//! and its own loop; its wait and read steps are the same calls
//! ([`Cursor::read`], [`Cursor::wait`]).

use std::future::Future;

use crate::filter::Filter;
use crate::ring::{Cursor, Read, ReadBatch, ReadStatus, Select, Snapshot};

/// The reader's client went away, or the daemon is stopping: the loop
/// ends at once, sending nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone;

/// Whether a reader wants more after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on reading.
    More,
    /// It has sent all it was asked for: flush and end.
    Done,
}

/// What to read after a wake-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Everything published past the cursor, up to caught up.
    All,
    /// Only these inclusive seq ranges, in order (a reader that knows
    /// where its entries are, such as an HTTP stream told by its hub);
    /// stretches between them hold nothing for it.
    Ranges(Vec<(u64, u64)>),
}

/// A gap this short between the position and the next range is read
/// through rather than skipped with a seek: the cursor keeps what it
/// learned about origins either way, but a short read is cheaper than a
/// second read call.
const READ_THROUGH: u64 = 64;

/// One live reader: how it renders, sends and waits. See the module docs.
pub trait Reader<S: Select + Sync>: Send {
    /// Renders one batch (entries and gaps in seq order) into the reader's
    /// buffer.
    fn render(&mut self, batch: &ReadBatch) -> Flow;

    /// How much is rendered and not yet sent, in the unit of
    /// [`flush_at`](Self::flush_at).
    fn buffered(&self) -> usize;

    /// A flush is due once [`buffered`](Self::buffered) reaches this.
    fn flush_at(&self) -> usize;

    /// The most entries the next read may take.
    fn room(&self) -> usize;

    /// Sends what is rendered (nothing when nothing is). `position` is the
    /// cursor's position: everything before it is now with the client.
    fn flush(&mut self, position: u64) -> impl Future<Output = Result<(), Gone>> + Send;

    /// The cursor is caught up and everything read was rendered; called
    /// before the flush that precedes a wait.
    fn caught_up(&mut self, _position: u64) {}

    /// Waits until there may be something to read, or the client goes
    /// away.
    fn wait(&mut self, cursor: &Cursor<'_, S>) -> impl Future<Output = Result<Wake, Gone>> + Send;
}

/// Follows the ring from `cursor`'s position with `reader` until the
/// reader is done ([`Flow::Done`], then `Ok`) or gone ([`Gone`]).
pub async fn run<S, R>(reader: &mut R, cursor: &mut Cursor<'_, S>) -> Result<(), Gone>
where
    S: Select + Send + Sync,
    R: Reader<S>,
{
    let mut batch = ReadBatch::new();
    let mut wake = Wake::All;
    loop {
        match wake {
            Wake::All => {
                if read_to(reader, cursor, &mut batch, u64::MAX).await? == Flow::Done {
                    return Ok(());
                }
            }
            Wake::Ranges(ranges) => {
                for (first, last) in ranges {
                    if last < cursor.position() {
                        continue;
                    }
                    if first > cursor.position().saturating_add(READ_THROUGH) {
                        cursor.seek(first);
                    }
                    if read_to(reader, cursor, &mut batch, last).await? == Flow::Done {
                        return Ok(());
                    }
                }
            }
        }
        reader.caught_up(cursor.position());
        reader.flush(cursor.position()).await?;
        wake = reader.wait(cursor).await?;
    }
}

/// Reads up to and including seq `last` (or until caught up), rendering
/// and flushing as it goes. Returns [`Flow::Done`] when the reader is done
/// (everything flushed).
async fn read_to<S, R>(
    reader: &mut R,
    cursor: &mut Cursor<'_, S>,
    batch: &mut ReadBatch,
    last: u64,
) -> Result<Flow, Gone>
where
    S: Select + Send + Sync,
    R: Reader<S>,
{
    while cursor.position() <= last {
        let room = (last - cursor.position())
            .saturating_add(1)
            .min(reader.room().max(1) as u64) as usize;
        let status = cursor.read(batch, room);
        if reader.render(batch) == Flow::Done {
            reader.flush(cursor.position()).await?;
            return Ok(Flow::Done);
        }
        if status == ReadStatus::CaughtUp {
            break;
        }
        if reader.buffered() >= reader.flush_at() {
            reader.flush(cursor.position()).await?;
        }
        // More is waiting: let the runtime's other tasks run in between.
        tokio::task::consume_budget().await;
    }
    Ok(Flow::More)
}

/// The first seq of the last `n` entries at or after `floor` that pass
/// `filter` (or `floor` when there are fewer): where a reader asking for a
/// tail of `n` entries starts.
pub(crate) fn tail_start(snap: &Snapshot<'_>, filter: &Filter, n: u64, floor: u64) -> u64 {
    /// Entries per backwards read.
    const STEP: usize = 4096;
    if n == 0 {
        return snap.end();
    }
    let mut rev = snap.rev(filter);
    let mut batch = ReadBatch::new();
    let mut seen = 0;
    loop {
        if rev.read(&mut batch, STEP) == ReadStatus::End {
            return floor;
        }
        for item in batch.iter() {
            if let Read::Entry(e) = item {
                if e.seq < floor {
                    return floor;
                }
                seen += 1;
                if seen == n {
                    return e.seq;
                }
            }
        }
        if rev.position() <= floor {
            return floor;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::entry::{Flags, Origin};
    use crate::ring::{OriginHandle, Ring, RingConfig};

    /// A reader that collects seqs, with a limit, woken by the ring.
    struct Collect {
        seqs: Vec<u64>,
        rendered: usize,
        flushed: Vec<usize>,
        left: usize,
        waits: usize,
        /// Appended to the ring by another task at the first wait.
        feed: Option<(Arc<Ring>, OriginHandle)>,
    }

    impl<S: Select + Send + Sync> Reader<S> for Collect {
        fn render(&mut self, batch: &ReadBatch) -> Flow {
            for item in batch.iter() {
                if let Read::Entry(e) = item {
                    self.seqs.push(e.seq);
                    self.rendered += 1;
                    self.left -= 1;
                    if self.left == 0 {
                        return Flow::Done;
                    }
                }
            }
            Flow::More
        }
        fn buffered(&self) -> usize {
            self.rendered
        }
        fn flush_at(&self) -> usize {
            3
        }
        fn room(&self) -> usize {
            2
        }
        async fn flush(&mut self, _position: u64) -> Result<(), Gone> {
            if self.rendered > 0 {
                self.flushed.push(std::mem::take(&mut self.rendered));
            }
            Ok(())
        }
        async fn wait(&mut self, cursor: &Cursor<'_, S>) -> Result<Wake, Gone> {
            self.waits += 1;
            if self.waits > 1 {
                return Err(Gone);
            }
            if let Some((ring, origin)) = self.feed.take() {
                tokio::spawn(async move { ring.append(&origin, Flags::default(), b"b") });
            }
            cursor.wait().await;
            Ok(Wake::All)
        }
    }

    fn ring() -> (Arc<Ring>, OriginHandle) {
        let ring = Arc::new(Ring::open(&RingConfig::new(64)).unwrap());
        let origin = ring.origin(Origin::new("t")).unwrap();
        (ring, origin)
    }

    #[tokio::test]
    async fn reads_renders_flushes_in_chunks_and_stops_at_the_limit() {
        let (ring, origin) = ring();
        for i in 0..7 {
            ring.append(&origin, Flags::default(), format!("m{i}").as_bytes());
        }
        let mut r = Collect {
            seqs: Vec::new(),
            rendered: 0,
            flushed: Vec::new(),
            left: 5,
            waits: 0,
            feed: None,
        };
        let mut cursor = ring.cursor(ring.oldest_seq(), crate::ring::All);
        assert_eq!(run(&mut r, &mut cursor).await, Ok(()));
        let first = ring.oldest_seq();
        assert_eq!(r.seqs, (first..first + 5).collect::<Vec<_>>());
        // Two-entry reads; a flush once 3 are buffered, and at the end.
        assert_eq!(r.flushed, [4, 1]);
    }

    #[tokio::test]
    async fn caught_up_flushes_then_waits_for_the_next_entry() {
        let (ring, origin) = ring();
        ring.append(&origin, Flags::default(), b"a");
        let mut r = Collect {
            seqs: Vec::new(),
            rendered: 0,
            flushed: Vec::new(),
            left: usize::MAX,
            waits: 0,
            feed: Some((ring.clone(), origin)),
        };
        let mut cursor = ring.cursor(ring.oldest_seq(), crate::ring::All);
        // Ends when the second wait says the client is gone.
        assert_eq!(run(&mut r, &mut cursor).await, Err(Gone));
        assert_eq!(r.seqs.len(), 2);
        assert_eq!(r.flushed, [1, 1]);
    }
}
