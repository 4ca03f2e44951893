//! Reading: snapshots, forward and backward cursors, and follow.
//!
//! Readers never lock and never make a writer wait. A read copies a run of
//! entries into a [`ReadBatch`] with relaxed atomic loads, then (after an
//! acquire fence) loads the claim word once: every entry whose slot or data
//! a writer may have claimed since is dropped from the batch and reported as
//! a [`Read::Gap`] with its exact count. Because a claim always precedes the
//! stores it allows, an entry that passes this check was not touched while
//! it was copied: no torn entry is ever returned.
//!
//! Filters run in two steps: a [`Select`] first decides by origin (cached
//! per origin id, so a source filter costs one comparison per entry and no
//! copy of the message), then by the whole entry once it is known intact.

use std::collections::HashMap;
use std::sync::Arc;

use super::region::{hdr, SLOT_WORDS};
use super::sync::{fence, prefetch, Ordering};
use super::{entry_words, meta_flags, meta_len, meta_origin, meta_stamped, OriginId, Ring};
use crate::entry::{EntryRef, Flags, Origin, SourceTime};

/// Decides which entries a reader wants.
pub trait Select {
    /// Decided once per origin and cached: `false` skips every entry of the
    /// origin without copying its message.
    fn origin(&self, _origin: &Origin) -> bool {
        true
    }

    /// Decided per entry, after the origin passed.
    fn entry(&self, _entry: &EntryRef<'_>) -> bool {
        true
    }

    /// Whether [`entry`](Self::entry) can ever say no; `false` lets readers
    /// skip the per-entry pass altogether.
    fn filters_entries(&self) -> bool {
        true
    }
}

/// Selects every entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct All;

impl Select for All {
    fn filters_entries(&self) -> bool {
        false
    }
}

impl<S: Select + ?Sized> Select for &S {
    fn origin(&self, origin: &Origin) -> bool {
        (**self).origin(origin)
    }
    fn entry(&self, entry: &EntryRef<'_>) -> bool {
        (**self).entry(entry)
    }
    fn filters_entries(&self) -> bool {
        (**self).filters_entries()
    }
}

impl<S: Select + ?Sized> Select for Arc<S> {
    fn origin(&self, origin: &Origin) -> bool {
        (**self).origin(origin)
    }
    fn entry(&self, entry: &EntryRef<'_>) -> bool {
        (**self).entry(entry)
    }
    fn filters_entries(&self) -> bool {
        (**self).filters_entries()
    }
}

/// One thing a reader gets: an entry, or the news that it missed some.
#[derive(Clone, Copy, Debug)]
pub enum Read<'a> {
    Entry(EntryRef<'a>),
    /// `missed` entries from `first_seq` on were evicted (or overwritten
    /// while being copied) before this reader got them.
    Gap {
        first_seq: u64,
        missed: u64,
    },
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Entry {
        seq: u64,
        time: u64,
        /// The stamp word, when `stamped` (see `SourceTime::to_word`).
        stamp: u64,
        stamped: bool,
        flags: u8,
        /// Index into the batch's `origins`.
        origin: u32,
        start: u32,
        len: u32,
    },
    Gap {
        first_seq: u64,
        missed: u64,
    },
}

/// Where a read leaves its entries; reuse one across reads to avoid
/// allocating.
#[derive(Default)]
pub struct ReadBatch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    origins: Vec<Arc<Origin>>,
    filtered: u64,
    /// Bumped on every clear, so cursors know which batch their cached
    /// origin indexes refer to.
    generation: u64,
}

impl ReadBatch {
    pub fn new() -> ReadBatch {
        ReadBatch::default()
    }

