//! The ring: a fixed-capacity, multi-producer log store that readers copy
//! from without ever blocking writers.
//!
//! # What a user of the ring can rely on
//!
//! **Capacity.** The ring holds at most `max_lines` entries and `max_bytes`
//! of message bytes (counted in 8-byte words). Appending past either limit
//! evicts the oldest entries; a writer never waits for a reader. Memory is
//! the region (header + 24 bytes per line + the data bytes + the origin
//! table), fixed at open, plus a constant.
//!
//! **Seqs and times.** Every entry gets a `seq`, strictly increasing and
//! never reused, also across reopenings of a ring file. Its `time` (receive
//! time) is non-decreasing in seq order, so time lookups binary-search.
//! An entry may also carry the producer's own timestamp
//! ([`SourceTime`](crate::entry::SourceTime)), stored as one word before
//! its message (8 bytes more, only for entries that have one). A relayed
//! entry's original time is its event time, which is never after its
//! receive time and at most [`Ring::max_relay_lag`] before it, so time
//! queries over event times still binary-search
//! ([`Ring::event_time_range`]) while the ring stays ordered by receive
//! time.
//!
//! **Appending.** A writer claims a seq range and a byte range for a whole
//! batch (the lines of one `read()`) with one 128-bit compare-and-swap, then
//! copies with plain stores to memory no one else writes, then publishes. A
//! batch becomes visible only once every batch claimed before it is (batches
//! publish in claim order, so a reader never skips an entry an earlier,
//! slower writer is still copying). Writers pay no syscall unless a follower
//! is asleep.
//!
//! **Reading.** Readers copy entries out and then check, against the claim
//! word, whether a writer may have overwritten what they copied. They never
//! return a torn entry. What they could not get (evicted before they got
//! there, or overwritten while they copied) comes back as a
//! [`Read::Gap`] with the exact number of entries, so that for every reader
//! *entries delivered + entries filtered out + gap counts = entries appended
//! in the range it read*. A snapshot reader that writers lapped resumes up to
//! one read past the oldest retained entry (counted in its gap): the oldest
//! entries are the next evicted, and a reader slower than the writers would
//! otherwise copy little but entries it must then drop.
//!
//! **Following.** A [`Cursor`] reads forward from any seq and can wait
//! (async or blocking, without spinning) for new entries. A cursor that was
//! lapped reports `Gap` and continues from the oldest retained entry, the way
//! tokio's broadcast channel reports `Lagged(n)`. Every reader position is a
//! seq, so any reader resumes exactly where it stopped.
//!
//! **Crash survival.** With a ring file, a process that reopens the file
//! (after a clean stop or `kill -9`) sees every published entry with its
//! seq and time; entries claimed but not published by the dead process are
//! dropped and counted ([`Recovery::torn`]); new seqs continue after the last
//! published one.
//!
//! # Where the `unsafe` is
//!
//! All `unsafe` of ringtail lives in this module, in exactly four files;
//! the crate denies `unsafe_code` everywhere else (`src/lib.rs`), and every
//! `unsafe` block says why it is sound (`clippy::undocumented_unsafe_blocks`
//! is denied too):
//!
//! - `region.rs`: the mapping of a ring file as words, and the 128-bit
//!   claim word inside it;
//! - `sync.rs`: the loom shim's x86-64 instructions (streaming stores and
//!   fences, 16-byte loads, prefetch) and the 128-bit claim word;
//! - `mod.rs`: `copy_words_out`, which copies message words into a
//!   reader's buffer without zero-filling it first;
//! - `copy.rs`: a read-only mapping of a ring file viewed as atomic words,
//!   for post-mortem reading (`read --ring-file`, `inspect`).
//!
//! `read.rs`, `write.rs` and `origins.rs` hold none.

#[cfg(not(feature = "loom"))]
#[allow(unsafe_code)]
pub mod copy;
mod origins;
mod read;
#[allow(unsafe_code)]
mod region;
#[allow(unsafe_code)]
mod sync;
mod write;

use std::path::PathBuf;

#[cfg(not(feature = "loom"))]
pub use copy::{file_info, FileHeader, FileInfo};
pub use origins::{OriginHandle, OriginId, MAX_SOURCE_LEN};
pub use read::{All, Cursor, Read, ReadBatch, ReadStatus, RevCursor, Select, Snapshot};
pub use region::Geometry;
pub use write::{Span, SpanError};

use crate::entry::Origin;
use origins::Origins;
use region::{hdr, Opened, Region, SLOT_WORDS};
use sync::{AtomicU64, Notifier, Ordering};

/// The ring file layout version this ringtail writes.
pub const FORMAT_VERSION: u64 = region::VERSION;

