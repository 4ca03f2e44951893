//! Wake-ups for follow streams: who needs to read, and what each may skip.
//!
//! The ring wakes every waiting reader on every append. With a thousand
//! follow streams that each want one source, that is a thousand task
//! wake-ups per append, nearly all of which find nothing: at 10k appends/s
//! the runtime does little else. So follow streams do not wait on the ring.
//! One thread, the hub, follows the ring for all of them; for each batch it
//! sees which origins (source + labels) have new entries and wakes only the
//! streams whose filter accepts one of those origins (decided once per
//! origin and stream, then cached). Each stream still reads the ring
//! through its own cursor: the hub carries no entries, only wake-ups.
//!
//! # What a stream reads
//!
//! After its backlog, a stream reads only what the hub points it to: for
//! each batch, the hub records in each interested stream the seq range
//! from the first to the last entry of its origins, and the stream takes
//! them ([`Registration::take`]) and reads those ranges and nothing else,
//! so it never wades through the entries of sources it does not follow
//! (with a thousand streams that reading would cost more than the
//! deliveries). At most [`MAX_RANGES`] ranges wait per stream; past that
//! the last one is widened, which only makes the stream read a little
//! more.
//!
//! The hub also publishes how far it has looked (`Registration::take`
//! returns it): every seq below it that is in no range holds nothing for
//! the stream. The order of operations makes that safe: the hub records
//! ranges before it raises that mark, and a stream reads the mark before it
//! takes its ranges. So a stream that is not woken is not lapped by the
//! ring either: it has nothing to read, and its keep-alives carry the mark
//! as its position.
//!
//! A stretch the hub could not read (the ring evicted it first) might have
//! held anything, so it becomes a range of every stream: each reads it and
//! reports the gap from its own cursor.
//!
//! The hub runs while there are streams, and stops when the last one ends.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::entry::{EntryRef, Origin};
use crate::filter::Filter;
use crate::ring::{Read, ReadBatch, ReadStatus, Ring, Select};

/// One follow stream's side of the hub.
pub(crate) struct Waiter {
    filter: Arc<Filter>,
    /// Woken when the hub found entries for this stream (a permit is kept
    /// when the stream is not waiting, so no wake-up is lost).
    pub(crate) notify: Notify,
    /// Seq ranges (inclusive) holding entries for this stream, found since
    /// the stream last took them.
    ranges: Mutex<Vec<(u64, u64)>>,
}

/// The most ranges waiting per stream.
pub const MAX_RANGES: usize = 64;

impl Waiter {
    fn push(&self, first: u64, last: u64) {
        let mut r = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        let full = r.len() >= MAX_RANGES;
        match r.last_mut() {
            // Adjacent or overlapping, or no room left: widen the last one.
            Some(prev) if full || first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => r.push((first, last)),
        }
    }
}

/// Identifies an origin in the hub's cursor: the address of the origin the
/// cursor keeps alive for its whole life.
type OriginKey = usize;

struct Registry {
    next_id: u64,
    waiters: HashMap<u64, Arc<Waiter>>,
    /// Per origin, the streams whose filter accepts it. Cleared whenever a
    /// stream comes or goes, and rebuilt as origins show up.
    by_origin: HashMap<OriginKey, Vec<Arc<Waiter>>>,
    /// Whether the hub thread runs (changed under this lock only).
    running: bool,
}

/// The wake-up dispatcher of one HTTP server.
pub(crate) struct Hub {
    ring: Arc<Ring>,
    shutdown: CancellationToken,
    registry: Mutex<Registry>,
    /// Every seq below this was looked at by the hub (or reported to every
    /// stream as possibly holding entries for it).
    scanned: AtomicU64,
}

/// A stream's registration; unregisters when dropped.
pub(crate) struct Registration {
    hub: Arc<Hub>,
    id: u64,
    pub(crate) waiter: Arc<Waiter>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = self.hub.lock();
        r.waiters.remove(&self.id);
        r.by_origin.clear();
    }
}

impl Registration {
    /// Takes the ranges recorded for this stream (appended to `into`) and
    /// returns the hub's mark: below it, nothing for this stream lies
    /// outside the ranges taken now or before.
    pub(crate) fn take(&self, into: &mut Vec<(u64, u64)>) -> u64 {
        let scanned = self.hub.scanned.load(Ordering::Acquire);
        let mut r = self.waiter.ranges.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut r);
        scanned
    }
}