    /// Entries and gaps in the order read.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Read<'_>> + '_ {
        self.items.iter().map(move |item| self.view(item))
    }

    fn view(&self, item: &Item) -> Read<'_> {
        match *item {
            Item::Entry {
                seq,
                time,
                stamp,
                stamped,
                flags,
                origin,
                start,
                len,
            } => Read::Entry(EntryRef {
                seq,
                time,
                source_time: if stamped {
                    SourceTime::from_word(stamp)
                } else {
                    SourceTime::None
                },
                origin: &self.origins[origin as usize],
                flags: Flags::from_bits(flags),
                msg: &self.bytes[start as usize..(start + len) as usize],
            }),
            Item::Gap { first_seq, missed } => Read::Gap { first_seq, missed },
        }
    }

    /// Number of entries and gaps.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entries the filter turned down in the last read.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// Entries missed, summed over the gaps in this batch.
    pub fn missed(&self) -> u64 {
        self.items
            .iter()
            .map(|i| match i {
                Item::Gap { missed, .. } => *missed,
                Item::Entry { .. } => 0,
            })
            .sum()
    }

    /// Message bytes held.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
        self.origins.clear();
        self.filtered = 0;
        self.generation += 1;
    }

    fn push_gap(&mut self, at: usize, first_seq: u64, missed: u64) {
        if missed > 0 {
            self.items.insert(at, Item::Gap { first_seq, missed });
        }
    }
}

/// What a read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// The read advanced the position (the batch may still be empty when
    /// the filter turned everything down); read again.
    More,
    /// The reader is at the newest published entry.
    CaughtUp,
    /// The reader reached the end of its snapshot.
    End,
}

struct CachedOrigin {
    origin: Arc<Origin>,
    selected: bool,
    /// Index in the batch of generation `batch_generation`.
    batch_index: u32,
    batch_generation: u64,
}

/// The copy-and-validate machinery shared by forward and backward readers.
struct Copier<S> {
    select: S,
    cache: HashMap<OriginId, CachedOrigin>,
    /// `(index in the range, data position)` of each entry whose position
    /// does not follow from the previous entry's (the first one, and any
    /// read from a slot overwritten under us): with the lengths, enough to
    /// recover every position, at no cost per entry in the common case.
    breaks: Vec<(u32, u64)>,
    /// `(index in the range, data words, SKIPPED or UNRESOLVED)` of each
    /// examined entry that did not become an item.
    others: Vec<(u32, u32, u32)>,
}

/// How far ahead of the entry being copied the reader asks for message
/// words: the copy is bound by memory latency, and the hardware prefetcher
/// alone does not run far enough ahead of a reader that streams two regions
/// (slots and data) at once.
/// 4 KiB: measured on the 1M-line ring, copy passes ran at 61 M entries/s
/// without prefetching, 72 with 1 KiB, 86 with 2 KiB, 94 with 4 KiB and 92
/// with 8 KiB.
const PREFETCH_WORDS: usize = 512;
/// The same for slots, about as many entries ahead as the message words.
const PREFETCH_SLOTS: usize = 32;

/// Marks an examined entry that the origin filter skipped.
const SKIPPED: u32 = u32::MAX;
/// Marks an examined entry whose origin id did not resolve: only possible
/// for an entry that is being evicted, so validation will drop it.
const UNRESOLVED: u32 = u32::MAX - 1;

impl<S: Select> Copier<S> {
    fn new(select: S) -> Copier<S> {
        Copier {
            select,
            cache: HashMap::new(),
            breaks: Vec::new(),
            others: Vec::new(),
        }
    }

    /// The batch index of origin `id`, if resolvable and selected.
    fn origin_index(&mut self, ring: &Ring, id: OriginId, batch: &mut ReadBatch) -> u32 {
        let cached = match self.cache.get_mut(&id) {
            Some(c) => c,
            None => {
                let Some(origin) = ring.origins.resolve(id) else {
                    return UNRESOLVED;
                };
                let selected = self.select.origin(&origin);
                self.cache.entry(id).or_insert(CachedOrigin {
                    origin,
                    selected,
                    batch_index: 0,
                    batch_generation: u64::MAX,
                })
            }
        };
        if !cached.selected {
            return SKIPPED;
        }
        if cached.batch_generation != batch.generation {
            cached.batch_index = batch.origins.len() as u32;
            cached.batch_generation = batch.generation;
            batch.origins.push(cached.origin.clone());
        }
        cached.batch_index
    }