/// Longest message one entry can hold: the slot's length field is 23 bits.
pub const MAX_ENTRY_LEN_LIMIT: usize = (1 << 23) - 1;

/// The most entries a ring keeps by default (memlogd's `-max-lines`).
pub const DEFAULT_MAX_LINES: u64 = 5000;
/// The most distinct origins by default (`--max-sources`).
pub const DEFAULT_MAX_ORIGINS: u64 = 65536;

/// How a ring is sized and where it lives.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// The most entries kept (`--max-lines`).
    pub max_lines: u64,
    /// The most message bytes kept (`--max-bytes`); each message is stored
    /// padded to a multiple of 8 bytes.
    pub max_bytes: u64,
    /// The longest message of one entry; longer messages are cut and flagged
    /// `truncated` (sources split long lines before they get here).
    pub max_entry_len: usize,
    /// The most distinct origins (source name + labels) with entries in the
    /// ring at once.
    pub max_origins: u64,
    /// Back the ring with this file instead of anonymous memory.
    pub file: Option<PathBuf>,
    /// Discard a ring file's contents if its geometry differs.
    pub reset: bool,
}

impl RingConfig {
    /// memlogd's defaults: 5000 lines of at most 1024 bytes, with 120 bytes
    /// of message room per line on average.
    pub fn new(max_lines: u64) -> RingConfig {
        RingConfig {
            max_lines,
            max_bytes: default_max_bytes(max_lines),
            max_entry_len: 1024,
            max_origins: DEFAULT_MAX_ORIGINS,
            file: None,
            reset: false,
        }
    }

    /// The region geometry, after checking the sizes make a usable ring.
    pub fn geometry(&self) -> Result<Geometry, RingError> {
        if self.max_lines < 4 {
            return Err(RingError::Config(format!(
                "max lines is {}; a ring needs at least 4",
                self.max_lines
            )));
        }
        if self.max_lines > 1 << 32 {
            return Err(RingError::Config(format!(
                "max lines is {}; at most {} are supported",
                self.max_lines,
                1u64 << 32
            )));
        }
        if self.max_entry_len == 0 || self.max_entry_len > MAX_ENTRY_LEN_LIMIT {
            return Err(RingError::Config(format!(
                "max line length is {}; it must be between 1 and {MAX_ENTRY_LEN_LIMIT}",
                self.max_entry_len
            )));
        }
        let min_bytes = 4 * words_for(self.max_entry_len) * 8;
        if self.max_bytes < min_bytes {
            return Err(RingError::Config(format!(
                "max bytes is {}; with a max line length of {} it must be at least {min_bytes} (four of the longest lines)",
                self.max_bytes, self.max_entry_len
            )));
        }
        if self.max_origins == 0 || self.max_origins > u32::MAX as u64 {
            return Err(RingError::Config(format!(
                "max origins is {}; it must be between 1 and {}",
                self.max_origins,
                u32::MAX
            )));
        }
        Ok(Geometry {
            slots: self.max_lines,
            data_words: self.max_bytes.div_ceil(8),
            origin_slots: self.max_origins,
        })
    }
}

/// The default byte budget: 120 bytes of message per line, at least 64 KiB.
///
/// Room for `max_lines` lines of up to 112 bytes (messages are stored padded
/// to 8 bytes), while a full 1M-line ring stays near 140 MiB resident; a
/// ring of longer lines keeps fewer lines unless `--max-bytes` says more.
pub fn default_max_bytes(max_lines: u64) -> u64 {
    max_lines.saturating_mul(120).max(64 * 1024)
}

/// What went wrong opening or using a ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("bad ring size: {0}")]
    Config(String),
    #[error("{0}")]
    Map(String),
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Geometry(String),
    #[error("too many sources: all {0} origin slots hold sources that are still in use or still have entries in the ring; raise --max-sources")]
    TooManyOrigins(u64),
}

/// What opening a ring file found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The file already held a ring (otherwise it was created or reset).
    pub reopened: bool,
    /// Entries that the previous process claimed but never published
    /// (torn by a crash), dropped at this opening.
    pub torn: u64,
    /// Entries found intact.
    pub intact: u64,
    /// How many times this ring has been opened, this time included.
    pub epoch: u64,
}

/// The receive-time clock: the wall clock, never going backwards.
///
/// Entry times are the wall clock read at claim time, so a client that reads
/// the wall clock before an append sees a time at or after it, and one that
/// reads it after sees a time at or before it (`since=<now>` and
/// `until=<now>` both mean what they say). A wall clock stepped backwards
/// must not make times decrease in seq order: every reading is raised to the
/// `floor`, the highest time handed out so far (from a ring file too), and
/// the floor is raised before the claim that uses the reading, so the next
/// claim (which sees this one) sees the raised floor.
///
/// The floor is an atomic of the loom shim ([`sync`]), like every other
/// atomic of the protocol, so the model checks its orderings too.
struct Clock {
    floor: AtomicU64,
}

