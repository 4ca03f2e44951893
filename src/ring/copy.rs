//! Post-mortem reading: a ring file copied into memory, opened read-only.
//!
//! [`Ring::open_copy`] gives a ring that readers use exactly like a live
//! one, made from a ring file that this process only ever reads: the file
//! is mapped read-only (so it works on a read-only copy taken from a
//! crashed host, on a read-only filesystem, and beside a daemon that has
//! the file open and keeps writing), its words are copied into anonymous
//! memory, and the copy goes through the same recovery a reopening daemon
//! runs ([`super::recover`]): entries claimed but not published are
//! dropped and counted, and so is every older entry whose slot or data a
//! claim may have overwritten. Nothing is ever written to the file.
//!
//! # Copying a file someone is writing
//!
//! A daemon may append while the copy is taken. The copy reads, in order:
//! the published frontier (acquire), every other word (relaxed loads), an
//! acquire fence, then the claim word. Entries below the frontier read
//! first were complete before their slots and data were copied; a writer
//! claims before it stores, so any of them that a writer touched during the
//! copy lies within the claim read last, and recovery drops it. The two
//! halves of the claim are read as two 64-bit loads (a 128-bit load may be
//! a compare-and-swap, which faults on a read-only mapping); each half only
//! grows, so each is at least its value at any moment before, which only
//! makes recovery drop more. A file nobody writes gives the same answer as
//! reopening it in a daemon.
//!
//! Memory: the copy is as large as the file, but words that are zero (an
//! unused origin table, a ring never filled) are not stored, so the pages
//! that would hold only them are never touched.

use std::fs::File;
use std::path::Path;

use super::region::{hdr, Geometry, Region, MAGIC, SLOT_WORDS, UPGRADABLE_VERSION, VERSION};
use super::sync::{fence, AtomicU64, Ordering};
use super::{entry_words, meta_len, meta_stamped, upgrade_layout, RingError};

/// The claim word's seq half: word 9, the high half of the 128-bit word
/// at [`hdr::CLAIM`] (see `sync::ClaimWord`).
const CLAIM_SEQ: usize = hdr::CLAIM + 1;

/// What the header of a ring file says, before any recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileHeader {
    /// The layout version written in the file.
    pub version: u64,
    /// The ring's identity (0 in files older than the id word).
    pub ring_id: u64,
    /// How many times a daemon has opened the file.
    pub epoch: u64,
    /// Every seq below this was published.
    pub published_seq: u64,
    /// The seq the next claim would take: above `published_seq` when a
    /// writer died (or was still writing) between claim and publish.
    pub claim_seq: u64,
    /// No entry below this seq is valid (raised by earlier recoveries).
    pub floor_seq: u64,
    /// Entries torn by crashes that earlier recoveries dropped.
    pub torn_before: u64,
    /// The file's size in bytes.
    pub file_len: u64,
}

/// A ring file's header and geometry, read without copying the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub header: FileHeader,
    pub geometry: Geometry,
}

/// The header words this module reads, from a read-only mapping.
struct Mapped {
    map: memmap2::MmapRaw,
    len_words: usize,
}