    /// Copies seqs `from..to` into `batch`, validates them, and applies the
    /// entry filter. Returns the first valid seq (`to` if none was): every
    /// seq below it in the range was reported as a gap.
    fn copy(&mut self, ring: &Ring, from: u64, to: u64, batch: &mut ReadBatch) -> u64 {
        let words = ring.region.words();
        let data_at = ring.geometry.data_at();
        let data_words = ring.geometry.data_words as usize;
        let wide = ring.wide_loads;
        let item_base = batch.items.len();
        self.breaks.clear();
        self.others.clear();
        let mut last_origin = (u32::MAX, UNRESOLVED);
        let (mut skipped, mut unresolved) = (0u64, 0u64);
        let slots = ring.geometry.slots as usize;
        let mut slot = (from % ring.geometry.slots) as usize;
        // Data positions of consecutive entries are contiguous, so the
        // word index follows from the previous one without a division.
        let (mut expect_pos, mut expect_index) = (u64::MAX, 0usize);
        let n = (to - from) as usize;
        for k in 0..n {
            let base = ring.geometry.slots_at() + slot * SLOT_WORDS;
            // Only inside the range: past its end are the oldest entries,
            // the next ones writers overwrite, and a line pulled into this
            // core's cache there costs the writer an invalidation.
            if k + PREFETCH_SLOTS < n {
                prefetch(
                    words
                        .as_ptr()
                        .wrapping_add(base + PREFETCH_SLOTS * SLOT_WORDS),
                );
            }
            let time = words[base].load(Ordering::Relaxed);
            let pos = words[base + 1].load(Ordering::Relaxed);
            let meta = words[base + 2].load(Ordering::Relaxed);
            slot += 1;
            if slot == slots {
                slot = 0;
            }
            let id = meta_origin(meta);
            let index = if id == last_origin.0 && last_origin.1 != UNRESOLVED {
                last_origin.1
            } else {
                let index = self.origin_index(ring, id, batch);
                last_origin = (id, index);
                index
            };
            // A slot overwritten under us can hold any length; clamp it so
            // the copy stays in bounds (the entry fails validation anyway).
            let len = meta_len(meta).min(ring.max_entry_len);
            let stamped = meta_stamped(meta);
            let at = if pos == expect_pos {
                expect_index
            } else {
                self.breaks.push((k as u32, pos));
                ring.data_index(pos)
            };
            let next_words = entry_words(len, stamped);
            // Inside the range too, judging its remaining entries by this
            // one's length.
            if (n - k) * next_words as usize > PREFETCH_WORDS {
                prefetch(words.as_ptr().wrapping_add(data_at + at + PREFETCH_WORDS));
            }
            expect_pos = pos.wrapping_add(next_words);
            expect_index = at + next_words as usize;
            if expect_index >= data_words {
                expect_index -= data_words;
            }
            if index >= UNRESOLVED {
                if index == SKIPPED {
                    skipped += 1;
                } else {
                    unresolved += 1;
                }
                self.others.push((k as u32, next_words as u32, index));
                continue;
            }
            let (stamp, msg_at) = if stamped {
                let stamp = words[data_at + at].load(Ordering::Relaxed);
                (stamp, if at + 1 == data_words { 0 } else { at + 1 })
            } else {
                (0, at)
            };
            let start = batch.bytes.len();
            let room = (data_words - msg_at) * 8;
            if len <= room {
                super::copy_words_out(words, data_at + msg_at, len, &mut batch.bytes, wide);
            } else {
                super::copy_words_out(words, data_at + msg_at, room, &mut batch.bytes, wide);
                super::copy_words_out(words, data_at, len - room, &mut batch.bytes, wide);
            }
            batch.items.push(Item::Entry {
                seq: from + k as u64,
                time,
                stamp,
                stamped,
                flags: meta_flags(meta),
                origin: index,
                start: start as u32,
                len: len as u32,
            });
        }
        // Pairs with the release fence writers issue between claiming and
        // storing: if we saw any store of a writer, we see its claim below.
        fence(Ordering::Acquire);
        let (claim_seq, claim_pos) = ring.region.claim().load();
        let valid_seq = ring
            .floor_seq()
            .max(claim_seq.saturating_sub(ring.geometry.slots));
        let valid_pos = claim_pos.saturating_sub(ring.geometry.data_words);
        // The first entry starts the first break. When it is valid (almost
        // always), all are: seqs and data positions both grow, so the
        // invalid ones are a prefix.
        let invalid = match self.breaks.first() {
            None => 0,
            Some(&(_, pos)) if from >= valid_seq && pos >= valid_pos => 0,
            Some(_) => self.first_valid(batch, item_base, from, n, valid_seq, valid_pos),
        };
        // Counted over the invalid prefix only: the totals over all
        // examined entries were kept while copying.
        let (mut prefix_skipped, mut prefix_unresolved) = (0, 0);
        for &(k, _, kind) in &self.others {
            if k as usize >= invalid {
                break;
            }
            match kind {
                SKIPPED => prefix_skipped += 1,
                _ => prefix_unresolved += 1,
            }
        }
        let prefix_items = invalid - (prefix_skipped + prefix_unresolved) as usize;
        batch.items.drain(item_base..item_base + prefix_items);
        // Defensive: a valid entry whose origin did not resolve counts as
        // missed (see `UNRESOLVED`).
        let missed = invalid as u64 + (unresolved - prefix_unresolved);
        batch.filtered += skipped - prefix_skipped;
        self.filter_entries(batch, item_base);
        batch.push_gap(item_base, from, missed);
        from + invalid as u64
    }

