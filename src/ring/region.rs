//! The ring's storage: one contiguous, pointer-free array of 64-bit words,
//! either anonymous memory or a file mapped shared, so that a file-backed
//! ring survives the process.
//!
//! Every word of the region is only ever accessed through atomics; that is
//! what makes concurrent copying by readers while writers overwrite
//! well-defined rather than a data race. Under loom the region is an
//! ordinary boxed slice of loom atomics and the claim word lives beside it.
//!
//! Layout, in words (see [`Geometry`]):
//! `[header: 64][slots: 3 per entry][data: message words][origins: 64 per origin]`

#[cfg(not(feature = "loom"))]
use std::fs::OpenOptions;
#[cfg(not(feature = "loom"))]
use std::path::Path;

#[cfg(not(feature = "loom"))]
use super::sync::Ordering;
use super::sync::{AtomicU64, ClaimWord};
use super::RingError;

/// `b"RINGTAIL"` read as a little-endian word.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RINGTAIL");
/// Bumped whenever the file layout changes incompatibly.
///
/// Version 2 took bit 23 of the slot's length field for "stamped" (a source
/// time word before the message). A version-1 file is upgraded in place
/// when it is reopened, if no retained entry is 8 MiB or longer (which only
/// a `--max-line-len` of 8 MiB or more could have stored): then the two
/// layouts read the same.
pub(crate) const VERSION: u64 = 2;
/// The oldest layout version that can be upgraded to [`VERSION`].
#[cfg_attr(feature = "loom", allow(dead_code))]
pub(crate) const UPGRADABLE_VERSION: u64 = 1;

/// Header word indexes. The claim word (two words, 16-byte aligned) and the
/// published frontier sit on cache lines of their own because writers on
/// different cores hammer them.
pub(crate) mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const SLOTS: usize = 2;
    pub const DATA_WORDS: usize = 3;
    pub const ORIGIN_SLOTS: usize = 4;
    /// Incremented every time the ring is opened: tells readers of a file
    /// which run wrote it.
    pub const EPOCH: usize = 5;
    /// The next origin id to hand out (ids are never reused).
    pub const NEXT_ORIGIN_ID: usize = 6;
    /// Claim word: next seq (high half) and next data word position.
    #[cfg_attr(feature = "loom", allow(dead_code))]
    pub const CLAIM: usize = 8;
    /// All seqs below this are published (readable).
    pub const PUBLISHED_SEQ: usize = 16;
    /// The data position just past the last published entry.
    pub const PUBLISHED_POS: usize = 17;
    /// No entry below this seq is valid (raised by crash recovery, whose
    /// torn writers may have overwritten older data).
    pub const FLOOR_SEQ: usize = 24;
    /// Entries claimed but never published by a crashed process, summed
    /// over every recovery of this file.
    pub const TORN_TOTAL: usize = 25;
    /// This ring's identity: random, set when the ring is made (or when a
    /// file from before this word existed is first reopened), kept across
    /// reopenings. A reader resuming by seq checks it to know the seqs it
    /// holds are this ring's.
    pub const RING_ID: usize = 26;
    /// The largest lag of a relayed entry's original time behind its
    /// receive time, in ns, over the ring's life (`Ring::max_relay_lag`).
    /// Zero in version-1 files, which held no relayed entries.
    pub const MAX_RELAY_LAG: usize = 27;
    pub const WORDS: usize = 64;
}

/// Words per entry slot: time, data position, meta (len | stamped | flags |
/// origin).
pub(crate) const SLOT_WORDS: usize = 3;
/// Words per origin slot: id, byte length, then the encoded origin.
pub(crate) const ORIGIN_SLOT_WORDS: usize = 64;
/// Bytes of encoded origin that fit in one origin slot.
pub(crate) const ORIGIN_BYTES: usize = (ORIGIN_SLOT_WORDS - 2) * 8;

/// The sizes that fix a region's layout. Two rings with the same geometry
/// can share a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Entry slots: the most entries the ring holds (`--max-lines`).
    pub slots: u64,
    /// Data words: message bytes / 8, rounded up (`--max-bytes`).
    pub data_words: u64,
    /// Origin slots: the most distinct sources with entries in the ring.
    pub origin_slots: u64,
}

impl Geometry {
    pub(crate) fn slots_at(&self) -> usize {
        hdr::WORDS
    }
    pub(crate) fn data_at(&self) -> usize {
        self.slots_at() + self.slots as usize * SLOT_WORDS
    }
    pub(crate) fn origins_at(&self) -> usize {
        self.data_at() + self.data_words as usize
    }
    pub(crate) fn total_words(&self) -> usize {
        self.origins_at() + self.origin_slots as usize * ORIGIN_SLOT_WORDS
    }
}

/// Whether a region was made afresh or found in an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    Fresh,
    Existing,
}

pub(crate) struct Region {
    #[cfg(not(feature = "loom"))]
    map: memmap2::MmapRaw,
    #[cfg(feature = "loom")]
    words: Box<[AtomicU64]>,
    #[cfg(feature = "loom")]
    claim: ClaimWord,
    len_words: usize,
}

