//! Reading the ring for a query: which seqs cover a time range, the one
//! function through which the engine reads an entry's timestamp, the
//! per-stream label cache, and the (parallel) scan every metric and
//! metadata query runs.
//!
//! Time and order: an entry's LogQL timestamp is [`entry_ts`]. Relayed
//! entries may carry an original (event) time older than their receive
//! time, so timestamps need not grow with seq; what the ring guarantees is
//! that event time <= receive time <= event time + [`max_event_lag`] (the
//! largest relay lag the ring has seen, kept in its header).
//! [`seq_range`] turns a time range into the seqs that can hold it under
//! that bound, and no caller assumes timestamps sorted in seq order:
//! metric buckets are computed from each entry's own timestamp, and log
//! queries order what they keep.
//!
//! How the work is bounded: a scan reads its seq range once, whatever the
//! number of steps; ranges of at least [`PARALLEL_MIN`] entries are split
//! between threads (at most four), one cursor and accumulator each.

use std::ops::Range;
use std::thread;

use rustc_hash::FxHashMap;

use crate::entry::{EntryRef, Flags, Origin};
use crate::filter::{entry_labels, Filter};
use crate::ring::{Read, ReadBatch, ReadStatus, Select, Snapshot};

/// A label set, sorted by name.
pub type Labels = Vec<(String, String)>;

/// The most an entry's LogQL timestamp may lie before its receive time in
/// `snap`: 0 unless relayed entries (Loki push, syslog, Docker) kept an
/// original time older than their arrival.
#[inline]
pub fn max_event_lag(snap: &Snapshot<'_>) -> u64 {
    snap.max_relay_lag()
}

/// The timestamp LogQL sees for an entry: its event time (the producer's
/// own time for relayed entries, as Loki would have stored it; the receive
/// time otherwise), used for its place in streams, the metric window it
/// counts in, and `__timestamp__` in templates.
#[inline]
pub fn entry_ts(e: &EntryRef<'_>) -> u64 {
    e.event_time()
}

/// The ring's own order: the receive time, non-decreasing in seq order.
/// Only for deciding where reading can stop, never as an entry's time.
#[inline]
pub fn ring_time(e: &EntryRef<'_>) -> u64 {
    e.time
}

/// The seqs of `snap` that can hold entries with [`entry_ts`] in
/// `[start, end)`: receive times in `[start, end + max_event_lag)`.
pub fn seq_range(snap: &Snapshot<'_>, start: u64, end: u64) -> Range<u64> {
    snap.seek_time(start)..snap.seek_time(end.saturating_add(max_event_lag(snap)))
}

/// The stream labels of an entry: [`entry_labels`], owned.
pub fn stream_labels(origin: &Origin, flags: Flags) -> Labels {
    entry_labels(origin, flags)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Stream label sets by (origin, flags), each computed once per scan.
#[derive(Default)]
pub struct Streams {
    keys: KeyIndex,
    pub labels: Vec<Labels>,
}

impl Streams {
    /// The index of the entry's stream in [`labels`](Self::labels).
    #[inline]
    pub fn index(&mut self, e: &EntryRef<'_>) -> usize {
        let Streams { keys, labels } = self;
        keys.get(e, || {
            labels.push(stream_labels(e.origin, e.flags));
            (labels.len() - 1) as u32
        }) as usize
    }
}

/// Maps an entry's (origin, stream and level bits) to a small index; a
/// small direct-mapped cache in front of the map answers most entries
/// without hashing (a source's lines come in runs, with a few flag
/// combinations).
///
/// The origin is keyed by address: a cursor keeps each origin it resolved
/// alive (and at the same address) for its whole life, so the address
/// identifies the origin within one scan.
pub struct KeyIndex {
    map: FxHashMap<(usize, u8), u32>,
    /// `(address, bits, index)`; address 0 is never an origin's.
    cache: [(usize, u8, u32); KEY_CACHE],
}

const KEY_CACHE: usize = 16;

impl Default for KeyIndex {
    fn default() -> KeyIndex {
        KeyIndex {
            map: FxHashMap::default(),
            cache: [(0, 0, 0); KEY_CACHE],
        }
    }
}

impl KeyIndex {
    /// The index of an (origin, flags) already seen, if any.
    #[inline]
    pub fn get_cached(&mut self, e: &EntryRef<'_>) -> Option<u32> {
        let addr = e.origin as *const Origin as usize;
        let bits = e.flags.bits() >> 2;
        let slot = ((addr >> 4) ^ (addr >> 9) ^ (bits as usize).wrapping_mul(7)) % KEY_CACHE;
        let c = self.cache[slot];
        if c.0 == addr && c.1 == bits {
            return Some(c.2);
        }
        let idx = *self.map.get(&(addr, bits))?;
        self.cache[slot] = (addr, bits, idx);
        Some(idx)
    }

    #[inline]
    pub fn get(&mut self, e: &EntryRef<'_>, add: impl FnOnce() -> u32) -> u32 {
        let addr = e.origin as *const Origin as usize;
        let bits = e.flags.bits() >> 2;
        // Origins are at least 8-byte aligned; mix in the flag bits.
        let slot = ((addr >> 4) ^ (addr >> 9) ^ (bits as usize).wrapping_mul(7)) % KEY_CACHE;
        let c = self.cache[slot];
        if c.0 == addr && c.1 == bits {
            return c.2;
        }
        let idx = match self.map.get(&(addr, bits)) {
            Some(&i) => i,
            None => {
                let i = add();
                self.map.insert((addr, bits), i);
                i
            }
        };
        self.cache[slot] = (addr, bits, idx);
        idx
    }
}

/// A filter's origin decisions alone, for a scan whose filter decides
/// nothing per entry: the reader then skips the per-entry call.
struct OriginOnly<'a>(&'a Filter);