    /// The index in the range of the first entry that is valid against
    /// `valid_seq` and `valid_pos` (`n` if none is), replaying the data
    /// positions seen while copying from the breaks and the lengths.
    fn first_valid(
        &self,
        batch: &ReadBatch,
        item_base: usize,
        from: u64,
        n: usize,
        valid_seq: u64,
        valid_pos: u64,
    ) -> usize {
        let (mut breaks, mut others) =
            (self.breaks.iter().peekable(), self.others.iter().peekable());
        let mut items = batch.items[item_base..].iter();
        let mut pos = 0u64;
        for k in 0..n {
            if let Some(&(_, p)) = breaks.next_if(|b| b.0 as usize == k) {
                pos = p;
            }
            if from + k as u64 >= valid_seq && pos >= valid_pos {
                return k;
            }
            let words = match others.next_if(|o| o.0 as usize == k) {
                Some(&(_, words, _)) => u64::from(words),
                None => match items.next() {
                    Some(Item::Entry { len, stamped, .. }) => entry_words(*len as usize, *stamped),
                    // Only entries are pushed while copying.
                    _ => unreachable!("an item for every examined entry"),
                },
            };
            pos = pos.wrapping_add(words);
        }
        n
    }

    /// Drops entries from `item_base` on that the entry filter turns down.
    fn filter_entries(&self, batch: &mut ReadBatch, item_base: usize) {
        if !self.select.filters_entries() {
            return;
        }
        let mut keep = item_base;
        for i in item_base..batch.items.len() {
            let item = batch.items[i];
            let wanted = match batch.view(&item) {
                Read::Entry(e) => self.select.entry(&e),
                Read::Gap { .. } => true,
            };
            if wanted {
                batch.items[keep] = item;
                keep += 1;
            } else {
                batch.filtered += 1;
            }
        }
        batch.items.truncate(keep);
    }
}

/// A consistent view: the entries from the oldest retained one to the newest
/// published one at the moment it was taken.
#[derive(Clone, Copy)]
pub struct Snapshot<'r> {
    ring: &'r Ring,
    first: u64,
    end: u64,
}

impl Ring {
    /// Takes a snapshot of what the ring holds now.
    pub fn snapshot(&self) -> Snapshot<'_> {
        let end = self.published_seq();
        Snapshot {
            ring: self,
            first: self.oldest_seq().min(end),
            end,
        }
    }

    /// A cursor that reads forward from `seq` without end (follow).
    pub fn cursor<S: Select>(&self, seq: u64, select: S) -> Cursor<'_, S> {
        Cursor {
            ring: self,
            next: seq,
            end: u64::MAX,
            published_before: self.published_seq(),
            copier: Copier::new(select),
        }
    }

    /// A cursor that will read only entries published from now on.
    pub fn follow<S: Select>(&self, select: S) -> Cursor<'_, S> {
        self.cursor(self.published_seq(), select)
    }
}

impl<'r> Snapshot<'r> {
    /// Seq of the first entry in the view.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Seq just past the last entry in the view.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Entries in the view (some may be evicted before they are read).
    pub fn len(&self) -> u64 {
        self.end - self.first
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// Reads the view oldest first.
    pub fn cursor<S: Select>(&self, select: S) -> Cursor<'r, S> {
        self.cursor_from(self.first, select)
    }