impl Hub {
    pub(crate) fn new(ring: Arc<Ring>, shutdown: CancellationToken) -> Arc<Hub> {
        Arc::new(Hub {
            scanned: AtomicU64::new(ring.published_seq()),
            ring,
            shutdown,
            registry: Mutex::new(Registry {
                next_id: 0,
                waiters: HashMap::new(),
                by_origin: HashMap::new(),
                running: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream with `filter`, and starts the hub if it is not
    /// running. The stream must then read from its start to the end of
    /// the ring on its own (the hub may have looked at those entries before
    /// it knew the stream), and from there on the ranges it is given.
    /// Fails only when the hub's thread cannot be started.
    pub(crate) fn register(self: &Arc<Hub>, filter: Arc<Filter>) -> std::io::Result<Registration> {
        let waiter = Arc::new(Waiter {
            filter,
            notify: Notify::new(),
            ranges: Mutex::new(Vec::new()),
        });
        let mut r = self.lock();
        if !r.running {
            // Start where the ring is now: every stream reads from its own
            // start to the end of the ring before it relies on the hub.
            self.scanned
                .store(self.ring.published_seq(), Ordering::Release);
            let hub = self.clone();
            std::thread::Builder::new()
                .name("ringtail-http-hub".into())
                .spawn(move || hub.run())?;
            r.running = true;
        }
        let id = r.next_id;
        r.next_id += 1;
        r.waiters.insert(id, waiter.clone());
        r.by_origin.clear();
        Ok(Registration {
            hub: self.clone(),
            id,
            waiter,
        })
    }

    /// The hub thread: follows the ring, wakes the streams that have
    /// something to read, stops when there are none.
    fn run(self: Arc<Hub>) {
        let seen = Seen::default();
        let ring = self.ring.clone();
        let mut cursor = ring.cursor(self.scanned.load(Ordering::Acquire), &seen);
        let mut batch = ReadBatch::new();
        let mut wake: Vec<Arc<Waiter>> = Vec::new();
        loop {
            let status = cursor.read(&mut batch, 4096);
            {
                let mut r = self.lock();
                if r.waiters.is_empty() || self.shutdown.is_cancelled() {
                    r.running = false;
                    return;
                }
                let r = &mut *r;
                for item in batch.iter() {
                    if let Read::Gap { first_seq, missed } = item {
                        // Unknown entries: everybody reads (and reports) them.
                        for w in r.waiters.values() {
                            w.push(first_seq, first_seq + missed - 1);
                            wake.push(w.clone());
                        }
                    }
                }
                seen.in_batch.borrow_mut().clear();
                seen.last.set(None);
                for b in seen.batch.borrow_mut().drain(..) {
                    let waiters = r.by_origin.entry(b.key).or_insert_with(|| {
                        r.waiters
                            .values()
                            .filter(|w| w.filter.origin(&b.origin))
                            .cloned()
                            .collect()
                    });
                    for w in waiters.iter() {
                        w.push(b.first_seq, b.last_seq);
                        wake.push(w.clone());
                    }
                }
            }
            // Ranges first, then the mark (see the module docs).
            self.scanned.store(cursor.position(), Ordering::Release);
            for w in wake.drain(..) {
                w.notify.notify_one();
            }
            if status == ReadStatus::CaughtUp {
                // A timeout so that shutdown and the last stream leaving
                // are noticed even when nothing is appended.
                cursor.wait_blocking(Duration::from_millis(250));
            }
        }
    }
}

/// An origin with entries in the batch the hub just read.
struct InBatch {
    key: OriginKey,
    origin: Arc<Origin>,
    first_seq: u64,
    last_seq: u64,
}

/// The hub's [`Select`]: notes, per batch, each origin with entries and
/// the seqs of its first and last entry, and keeps no entry (so batches
/// stay empty).
#[derive(Default)]
struct Seen {
    /// Each origin of the current batch, in order of first appearance.
    batch: RefCell<Vec<InBatch>>,
    /// Where each origin of the batch is in `batch`, and the last one met
    /// (runs of one origin are the common case).
    in_batch: RefCell<HashMap<OriginKey, usize>>,
    last: Cell<Option<(OriginKey, usize)>>,
    /// Origins met so far.
    known: RefCell<HashMap<OriginKey, Arc<Origin>>>,
}

impl Select for Seen {
    fn entry(&self, e: &EntryRef<'_>) -> bool {
        let key = e.origin as *const Origin as OriginKey;
        let mut batch = self.batch.borrow_mut();
        let index = match self.last.get() {
            Some((k, i)) if k == key => i,
            _ => {
                let next = batch.len();
                let i = *self.in_batch.borrow_mut().entry(key).or_insert(next);
                if i == next {
                    let origin = self
                        .known
                        .borrow_mut()
                        .entry(key)
                        .or_insert_with(|| Arc::new(e.origin.clone()))
                        .clone();
                    batch.push(InBatch {
                        key,
                        origin,
                        first_seq: e.seq,
                        last_seq: e.seq,
                    });
                }
                self.last.set(Some((key, i)));
                i
            }
        };
        batch[index].last_seq = e.seq;
        false
    }
}