impl Select for OriginOnly<'_> {
    fn origin(&self, origin: &Origin) -> bool {
        self.0.origin(origin)
    }

    #[inline]
    fn entry(&self, _: &EntryRef<'_>) -> bool {
        true
    }
}

/// Runs `scan` with the lightest selection that is equivalent to `filter`.
pub fn scan_filter<A, I, V>(
    snap: Snapshot<'_>,
    from: u64,
    to: u64,
    filter: &Filter,
    init: I,
    visit: V,
) -> Vec<A>
where
    A: Send,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, &EntryRef<'_>) + Sync,
{
    if filter.decides_by_origin() {
        scan(snap, from, to, &OriginOnly(filter), init, visit)
    } else {
        scan(snap, from, to, filter, init, visit)
    }
}

/// Below this many entries a scan stays on one thread (few in unit tests,
/// so that they cover the split between threads).
pub const PARALLEL_MIN: u64 = if cfg!(test) { 64 } else { 200_000 };
/// Entries per read.
pub const READ_BATCH: u64 = 4096;

/// Reads seqs `from..to` of the snapshot once, calling `visit` with every
/// entry `select` takes; long ranges are split between threads, each with
/// its own accumulator. Entries the ring evicted meanwhile are skipped.
pub fn scan<A, S, I, V>(
    snap: Snapshot<'_>,
    from: u64,
    to: u64,
    select: &S,
    init: I,
    visit: V,
) -> Vec<A>
where
    A: Send,
    S: Select + Sync,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, &EntryRef<'_>) + Sync,
{
    let total = to.saturating_sub(from);
    let threads = if total >= PARALLEL_MIN {
        thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4) as u64
    } else {
        1
    };
    if threads <= 1 {
        let mut acc = init();
        scan_part(snap, from, to, select, &mut acc, &visit);
        return vec![acc];
    }
    let chunk = total.div_ceil(threads);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (a, b) = (from + i * chunk, (from + (i + 1) * chunk).min(to));
                let (init, visit) = (&init, &visit);
                scope.spawn(move || {
                    let mut acc = init();
                    scan_part(snap, a, b, select, &mut acc, visit);
                    acc
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scan thread panicked"))
            .collect()
    })
}

fn scan_part<A, S: Select>(
    snap: Snapshot<'_>,
    from: u64,
    to: u64,
    select: &S,
    acc: &mut A,
    visit: &impl Fn(&mut A, &EntryRef<'_>),
) {
    let mut cursor = snap.cursor_from(from, select);
    let mut batch = ReadBatch::new();
    while cursor.position() < to {
        let max = (to - cursor.position()).min(READ_BATCH) as usize;
        if cursor.read(&mut batch, max) != ReadStatus::More {
            break;
        }
        for r in batch.iter() {
            // A cursor that was lapped jumps ahead and may read past `to`:
            // those entries belong to the next part.
            if let Read::Entry(e) = r {
                if e.seq < to {
                    visit(acc, &e);
                }
            }
        }
    }
}