    /// Reads the view oldest first, from `seq` on (clamped to the view).
    pub fn cursor_from<S: Select>(&self, seq: u64, select: S) -> Cursor<'r, S> {
        Cursor {
            ring: self.ring,
            next: seq.clamp(self.first, self.end),
            end: self.end,
            published_before: self.end,
            copier: Copier::new(select),
        }
    }

    /// The first seq in the view with a time at or after `time_ns`.
    pub fn seek_time(&self, time_ns: u64) -> u64 {
        self.ring.seek_time(time_ns).clamp(self.first, self.end)
    }

    /// The ring's [`Ring::max_relay_lag`]: how far before its receive time
    /// an entry's event time can lie.
    pub fn max_relay_lag(&self) -> u64 {
        self.ring.max_relay_lag()
    }

    /// Reads the view newest first.
    pub fn rev<S: Select>(&self, select: S) -> RevCursor<'r, S> {
        self.rev_before(self.end, select)
    }

    /// Reads the view newest first, starting just below `seq`.
    pub fn rev_before<S: Select>(&self, seq: u64, select: S) -> RevCursor<'r, S> {
        RevCursor {
            ring: self.ring,
            first: self.first,
            next_end: seq.clamp(self.first, self.end),
            copier: Copier::new(select),
        }
    }
}

/// Reads forward, oldest first, from a seq; waits for new entries when
/// following.
pub struct Cursor<'r, S: Select = All> {
    ring: &'r Ring,
    /// The seq the next read starts at.
    next: u64,
    /// Seq to stop at (`u64::MAX` when following).
    end: u64,
    /// The published seq when the previous read started (or the cursor
    /// was made): how far the writers moved during one read tells a lapped
    /// snapshot reader how far ahead of them it must resume.
    published_before: u64,
    copier: Copier<S>,
}

