//! Interned origins: every distinct (source, labels) pair with entries in the
//! ring gets a 32-bit id that entries carry instead of the names.
//!
//! Promises:
//! - An id is never handed out twice in a ring's life (ids are 32-bit and
//!   skip ids still in use on the rare wrap), so a reader that resolves an
//!   id always gets the origin the entry was written with, or nothing.
//! - The table is bounded (`origin_slots`). A slot is reclaimed only when no
//!   [`OriginHandle`] holds its origin and no retained entry refers to it.
//!   Which entries refer to what is found by scanning the retained entries
//!   when the table is full, so appends pay nothing for it.
//! - The table lives in the ring's region, so a file-backed ring reopens
//!   with every origin its entries name.
//!
//! Interning takes a mutex; it happens once per registration, never per line.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::region::{hdr, Geometry, Region, ORIGIN_BYTES, ORIGIN_SLOT_WORDS};
use super::sync::{fence, Ordering};
use crate::entry::Origin;

/// Longest source name kept, in bytes; longer names are cut.
pub const MAX_SOURCE_LEN: usize = 255;

/// The id entries carry for their origin.
pub type OriginId = u32;

pub(crate) struct Interned {
    pub(crate) origin: Arc<Origin>,
    pub(crate) id: OriginId,
    /// Which origin slot of the region holds this origin.
    slot: u32,
}

/// A registered origin. Holding one keeps the origin (and its id) alive, so
/// a source holds its handle for as long as it may append.
#[derive(Clone)]
pub struct OriginHandle {
    pub(crate) interned: Arc<Interned>,
}

impl OriginHandle {
    pub fn id(&self) -> OriginId {
        self.interned.id
    }

    pub fn origin(&self) -> &Arc<Origin> {
        &self.interned.origin
    }
}

impl std::fmt::Debug for OriginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginHandle")
            .field("id", &self.interned.id)
            .field("source", &self.interned.origin.source)
            .finish()
    }
}

pub(crate) struct Origins {
    /// Allocation state; taken by interning and reclamation only.
    table: Mutex<Table>,
    /// id -> origin, for readers resolving ids they have not cached yet.
    by_id: RwLock<HashMap<OriginId, Arc<Interned>>>,
}

struct Table {
    dedup: HashMap<Arc<Origin>, Arc<Interned>>,
    free_slots: Vec<u32>,
    /// (published seq, unheld origins) when a reclamation last freed
    /// nothing: until the ring moves on or a handle is dropped, another scan
    /// would free nothing either, so a full table refuses fast.
    fruitless_at: Option<(u64, usize)>,
}

/// How many references the registry itself keeps to an [`Interned`]: one in
/// `dedup`, one in `by_id`. More means some handle is alive.
const REGISTRY_REFS: usize = 2;

impl Origins {
    /// Builds the registry from the region's origin table (all free in a
    /// fresh region).
    pub(crate) fn load(region: &Region, geometry: &Geometry) -> Origins {
        let mut dedup = HashMap::new();
        let mut by_id = HashMap::new();
        let mut free_slots = Vec::new();
        for slot in (0..geometry.origin_slots as u32).rev() {
            let at = geometry.origins_at() + slot as usize * ORIGIN_SLOT_WORDS;
            let id = region.word(at).load(Ordering::Acquire);
            let decoded = (id != 0 && id <= u32::MAX as u64)
                .then(|| {
                    let len = region.word(at + 1).load(Ordering::Relaxed) as usize;
                    let mut bytes = Vec::with_capacity(len.min(ORIGIN_BYTES));
                    super::copy_words_out(
                        region.words(),
                        at + 2,
                        len.min(ORIGIN_BYTES),
                        &mut bytes,
                        false,
                    );
                    decode(&bytes)
                })
                .flatten();
            match decoded {
                Some(origin) => {
                    let origin = Arc::new(origin);
                    let interned = Arc::new(Interned {
                        origin: origin.clone(),
                        id: id as u32,
                        slot,
                    });
                    dedup.insert(origin, interned.clone());
                    by_id.insert(id as u32, interned);
                }
                None => {
                    // Clear only a slot that held something undecodable: a
                    // store to every free slot would dirty the whole table's
                    // pages (32 MiB by default) for nothing.
                    if id != 0 {
                        region.word(at).store(0, Ordering::Release);
                    }
                    free_slots.push(slot);
                }
            }
        }
        Origins {
            table: Mutex::new(Table {
                dedup,
                free_slots,
                fruitless_at: None,
            }),
            by_id: RwLock::new(by_id),
        }
    }