impl Mapped {
    fn open(path: &Path) -> Result<(Mapped, u64), RingError> {
        let shown = path.display();
        let file = File::open(path)
            .map_err(|e| RingError::File(format!("cannot open ring file {shown}: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| RingError::File(format!("cannot stat ring file {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(RingError::File(format!(
                "{shown} is not a regular file; give the path of a ring file (--ring-file of `ringtail serve`)"
            )));
        }
        let len = meta.len();
        if len < (hdr::WORDS * 8) as u64 {
            return Err(RingError::File(format!(
                "{shown} is not a ringtail ring file: it is {len} bytes, shorter than a ring header ({} bytes)",
                hdr::WORDS * 8
            )));
        }
        let map = memmap2::MmapOptions::new()
            .map_raw_read_only(&file)
            .map_err(|e| RingError::Map(format!("cannot map ring file {shown}: {e}")))?;
        let len_words = map.len() / 8;
        Ok((Mapped { map, len_words }, len))
    }

    /// The mapping's words. Only ever loaded from, relaxed or acquire.
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned), at least
        // `len_words * 8` bytes long, readable, and lives as long as
        // `self`. `AtomicU64` has the size and alignment of `u64` and no
        // invalid bit patterns. The mapping is read-only: this module only
        // performs 64-bit atomic loads through the slice, which on the
        // targets ringtail supports are plain loads and valid on read-only
        // memory (std's "atomic accesses to read-only memory" rules allow
        // loads of at most the native word size); nothing takes a 128-bit
        // view of it. Another process (a daemon) may write the file through
        // its own shared mapping, only with atomic stores of the same size,
        // so every access to these words is atomic.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.len_words) }
    }
}

/// Reads and checks a ring file's header: the checks a reopening daemon
/// makes, with the geometry taken from the file rather than the command
/// line.
pub fn file_info(path: &Path) -> Result<FileInfo, RingError> {
    let (mapped, len) = Mapped::open(path)?;
    check(&mapped, len, path)
}

fn check(mapped: &Mapped, len: u64, path: &Path) -> Result<FileInfo, RingError> {
    let shown = path.display();
    let w = mapped.words();
    let h = |i: usize| w[i].load(Ordering::Acquire);
    if h(hdr::MAGIC) != MAGIC {
        return Err(RingError::File(format!(
            "{shown} is not a ringtail ring file (its first 8 bytes are not \"RINGTAIL\")"
        )));
    }
    let version = h(hdr::VERSION);
    if version != VERSION && version != UPGRADABLE_VERSION {
        let newer = if version > VERSION {
            "a newer ringtail wrote it; read it with that version"
        } else {
            "it is corrupt or from an unknown ringtail"
        };
        return Err(RingError::File(format!(
            "{shown} has ring layout version {version}, this ringtail reads versions \
             {UPGRADABLE_VERSION} to {VERSION}: {newer}"
        )));
    }
    let geometry = Geometry {
        slots: h(hdr::SLOTS),
        data_words: h(hdr::DATA_WORDS),
        origin_slots: h(hdr::ORIGIN_SLOTS),
    };
    let sane = (4..=1 << 32).contains(&geometry.slots)
        && geometry.data_words >= 4
        && (1..=u32::MAX as u64).contains(&geometry.origin_slots);
    let want = sane.then(|| {
        // In u128: a corrupt header must not overflow into a plausible size.
        (hdr::WORDS as u128
            + geometry.slots as u128 * SLOT_WORDS as u128
            + geometry.data_words as u128
            + geometry.origin_slots as u128 * super::region::ORIGIN_SLOT_WORDS as u128)
            * 8
    });
    match want {
        Some(want) if want == len as u128 => {}
        Some(want) if want > len as u128 => {
            return Err(RingError::Geometry(format!(
                "{shown} is truncated: its header describes a ring of {} lines, {} bytes, {} origins, \
                 which takes {want} bytes, but the file has {len}; copy the whole file",
                geometry.slots,
                geometry.data_words * 8,
                geometry.origin_slots
            )))
        }
        _ => {
            return Err(RingError::Geometry(format!(
                "{shown} has a corrupt header: it describes a ring of {} lines, {} data words, {} origins, \
                 which does not match the file's {len} bytes",
                geometry.slots, geometry.data_words, geometry.origin_slots
            )))
        }
    }
    let published_seq = h(hdr::PUBLISHED_SEQ);
    let floor_seq = h(hdr::FLOOR_SEQ);
    let claim_seq = h(CLAIM_SEQ);
    if published_seq == 0
        || floor_seq == 0
        || floor_seq > published_seq
        || claim_seq < published_seq
    {
        return Err(RingError::File(format!(
            "{shown} has a corrupt header: published seq {published_seq}, claimed seq {claim_seq}, \
             floor seq {floor_seq} (a ring has 1 <= floor <= published <= claimed)"
        )));
    }
    Ok(FileInfo {
        header: FileHeader {
            version,
            ring_id: h(hdr::RING_ID),
            epoch: h(hdr::EPOCH),
            published_seq,
            claim_seq,
            floor_seq,
            torn_before: h(hdr::TORN_TOTAL),
            file_len: len,
        },
        geometry,
    })
}

/// Copies the ring file at `path` into anonymous memory and recovers the
/// copy's layout (recovery is the caller's). Returns the region, its geometry and the
/// header as found in the file.
pub(crate) fn copy_file(path: &Path) -> Result<(Region, FileInfo), RingError> {
    let (mapped, len) = Mapped::open(path)?;
    let mut info = check(&mapped, len, path)?;
    let geometry = info.geometry;
    let src = mapped.words();
    let region = Region::anonymous(&geometry)?;
    let dst = region.words();
    // The frontier first: entries below it were complete before anything
    // after this load was copied.
    let published_seq = src[hdr::PUBLISHED_SEQ].load(Ordering::Acquire);
    for (i, (s, d)) in src.iter().zip(dst).enumerate() {
        // The claim and the frontier are set below.
        if matches!(
            i,
            hdr::CLAIM | CLAIM_SEQ | hdr::PUBLISHED_SEQ | hdr::PUBLISHED_POS
        ) {
            continue;
        }
        let v = s.load(Ordering::Relaxed);
        if v != 0 {
            d.store(v, Ordering::Relaxed);
        }
    }
    fence(Ordering::Acquire);
    let claim_seq = src[CLAIM_SEQ].load(Ordering::Relaxed);
    let claim_pos = src[hdr::CLAIM].load(Ordering::Relaxed);
    // The data position just past the frontier, from the copied slot of
    // the entry before it: the file's own PUBLISHED_POS word may already
    // belong to a later frontier.
    let floor = dst[hdr::FLOOR_SEQ].load(Ordering::Relaxed);
    let published_pos = if published_seq > floor {
        let at = geometry.slots_at() + ((published_seq - 1) % geometry.slots) as usize * SLOT_WORDS;
        let meta = dst[at + 2].load(Ordering::Relaxed);
        dst[at + 1].load(Ordering::Relaxed) + entry_words(meta_len(meta), meta_stamped(meta))
    } else {
        src[hdr::PUBLISHED_POS].load(Ordering::Relaxed)
    };
    dst[hdr::PUBLISHED_SEQ].store(published_seq, Ordering::Relaxed);
    dst[hdr::PUBLISHED_POS].store(published_pos, Ordering::Relaxed);
    region
        .claim()
        .store((claim_seq.max(published_seq), claim_pos.max(published_pos)));
    info.header.published_seq = published_seq;
    info.header.claim_seq = claim_seq.max(published_seq);
    upgrade_layout(&region, &geometry, Some(path))?;
    Ok((region, info))
}