impl<'r, S: Select> Cursor<'r, S> {
    /// The seq the next read starts at: a reader that stops here and
    /// resumes here misses and repeats nothing.
    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn ring(&self) -> &'r Ring {
        self.ring
    }

    /// Moves the cursor to `seq`, forwards or back, keeping what it learned
    /// about origins (a new cursor resolves and filters each origin again).
    /// Entries skipped over are not counted anywhere: a caller seeks past
    /// entries it knows hold nothing for it.
    pub fn seek(&mut self, seq: u64) {
        self.next = seq.min(self.end);
    }

    /// Clears `batch` and reads up to `max` entries into it (fewer when the
    /// filter turns some down); a lapped cursor first gets a gap and moves
    /// to the oldest retained entry (a snapshot's cursor up to `max`
    /// entries past it, see below).
    pub fn read(&mut self, batch: &mut ReadBatch, max: usize) -> ReadStatus {
        batch.clear();
        let ring = self.ring;
        let published = ring.published_seq();
        let writers_moved = published.saturating_sub(self.published_before);
        self.published_before = published;
        let limit = published.min(self.end);
        if self.next >= limit {
            return if self.end == u64::MAX {
                ReadStatus::CaughtUp
            } else {
                ReadStatus::End
            };
        }
        if !self.plausibly_retained(self.next) {
            let oldest = ring.oldest_seq().min(limit);
            if oldest > self.next {
                // A follower continues from the oldest retained entry. A
                // snapshot reader resumes further in, counted in the gap:
                // the oldest entries are the next to go, and a reader slower
                // than the writers that lapped it would otherwise copy
                // little but entries evicted again while it copies them,
                // and contend with the writers for the same cache lines.
                // Four times what the writers appended during its last
                // read keeps it ahead of them for several reads; one read
                // at least, a quarter of the ring at most.
                let margin = if self.end == u64::MAX {
                    0
                } else {
                    writers_moved
                        .saturating_mul(4)
                        .max(max as u64)
                        .min(ring.geometry.slots / 4)
                };
                let resume = oldest.saturating_add(margin).min(limit);
                batch.push_gap(0, self.next, resume - self.next);
                self.next = resume;
            }
        }
        let to = limit.min(self.next.saturating_add(max.max(1) as u64));
        if self.next < to {
            self.copier.copy(ring, self.next, to, batch);
            self.next = to;
            if ring.streaming && self.end == u64::MAX {
                ring.near_head.note(to, published, ring.geometry.slots);
            }
        }
        ReadStatus::More
    }

    /// A cheap check that `seq` was not evicted (not a guarantee: the copy
    /// validates).
    fn plausibly_retained(&self, seq: u64) -> bool {
        let ring = self.ring;
        let (claim_seq, claim_pos) = ring.region.claim().load();
        seq >= ring.region.word(hdr::FLOOR_SEQ).load(Ordering::Acquire)
            && seq + ring.geometry.slots >= claim_seq
            && ring.slot(seq).1 + ring.geometry.data_words >= claim_pos
    }

    /// Whether an entry past the position is published.
    pub fn has_new(&self) -> bool {
        self.ring.published_seq() > self.next
    }

    /// Waits until an entry past the position is published.
    #[cfg(not(feature = "loom"))]
    pub async fn wait(&self) {
        loop {
            if self.has_new() {
                return;
            }
            let listener = self.ring.notifier.listen();
            if self.has_new() {
                return;
            }
            listener.await;
            if self.has_new() {
                // Woken by a publication: wake the next follower (see
                // `Notifier`).
                self.ring.notifier.pass_on();
                return;
            }
        }
    }

    /// Blocks the thread until an entry past the position is published or
    /// `timeout` passes; returns whether one is.
    #[cfg(not(feature = "loom"))]
    pub fn wait_blocking(&self, timeout: std::time::Duration) -> bool {
        // A follower keeping up with a busy writer finds new entries within
        // microseconds: check for a few before sleeping, so that neither side
        // pays a futex call per batch.
        for _ in 0..BLOCKING_SPINS {
            if self.has_new() {
                return true;
            }
            std::hint::spin_loop();
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.has_new() {
                return true;
            }
            let listener = self.ring.notifier.listen();
            if self.has_new() {
                return true;
            }
            if event_listener::Listener::wait_deadline(listener, deadline).is_none() {
                return self.has_new();
            }
            if self.has_new() {
                self.ring.notifier.pass_on();
                return true;
            }
        }
    }

    /// Under loom followers poll: the model schedules the writers.
    #[cfg(feature = "loom")]
    pub async fn wait(&self) {
        while !self.has_new() {
            tokio::task::yield_now().await;
        }
    }

    #[cfg(feature = "loom")]
    pub fn wait_blocking(&self, _timeout: std::time::Duration) -> bool {
        loom::thread::yield_now();
        self.has_new()
    }
}

/// How many times a blocking follower checks for new entries before it
/// sleeps (a few microseconds of spinning).
#[cfg(not(feature = "loom"))]
const BLOCKING_SPINS: u32 = 256;

/// Reads a snapshot backwards, newest first.
pub struct RevCursor<'r, S: Select = All> {
    ring: &'r Ring,
    first: u64,
    /// The next read returns entries just below this seq.
    next_end: u64,
    copier: Copier<S>,
}

impl<S: Select> RevCursor<'_, S> {
    /// The seq just past the next entry to be read: resuming a backward
    /// read below this repeats nothing.
    pub fn position(&self) -> u64 {
        self.next_end
    }

    /// Clears `batch` and reads up to `max` entries below the position,
    /// newest first. When the older end has been evicted, the batch ends
    /// with a gap counting everything down to the snapshot's start, and the
    /// reader is done.
    pub fn read(&mut self, batch: &mut ReadBatch, max: usize) -> ReadStatus {
        batch.clear();
        if self.next_end <= self.first {
            return ReadStatus::End;
        }
        let from = self
            .next_end
            .saturating_sub(max.max(1) as u64)
            .max(self.first);
        let first_valid = self.copier.copy(self.ring, from, self.next_end, batch);
        if first_valid > from {
            // Everything from the snapshot's start up to the first valid
            // entry is gone: report it once, oldest end last.
            if let Some(Item::Gap { .. }) = batch.items.first() {
                batch.items.remove(0);
            }
            batch.items.reverse();
            batch.items.push(Item::Gap {
                first_seq: self.first,
                missed: first_valid - self.first,
            });
            self.next_end = self.first;
        } else {
            batch.items.reverse();
            self.next_end = from;
        }
        ReadStatus::More
    }
}