impl Clock {
    fn new(not_before: u64) -> Clock {
        Clock {
            floor: AtomicU64::new(not_before),
        }
    }

    fn now(&self) -> u64 {
        use Ordering as O;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let floor = self.floor.load(O::Acquire);
        if wall > floor {
            // Usually the wall clock has moved on and this is the only
            // writer of the floor's cache line at this moment.
            self.floor.fetch_max(wall, O::AcqRel).max(wall)
        } else {
            floor
        }
    }
}

/// The ring. Share it by reference or `Arc`; every method takes `&self`.
pub struct Ring {
    region: Region,
    geometry: Geometry,
    origins: Origins,
    notifier: Notifier,
    clock: Clock,
    max_entry_len: usize,
    /// The most entries one claim may take: a quarter of the slots, so a
    /// claim never laps the entries of writers still copying.
    max_batch_entries: u64,
    /// The most data words one claim may take (a quarter of the data).
    max_batch_words: u64,
    /// Writers store entries with streaming stores ([`STREAMING_MIN_WORDS`]),
    /// unless a follower reads near the head ([`NearHead`]).
    streaming: bool,
    near_head: NearHead,
    /// Readers copy with 16-byte loads ([`sync::wide_loads`]).
    wide_loads: bool,
    recovery: Recovery,
}

/// Rings with at least this many words of slots and data (64 MiB) are
/// written with streaming stores, which skip the cache: such a ring cannot
/// stay in the caches anyway, and a plain store would first read each line
/// it writes from DRAM. Smaller rings (the default 5,000 lines is under
/// 1 MiB) stay in cache, where plain stores are faster and followers find
/// fresh entries in cache.
const STREAMING_MIN_WORDS: u64 = 8 << 20;

/// A random, non-zero ring id: `RandomState` is seeded from the operating
/// system's random source, and the time and process id tell apart two
/// rings made in one process.
fn new_ring_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// The newest seq a follower read up to while near the head of a streaming
/// ring, rounded to steps of a sixteenth of the slots. Streaming stores send
/// fresh entries to DRAM, and a follower close behind the writers would
/// fetch each of them back from there: measured on a 1M-line ring, such a
/// follower slowed a full-speed writer by -10 to +20 % from run to run with
/// streaming stores, and by 1 to 3 % with plain ones, whose lines it finds
/// in the shared cache. So writers store plainly while a follower was near
/// the head within the last half lap, and stream again half a lap after the
/// last one left. Only a hint: it changes how words are stored, never what.
/// Written at most once per sixteenth of the ring, on its own cache line.
#[repr(align(128))]
struct NearHead(AtomicU64);

impl NearHead {
    /// Whether a follower was near the head within half a lap of `seq`.
    fn recent(&self, seq: u64, slots: u64) -> bool {
        seq < self.0.load(Ordering::Relaxed).saturating_add(slots / 2)
    }