    /// Interns `origin`, reclaiming unused slots when the table is full.
    /// `published` gives the published seq and `referenced` the ids that
    /// retained entries refer to (a scan, called only when the table is full).
    pub(crate) fn intern(
        &self,
        region: &Region,
        geometry: &Geometry,
        origin: Origin,
        published: impl Fn() -> u64,
        referenced: impl Fn() -> HashSet<OriginId>,
    ) -> Option<OriginHandle> {
        let origin = fit(origin);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = table.dedup.get(&origin) {
            return Some(OriginHandle {
                interned: found.clone(),
            });
        }
        if table.free_slots.is_empty() {
            self.reclaim(region, geometry, &mut table, published(), referenced);
        }
        let slot = table.free_slots.pop()?;
        let id = self.next_id(region);
        let bytes = encode(&origin);
        let at = geometry.origins_at() + slot as usize * ORIGIN_SLOT_WORDS;
        super::copy_words_in(region.words(), at + 2, &bytes, false);
        region
            .word(at + 1)
            .store(bytes.len() as u64, Ordering::Relaxed);
        // Published last: a slot with an id is complete, even after a crash.
        region.word(at).store(id as u64, Ordering::Release);
        let origin = Arc::new(origin);
        let interned = Arc::new(Interned {
            origin: origin.clone(),
            id,
            slot,
        });
        table.dedup.insert(origin, interned.clone());
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, interned.clone());
        Some(OriginHandle { interned })
    }

    /// Hands out the next id, skipping 0 and ids still in use after a wrap.
    fn next_id(&self, region: &Region) -> OriginId {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        let word = region.word(hdr::NEXT_ORIGIN_ID);
        loop {
            let raw = word.load(Ordering::Relaxed);
            let id = (raw as u32).max(1);
            word.store(id.wrapping_add(1) as u64, Ordering::Relaxed);
            if !by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// Frees the slots of origins that no handle holds and no retained entry
    /// refers to; returns whether it freed any.
    fn reclaim(
        &self,
        region: &Region,
        geometry: &Geometry,
        table: &mut Table,
        published: u64,
        referenced: impl Fn() -> HashSet<OriginId>,
    ) -> bool {
        let unheld: Vec<Arc<Interned>> = table
            .dedup
            .values()
            .filter(|i| Arc::strong_count(i) <= REGISTRY_REFS)
            .cloned()
            .collect();
        let state = (published, unheld.len());
        if unheld.is_empty() || table.fruitless_at == Some(state) {
            return false;
        }
        // `strong_count` is a relaxed load: this fence pairs with the release
        // decrement of the last handle's drop, so every entry appended
        // through that handle (published before the drop) is seen by the
        // scan. New entries need a live handle, so none can appear for these
        // origins after this point. (Through the loom shim like every
        // other fence of the ring; loom does not model std's `Arc` count,
        // so under loom the fence orders the model's own accesses only.)
        fence(Ordering::Acquire);
        let referenced = referenced();
        let dead: Vec<Arc<Interned>> = unheld
            .into_iter()
            .filter(|i| !referenced.contains(&i.id))
            .collect();
        if dead.is_empty() {
            table.fruitless_at = Some(state);
            return false;
        }
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        for interned in dead {
            table.dedup.remove(&interned.origin);
            by_id.remove(&interned.id);
            let at = geometry.origins_at() + interned.slot as usize * ORIGIN_SLOT_WORDS;
            region.word(at).store(0, Ordering::Release);
            table.free_slots.push(interned.slot);
        }
        true
    }

    /// The origin with this id, if it is still interned.
    pub(crate) fn resolve(&self, id: OriginId) -> Option<Arc<Origin>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|i| i.origin.clone())
    }

    /// Every interned origin with its id.
    pub(crate) fn all(&self) -> Vec<(OriginId, Arc<Origin>)> {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = by_id.values().map(|i| (i.id, i.origin.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Cuts an origin to what its slot can hold: the source to
/// [`MAX_SOURCE_LEN`] bytes, then labels dropped from the end until the
/// encoding fits. What is interned is exactly what a reopen will decode.
fn fit(mut origin: Origin) -> Origin {
    if origin.source.len() > MAX_SOURCE_LEN {
        let mut cut = MAX_SOURCE_LEN;
        while !origin.source.is_char_boundary(cut) {
            cut -= 1;
        }
        origin.source.truncate(cut);
    }
    while encoded_len(&origin) > ORIGIN_BYTES {
        let mut labels = origin.labels().to_vec();
        labels.pop();
        let mut shorter = Origin::new(std::mem::take(&mut origin.source));
        for (k, v) in labels {
            shorter.set_label(k, v);
        }
        origin = shorter;
    }
    origin
}

fn encoded_len(origin: &Origin) -> usize {
    4 + origin.source.len()
        + origin
            .labels()
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
}

/// `[u16 len][source][u16 count]([u16 len][key][u16 len][value])*`, little-endian.
fn encode(origin: &Origin) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(origin));
    let put = |s: &str, out: &mut Vec<u8>| {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    put(&origin.source, &mut out);
    out.extend_from_slice(&(origin.labels().len() as u16).to_le_bytes());
    for (k, v) in origin.labels() {
        put(k, &mut out);
        put(v, &mut out);
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Origin> {
    let mut rest = bytes;
    let u16_at = |rest: &mut &[u8]| -> Option<usize> {
        let (n, tail) = rest.split_first_chunk::<2>()?;
        *rest = tail;
        Some(u16::from_le_bytes(*n) as usize)
    };
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a str> {
        if rest.len() < n {
            return None;
        }
        let (s, tail) = rest.split_at(n);
        *rest = tail;
        std::str::from_utf8(s).ok()
    }
    let n = u16_at(&mut rest)?;
    let mut origin = Origin::new(take(&mut rest, n)?);
    let count = u16_at(&mut rest)?;
    for _ in 0..count {
        let n = u16_at(&mut rest)?;
        let k = take(&mut rest, n)?;
        let n = u16_at(&mut rest)?;
        let v = take(&mut rest, n)?;
        origin.set_label(k, v);
    }
    Some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let o = Origin::new("web.out")
            .with_label("container_name", "web")
            .with_label("image", "nginx:1");
        assert_eq!(decode(&encode(&o)), Some(o));
    }

    #[test]
    fn oversized_origins_are_cut_to_fit() {
        let mut o = Origin::new("s".repeat(1000));
        for i in 0..40 {
            o.set_label(format!("k{i:02}"), "v".repeat(20));
        }
        let f = fit(o);
        assert_eq!(f.source.len(), MAX_SOURCE_LEN);
        assert!(encoded_len(&f) <= ORIGIN_BYTES);
        assert_eq!(decode(&encode(&f)).as_ref(), Some(&f));
    }
}