impl Region {
    /// Anonymous memory: zeroed, private to this process, resident only as
    /// it is touched.
    #[cfg(not(feature = "loom"))]
    pub(crate) fn anonymous(geometry: &Geometry) -> Result<Region, RingError> {
        let len_words = geometry.total_words();
        let map = memmap2::MmapOptions::new()
            .len(len_words * 8)
            .map_anon()
            .map_err(|e| {
                RingError::Map(format!("cannot map {} bytes of memory: {e}", len_words * 8))
            })?;
        Ok(Region {
            map: memmap2::MmapRaw::from(map),
            len_words,
        })
    }

    #[cfg(feature = "loom")]
    pub(crate) fn anonymous(geometry: &Geometry) -> Result<Region, RingError> {
        let len_words = geometry.total_words();
        let words = (0..len_words).map(|_| AtomicU64::new(0)).collect();
        Ok(Region {
            words,
            claim: ClaimWord::new(),
            len_words,
        })
    }

    /// A file mapped shared. A new or empty file is sized for `geometry`;
    /// an existing one must have been written with the same geometry unless
    /// `reset` is set, in which case it is cleared.
    #[cfg(not(feature = "loom"))]
    pub(crate) fn file(
        path: &Path,
        geometry: &Geometry,
        reset: bool,
    ) -> Result<(Region, Opened), RingError> {
        let shown = path.display();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| RingError::File(format!("cannot open ring file {shown}: {e}")))?;
        let want = (geometry.total_words() * 8) as u64;
        let have = file
            .metadata()
            .map_err(|e| RingError::File(format!("cannot stat ring file {shown}: {e}")))?
            .len();
        let mut opened = Opened::Existing;
        if have == 0 || reset {
            opened = Opened::Fresh;
            file.set_len(0)
                .and_then(|_| file.set_len(want))
                .map_err(|e| {
                    RingError::File(format!(
                        "cannot size ring file {shown} to {want} bytes: {e}"
                    ))
                })?;
        } else if have < (hdr::WORDS * 8) as u64 {
            return Err(RingError::File(format!(
                "{shown} is not a ringtail ring file (too short); remove it or pass --ring-reset"
            )));
        }
        let map = memmap2::MmapOptions::new()
            .map_raw(&file)
            .map_err(|e| RingError::Map(format!("cannot map ring file {shown}: {e}")))?;
        let len_words = map.len() / 8;
        let region = Region { map, len_words };
        if opened == Opened::Existing {
            region.check_header(geometry, &shown.to_string(), have, want)?;
        }
        Ok((region, opened))
    }

    #[cfg(not(feature = "loom"))]
    fn check_header(
        &self,
        geometry: &Geometry,
        shown: &str,
        have: u64,
        want: u64,
    ) -> Result<(), RingError> {
        let h = |i| self.word(i).load(Ordering::Acquire);
        if h(hdr::MAGIC) != MAGIC {
            return Err(RingError::File(format!(
                "{shown} is not a ringtail ring file (bad magic); remove it or pass --ring-reset"
            )));
        }
        if h(hdr::VERSION) != VERSION && h(hdr::VERSION) != UPGRADABLE_VERSION {
            return Err(RingError::File(format!(
                "{shown} has ring layout version {}, this ringtail writes version {VERSION}; pass --ring-reset to start it afresh",
                h(hdr::VERSION)
            )));
        }
        let found = Geometry {
            slots: h(hdr::SLOTS),
            data_words: h(hdr::DATA_WORDS),
            origin_slots: h(hdr::ORIGIN_SLOTS),
        };
        if found != *geometry || have != want {
            return Err(RingError::Geometry(format!(
                "{shown} holds a ring of {} lines, {} bytes, {} origins; asked for {} lines, {} bytes, {} origins. \
                 Start with the file's sizes, or pass --ring-reset to discard its entries",
                found.slots,
                found.data_words * 8,
                found.origin_slots,
                geometry.slots,
                geometry.data_words * 8,
                geometry.origin_slots
            )));
        }
        Ok(())
    }

    /// Asks the kernel to write a file-backed region to disk.
    #[cfg(not(feature = "loom"))]
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }

    #[cfg(feature = "loom")]
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// All words of the region.
    #[cfg(not(feature = "loom"))]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned), `len_words * 8`
        // bytes long, readable and writable, and lives as long as `self`.
        // `AtomicU64` has the size and alignment of `u64` and no invalid bit
        // patterns. Nothing in this crate ever touches the mapping except
        // through the atomics handed out here, so there are no non-atomic
        // accesses to race with. A file mapping may also be written by
        // another process opening the same file; ringtail does not support
        // two writers on one file, and even then every access stays atomic.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.len_words) }
    }

    #[cfg(feature = "loom")]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        &self.words
    }

    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        &self.words()[i]
    }

    /// The claim word (header words 8 and 9).
    #[cfg(not(feature = "loom"))]
    pub(crate) fn claim(&self) -> ClaimWord<'_> {
        // SAFETY: header word 8 is at byte offset 64 of a page-aligned
        // mapping, so 16-byte aligned; words 8 and 9 are inside the region
        // (the header is 64 words) and, like every word, only accessed
        // atomically: the claim only through this 128-bit view. The
        // returned value borrows `self`, so the mapping outlives it.
        unsafe { ClaimWord::from_ptr(self.map.as_mut_ptr().cast::<u64>().add(hdr::CLAIM)) }
    }

    #[cfg(feature = "loom")]
    pub(crate) fn claim(&self) -> &ClaimWord {
        &self.claim
    }

    pub(crate) fn len_words(&self) -> usize {
        self.len_words
    }
}