    /// Notes a follower that read up to `seq`, with `published` the newest
    /// published seq, if it is less than half a ring behind (further back,
    /// what it reads left the cache long ago either way).
    fn note(&self, seq: u64, published: u64, slots: u64) {
        let step = (slots / 16).max(1);
        if published.saturating_sub(seq) < slots / 2
            && seq >= self.0.load(Ordering::Relaxed).saturating_add(step)
        {
            self.0.fetch_max(seq, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("geometry", &self.geometry)
            .field("published_seq", &self.published_seq())
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

/// Ring-wide counters, cheap to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub geometry_lines: u64,
    pub geometry_bytes: u64,
    /// Seq of the oldest retained entry.
    pub oldest_seq: u64,
    /// Seq the next published entry will have.
    pub next_seq: u64,
    /// Entries retained now.
    pub retained: u64,
    /// Message bytes retained now (padded to 8 bytes each).
    pub retained_bytes: u64,
    /// Entries appended over the ring's life (all openings of a file).
    pub appended_total: u64,
    /// Entries evicted (or lost to a crash) over the ring's life.
    pub evicted_total: u64,
    /// Distinct origins interned now.
    pub origins: u64,
}

impl Ring {
    /// Opens a ring in anonymous memory, or in `config.file`.
    pub fn open(config: &RingConfig) -> Result<Ring, RingError> {
        let geometry = config.geometry()?;
        #[cfg(not(feature = "loom"))]
        let (region, opened) = match &config.file {
            Some(path) => Region::file(path, &geometry, config.reset)?,
            None => (Region::anonymous(&geometry)?, Opened::Fresh),
        };
        #[cfg(feature = "loom")]
        let (region, opened) = (Region::anonymous(&geometry)?, Opened::Fresh);
        debug_assert_eq!(region.len_words(), geometry.total_words());
        let mut recovery = match opened {
            Opened::Fresh => init_header(&region, &geometry),
            Opened::Existing => {
                upgrade_layout(&region, &geometry, config.file.as_deref())?;
                recover(&region, &geometry)
            }
        };
        let h = |i| region.word(i).load(Ordering::Acquire);
        if h(hdr::RING_ID) == 0 {
            region
                .word(hdr::RING_ID)
                .store(new_ring_id(), Ordering::Release);
        }
        recovery.epoch = h(hdr::EPOCH) + 1;
        region
            .word(hdr::EPOCH)
            .store(recovery.epoch, Ordering::Release);
        let mut ring = Ring::assemble(region, geometry, config.max_entry_len, recovery);
        if opened == Opened::Existing {
            ring.rebuild_after_reopen();
        }
        Ok(ring)
    }

    /// A ring around a region whose header is set up (fresh or recovered).
    fn assemble(
        region: Region,
        geometry: Geometry,
        max_entry_len: usize,
        recovery: Recovery,
    ) -> Ring {
        let origins = Origins::load(&region, &geometry);
        Ring {
            clock: Clock::new(0),
            region,
            geometry,
            origins,
            notifier: Notifier::default(),
            max_entry_len,
            max_batch_entries: (geometry.slots / 4).max(1),
            max_batch_words: (geometry.data_words / 4).max(entry_words(max_entry_len, true)),
            wide_loads: sync::wide_loads(),
            streaming: geometry.slots * SLOT_WORDS as u64 + geometry.data_words
                >= STREAMING_MIN_WORDS,
            near_head: NearHead(AtomicU64::new(0)),
            recovery,
        }
    }

    /// Opens a copy of the ring file at `path` for post-mortem reading,
    /// touching the file only to read it (see [`copy`]): validated and
    /// recovered the way a reopening daemon does, with the geometry the
    /// file's header gives. The ring is read like any other; appending to it
    /// changes only the copy. The [`Recovery`] says what the copy's recovery
    /// dropped (its `epoch` is the file's: no opening is counted).
    #[cfg(not(feature = "loom"))]
    pub fn open_copy(path: &std::path::Path) -> Result<(Ring, FileInfo), RingError> {
        let (region, info) = copy::copy_file(path)?;
        let mut recovery = recover(&region, &info.geometry);
        recovery.epoch = info.header.epoch;
        let mut ring = Ring::assemble(region, info.geometry, MAX_ENTRY_LEN_LIMIT, recovery);
        ring.rebuild_after_reopen();
        Ok((ring, info))
    }

    /// After a reopen: restart the clock at or after the newest stored time.
    fn rebuild_after_reopen(&mut self) {
        let published = self.published_seq();
        let oldest = self.oldest_seq();
        let newest_time = if oldest < published {
            self.slot(published - 1).0
        } else {
            0
        };
        self.clock = Clock::new(newest_time);
        self.recovery.intact = published - oldest;
    }

    /// What opening found (all zero for anonymous memory).
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// This ring's identity, never 0: random for each new ring (anonymous
    /// or file), the same for every reopening of a ring file. Seqs are
    /// only comparable between readings of the same ring id.
    pub fn id(&self) -> u64 {
        self.region.word(hdr::RING_ID).load(Ordering::Acquire)
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn max_entry_len(&self) -> usize {
        self.max_entry_len
    }

    /// Registers an origin and returns the handle to append with. Returns
    /// an error when the origin table is full of origins still in use.
    pub fn origin(&self, origin: Origin) -> Result<OriginHandle, RingError> {
        self.origins
            .intern(
                &self.region,
                &self.geometry,
                origin,
                || self.published_seq(),
                || self.referenced_origins(),
            )
            .ok_or(RingError::TooManyOrigins(self.geometry.origin_slots))
    }

    /// The origin ids that retained entries refer to (a scan of the slots).
    fn referenced_origins(&self) -> std::collections::HashSet<OriginId> {
        let published = self.published_seq();
        (self.oldest_seq()..published)
            .map(|seq| meta_origin(self.slot(seq).2))
            .collect()
    }

    /// Every origin interned now, by id.
    pub fn origins(&self) -> Vec<(OriginId, std::sync::Arc<Origin>)> {
        self.origins.all()
    }

    /// Every seq below this is published. The next entry gets this seq.
    pub fn published_seq(&self) -> u64 {
        self.region.word(hdr::PUBLISHED_SEQ).load(Ordering::Acquire)
    }

    /// The seq of the oldest retained entry (equal to
    /// [`published_seq`](Self::published_seq) when the ring is empty). An
    /// estimate under concurrent appends: readers check what they copy.
    pub fn oldest_seq(&self) -> u64 {
        self.oldest_for(self.region.claim().load(), self.published_seq())
    }

    /// How near a reader whose next entry is `seq` is to losing it: the
    /// share of the nearer capacity limit (entries or bytes) that the
    /// published entries from `seq` on take up. 0.0 for a reader that is
    /// caught up; at 1.0 the next append evicts `seq`. An estimate under
    /// concurrent appends, for pacing decisions, never for correctness.
    pub fn behind(&self, seq: u64) -> f64 {
        let published = self.published_seq();
        if seq >= published {
            return 0.0;
        }
        let g = &self.geometry;
        if published - seq >= g.slots || seq < self.floor_seq() {
            return 1.0;
        }
        let published_pos = self.region.word(hdr::PUBLISHED_POS).load(Ordering::Acquire);
        // A slot a writer has reused since holds a later position, which
        // only makes the byte share smaller than the entry share.
        let words = published_pos.saturating_sub(self.slot(seq).1);
        let by_entries = (published - seq) as f64 / g.slots as f64;
        let by_bytes = words as f64 / g.data_words as f64;
        by_entries.max(by_bytes).min(1.0)
    }

    /// The oldest seq that is valid given a claim word value, found by
    /// binary search over the data positions of the candidate slots.
    fn oldest_for(&self, (claim_seq, claim_pos): (u64, u64), published: u64) -> u64 {
        let floor = self.floor_seq();
        let mut lo = floor.max(claim_seq.saturating_sub(self.geometry.slots));
        let mut hi = published.max(lo);
        let min_pos = claim_pos.saturating_sub(self.geometry.data_words);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (_, pos, _) = self.slot(mid);
            if pos >= min_pos {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn floor_seq(&self) -> u64 {
        self.region.word(hdr::FLOOR_SEQ).load(Ordering::Acquire)
    }

    /// The first retained seq whose time is at or after `time_ns`
    /// (`published_seq` when there is none).
    pub fn seek_time(&self, time_ns: u64) -> u64 {
        let mut lo = self.oldest_seq();
        let mut hi = self.published_seq().max(lo);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.slot(mid).0 >= time_ns {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The most a relayed entry's [`SourceTime::Original`] time was behind
    /// its receive time, over the ring's life (0 when nothing was relayed).
    /// Event times are never later than receive times
    /// ([`EntryRef::event_time`]), so the entries that happened in
    /// `[start, end)` lie between [`seek_time`](Self::seek_time)`(start)`
    /// and `seek_time(end + max_relay_lag())`.
    ///
    /// [`SourceTime::Original`]: crate::entry::SourceTime::Original
    /// [`EntryRef::event_time`]: crate::entry::EntryRef::event_time
    pub fn max_relay_lag(&self) -> u64 {
        self.region.word(hdr::MAX_RELAY_LAG).load(Ordering::Relaxed)
    }

    /// The seqs `[first, end)` holding every entry whose
    /// [event time](crate::entry::EntryRef::event_time) is in `[start_ns,
    /// end_ns)`, and others (callers filter by event time). Without relayed
    /// entries this is exactly the receive-time range.
    pub fn event_time_range(&self, start_ns: u64, end_ns: u64) -> (u64, u64) {
        let first = self.seek_time(start_ns);
        let end = self.seek_time(end_ns.saturating_add(self.max_relay_lag()));
        (first, end.max(first))
    }

    /// Ring-wide counters.
    pub fn stats(&self) -> RingStats {
        let published = self.published_seq();
        let oldest = self.oldest_seq().min(published);
        let pub_pos = self.region.word(hdr::PUBLISHED_POS).load(Ordering::Acquire);
        let retained_bytes = if oldest < published {
            pub_pos.saturating_sub(self.slot(oldest).1) * 8
        } else {
            0
        };
        RingStats {
            geometry_lines: self.geometry.slots,
            geometry_bytes: self.geometry.data_words * 8,
            oldest_seq: oldest,
            next_seq: published,
            retained: published - oldest,
            retained_bytes: retained_bytes.min(self.geometry.data_words * 8),
            appended_total: published - 1,
            evicted_total: oldest - 1,
            origins: self.origins.len() as u64,
        }
    }

    /// Asks the kernel to write a file-backed ring to disk now (it does so
    /// on its own too; a crash of the process loses nothing either way).
    pub fn flush(&self) -> std::io::Result<()> {
        self.region.flush()
    }

    /// The three words of the slot of `seq`: time, data position, meta.
    /// The slot may hold a newer entry (`seq + k * slots`) by the time it is
    /// read; callers validate.
    fn slot(&self, seq: u64) -> (u64, u64, u64) {
        let at = self.slot_at(seq);
        let w = self.region.words();
        (
            w[at].load(Ordering::Relaxed),
            w[at + 1].load(Ordering::Relaxed),
            w[at + 2].load(Ordering::Relaxed),
        )
    }

    fn slot_at(&self, seq: u64) -> usize {
        self.geometry.slots_at() + (seq % self.geometry.slots) as usize * SLOT_WORDS
    }

    fn data_index(&self, pos: u64) -> usize {
        (pos % self.geometry.data_words) as usize
    }
}

/// Writes a fresh header: seqs start at 1.
fn init_header(region: &Region, g: &Geometry) -> Recovery {
    let set = |i, v| region.word(i).store(v, Ordering::Relaxed);
    set(hdr::VERSION, region::VERSION);
    set(hdr::SLOTS, g.slots);
    set(hdr::DATA_WORDS, g.data_words);
    set(hdr::ORIGIN_SLOTS, g.origin_slots);
    set(hdr::EPOCH, 0);
    set(hdr::NEXT_ORIGIN_ID, 1);
    set(hdr::PUBLISHED_SEQ, 1);
    set(hdr::PUBLISHED_POS, 0);
    set(hdr::FLOOR_SEQ, 1);
    set(hdr::TORN_TOTAL, 0);
    set(hdr::MAX_RELAY_LAG, 0);
    region.claim().store((1, 0));
    // The magic goes last: a file with it has a complete header.
    region
        .word(hdr::MAGIC)
        .store(region::MAGIC, Ordering::Release);
    Recovery::default()
}

/// Brings a file of an older layout version to [`region::VERSION`] in place,
/// where the layouts agree on every retained entry (see `region::VERSION`).
/// Runs before recovery, over every slot, since a torn claim's slots may be
/// anything (recovery drops them anyway).
fn upgrade_layout(
    region: &Region,
    g: &Geometry,
    file: Option<&std::path::Path>,
) -> Result<(), RingError> {
    let version = region.word(hdr::VERSION).load(Ordering::Acquire);
    if version == region::VERSION {
        return Ok(());
    }
    let published = region.word(hdr::PUBLISHED_SEQ).load(Ordering::Acquire);
    let floor = region.word(hdr::FLOOR_SEQ).load(Ordering::Acquire);
    let first = floor.max(published.saturating_sub(g.slots));
    let long = (first..published).any(|seq| {
        let at = g.slots_at() + (seq % g.slots) as usize * SLOT_WORDS + 2;
        meta_stamped(region.word(at).load(Ordering::Relaxed))
    });
    if long {
        let shown = file.map(|f| f.display().to_string()).unwrap_or_default();
        return Err(RingError::File(format!(
            "{shown} has ring layout version {version} and holds entries of 8 MiB or more, \
             which this ringtail (layout {}) cannot read; read it with the ringtail that wrote it, \
             or pass --ring-reset to start it afresh",
            region::VERSION
        )));
    }
    region.word(hdr::MAX_RELAY_LAG).store(0, Ordering::Relaxed);
    region
        .word(hdr::VERSION)
        .store(region::VERSION, Ordering::Release);
    Ok(())
}

/// Recovers a ring file written by a process that may have died anywhere.
///
/// Published entries are intact. Claimed-but-unpublished ones are torn; their
/// writers may also have overwritten older entries' data, so the floor is
/// raised to the oldest entry valid under the claim the dead process reached,
/// and the claim is rolled back to the published frontier.
fn recover(region: &Region, g: &Geometry) -> Recovery {
    let published_seq = region.word(hdr::PUBLISHED_SEQ).load(Ordering::Acquire);
    let published_pos = region.word(hdr::PUBLISHED_POS).load(Ordering::Acquire);
    let (claim_seq, claim_pos) = region.claim().load();
    let torn = claim_seq.saturating_sub(published_seq);
    // Find the oldest entry not overwritten by the claim (same search as
    // `Ring::oldest_for`, which needs a `Ring`).
    let floor = region.word(hdr::FLOOR_SEQ).load(Ordering::Acquire);
    let mut lo = floor.max(claim_seq.saturating_sub(g.slots));
    let mut hi = published_seq.max(lo);
    let min_pos = claim_pos.saturating_sub(g.data_words);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = g.slots_at() + (mid % g.slots) as usize * SLOT_WORDS + 1;
        if region.word(at).load(Ordering::Relaxed) >= min_pos {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    region
        .word(hdr::FLOOR_SEQ)
        .store(lo.max(floor), Ordering::Release);
    let torn_total = region.word(hdr::TORN_TOTAL).load(Ordering::Relaxed) + torn;
    region
        .word(hdr::TORN_TOTAL)
        .store(torn_total, Ordering::Relaxed);
    region.claim().store((published_seq, published_pos));
    Recovery {
        reopened: true,
        torn,
        intact: 0,
        epoch: 0,
    }
}

/// Words needed for `len` bytes.
pub(crate) fn words_for(len: usize) -> u64 {
    len.div_ceil(8) as u64
}

/// Data words of an entry: its message, after the stamp word if it has one.
pub(crate) fn entry_words(len: usize, stamped: bool) -> u64 {
    words_for(len) + stamped as u64
}

/// Slot meta word: bits 0-22 message length, bit 23 "stamped" (the entry's
/// data starts with its source-time word), 24-31 flags, 32-63 origin id.
pub(crate) fn meta(len: usize, stamped: bool, flags: u8, origin: OriginId) -> u64 {
    len as u64 | (stamped as u64) << 23 | (flags as u64) << 24 | (origin as u64) << 32
}

pub(crate) fn meta_len(meta: u64) -> usize {
    (meta & 0x7f_ffff) as usize
}

pub(crate) fn meta_stamped(meta: u64) -> bool {
    meta & 1 << 23 != 0
}

pub(crate) fn meta_flags(meta: u64) -> u8 {
    (meta >> 24) as u8
}

pub(crate) fn meta_origin(meta: u64) -> OriginId {
    (meta >> 32) as u32
}

/// Stores `bytes` into consecutive words from `at` (no wrap), little-endian,
/// the last word zero-padded.
pub(crate) fn copy_words_in(words: &[AtomicU64], at: usize, bytes: &[u8], streaming: bool) {
    let store = |w: &AtomicU64, v: u64| {
        if streaming {
            sync::store_streaming(w, v);
        } else {
            w.store(v, Ordering::Relaxed);
        }
    };
    let (chunks, tail) = bytes.as_chunks::<8>();
    let dst = &words[at..at + bytes.len().div_ceil(8)];
    for (w, c) in dst.iter().zip(chunks) {
        store(w, u64::from_le_bytes(*c));
    }
    if !tail.is_empty() {
        store(&dst[chunks.len()], tail_word(tail));
    }
}

/// The 1 to 7 bytes of `tail` as a little-endian word, zero-padded. Built
/// from overlapping loads rather than copied into a zeroed array: that copy
/// was a `memcpy` call followed by a load the CPU could not forward from
/// it, and cost about half of an append.
fn tail_word(tail: &[u8]) -> u64 {
    let n = tail.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        // Bytes 0..4 and n-4..n; the overlap holds the same bytes at the
        // same places in both.
        let lo = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let hi = u32::from_le_bytes([tail[n - 4], tail[n - 3], tail[n - 2], tail[n - 1]]);
        u64::from(lo) | u64::from(hi) << ((n - 4) * 8)
    } else {
        // Bytes 0, n/2 and n-1 cover 1, 2 or 3 bytes.
        u64::from(tail[0])
            | u64::from(tail[n / 2]) << (n / 2 * 8)
            | u64::from(tail[n - 1]) << ((n - 1) * 8)
    }
}

/// Appends `len` bytes read from consecutive words from `at` (no wrap).
/// With `wide`, the words between the first 16-byte boundary and the last
/// whole pair are copied with [`sync::load_pairs`].
#[inline]
#[allow(unsafe_code)]
pub(crate) fn copy_words_out(
    words: &[AtomicU64],
    at: usize,
    len: usize,
    out: &mut Vec<u8>,
    wide: bool,
) {
    let n = len.div_ceil(8);
    let start = out.len();
    let src = &words[at..at + n];
    // One reservation, then plain word stores: zero-filling first
    // (`resize`) cost a memset call per entry, and a capacity check per
    // word (`extend_from_slice`) cost more than the copy.
    out.reserve(n * 8);
    let dst = out.as_mut_ptr();
    let (mut wide_from, mut wide_to) = (0, 0);
    if wide && n >= 3 {
        wide_from = usize::from(!(src.as_ptr() as usize).is_multiple_of(16));
        wide_to = wide_from + (n - wide_from) / 2 * 2;
        // SAFETY: `wide` comes from `sync::wide_loads()`; at least one pair
        // (n >= 3); `src[wide_from]` is 16-byte aligned (words are 8-byte
        // aligned, so skipping one reaches the boundary when not on it) and
        // the words up to `wide_to <= n` are live atomics of `words`; the
        // `8 * (wide_to - wide_from)` bytes at `start + 8 * wide_from` are
        // inside the room `reserve` made and written by nothing else.
        unsafe {
            sync::load_pairs(
                &src[wide_from],
                (wide_to - wide_from) / 2,
                dst.add(start + 8 * wide_from),
            );
        }
    }
    // The words outside the pairs (all of them without `wide`).
    for i in (0..wide_from).chain(wide_to..n) {
        let word = src[i].load(Ordering::Relaxed).to_le_bytes();
        // SAFETY: `reserve` made room for `n * 8` bytes past `start`, and
        // `i < n`, so the 8 bytes at `start + 8 * i` are inside the
        // allocation; `u8` has no alignment, and the buffer is not
        // borrowed anywhere else while `out` is borrowed mutably here.
        unsafe { dst.add(start + 8 * i).cast::<[u8; 8]>().write(word) };
    }
    // SAFETY: the `n * 8 >= len` bytes from `start` were all just written
    // (the pairs and the rest), so every byte below the new length is
    // initialized.
    unsafe { out.set_len(start + len) };
}

#[cfg(test)]
mod tests {
    use super::sync::AtomicU64;
    use super::{tail_word, NearHead};

    #[test]
    fn writers_store_plainly_for_half_a_lap_after_a_follower_near_the_head() {
        let slots = 1600;
        let near = NearHead(AtomicU64::new(0));
        assert!(!near.recent(800, slots), "no follower yet");
        // A follower far behind the head (a dump, a lagging reader) does
        // not count.
        near.note(5000, 5000 + slots / 2, slots);
        assert!(!near.recent(5000, slots));
        // One near the head does, for half a lap.
        near.note(5000, 5100, slots);
        assert!(near.recent(5100, slots));
        assert!(near.recent(5000 + slots / 2 - 1, slots));
        assert!(!near.recent(5000 + slots / 2, slots));
        // Notes within a sixteenth of the ring of the last one are skipped
        // (no write to the shared line), later ones move the mark.
        near.note(5000 + slots / 16 - 1, 5100, slots);
        assert!(!near.recent(5000 + slots / 2, slots));
        near.note(5000 + slots / 16, 5100 + slots / 16, slots);
        assert!(near.recent(5000 + slots / 2, slots));
    }

    /// A version-1 file (before stamped entries) is upgraded in place when
    /// its entries read the same in both layouts, refused otherwise; a
    /// newer version is refused.
    #[test]
    fn older_ring_files_are_upgraded_and_newer_ones_refused() {
        use super::region::{hdr, VERSION};
        use super::{Ring, RingConfig};
        use crate::entry::{Flags, Origin};
        let dir = tempfile::tempdir().unwrap();
        let mut config = RingConfig::new(16);
        config.file = Some(dir.path().join("ring"));
        let set_version = |config: &RingConfig, v: u64| {
            let ring = Ring::open(config).unwrap();
            ring.region
                .word(hdr::VERSION)
                .store(v, super::Ordering::Release);
        };
        {
            let ring = Ring::open(&config).unwrap();
            let o = ring.origin(Origin::new("a")).unwrap();
            ring.append(&o, Flags::default(), b"kept across the upgrade");
        }
        set_version(&config, 1);
        let ring = Ring::open(&config).unwrap();
        assert_eq!(
            ring.region
                .word(hdr::VERSION)
                .load(super::Ordering::Acquire),
            VERSION
        );
        assert_eq!(ring.snapshot().len(), 1);
        // A version-1 entry whose length had bit 23 set cannot be read.
        let at = ring.slot_at(1) + 2;
        let meta = ring.region.words()[at].load(super::Ordering::Relaxed);
        ring.region.words()[at].store(meta | 1 << 23, super::Ordering::Relaxed);
        ring.region
            .word(hdr::VERSION)
            .store(1, super::Ordering::Release);
        drop(ring);
        let e = Ring::open(&config).unwrap_err().to_string();
        assert!(
            e.contains("8 MiB or more") && e.contains("--ring-reset"),
            "{e}"
        );
        config.reset = true;
        set_version(&config, VERSION + 1);
        config.reset = false;
        let e = Ring::open(&config).unwrap_err().to_string();
        assert!(e.contains(&format!("version {}", VERSION + 1)), "{e}");
    }

    #[test]
    fn tail_words_are_the_bytes_zero_padded() {
        let bytes = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        for n in 1..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                tail_word(&bytes[..n]),
                u64::from_le_bytes(padded),
                "{n} bytes"
            );
        }
    }
}
