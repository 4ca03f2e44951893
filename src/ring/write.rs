//! Appending: claim, copy, publish.
//!
//! 1. **Claim** a seq range and a data range for the whole batch with one
//!    compare-and-swap of the 128-bit claim word. The clock is read inside
//!    the CAS loop, after the load that saw the previous claim, and raises a
//!    shared floor before the CAS, so times are non-decreasing in seq order
//!    even if the wall clock steps back.
//! 2. **Lap check.** The claimed slots and words were last used by entries
//!    one lap earlier; if any of those is still being copied by a writer
//!    that has not published yet, wait for it. With batches capped at a
//!    quarter of the ring this only happens when a writer stalls for a whole
//!    lap.
//! 3. **Copy** messages and slot words with relaxed stores, after a release
//!    fence that orders them after the claim (readers validate against the
//!    claim after copying: the seqlock pattern).
//! 4. **Publish** in claim order: wait until every earlier batch is
//!    published, then move the published frontier past this batch and wake
//!    followers (no syscall when none sleeps).

use std::ops::Range;

use super::region::{hdr, SLOT_WORDS};
use super::sync::{fence, spin_wait, store_streaming, streaming_fence, Ordering};
use super::{entry_words, meta, words_for, OriginHandle, Ring};
use crate::entry::{Flags, SourceTime};

/// One message of a batch: where it is in the caller's buffer, its flags,
/// and the producer's own timestamp if it gave one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
    pub flags: Flags,
    pub source_time: SourceTime,
}

impl Span {
    /// A span with no source time.
    pub fn new(start: u32, len: u32, flags: Flags) -> Span {
        Span {
            start,
            len,
            flags,
            source_time: SourceTime::None,
        }
    }

    pub fn with_source_time(self, source_time: SourceTime) -> Span {
        Span {
            source_time,
            ..self
        }
    }
}

/// A span that does not lie inside the buffer it was given with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("span {start}+{len} is outside the {buf_len}-byte buffer")]
pub struct SpanError {
    pub start: u32,
    pub len: u32,
    pub buf_len: usize,
}

impl Ring {
    /// Appends one message; returns its seq.
    pub fn append(&self, origin: &OriginHandle, flags: Flags, msg: &[u8]) -> u64 {
        let (msg, flags) = self.fit(msg, flags);
        let words = words_for(msg.len());
        let first = self.claim(1, words);
        self.wait_for_lap(first.seq, 1, first.pos, words);
        fence(Ordering::Release);
        let mut at = self.write_position(first.seq, first.pos, false);
        self.write_entry(&mut at, first.time, origin.id(), flags, None, msg);
        self.publish(first.seq, 1, &at);
        first.seq
    }

    /// Appends every span of `buf` as one entry each, in order, claiming
    /// room for as many of them at once as a batch may hold. Returns the
    /// seqs given to them.
    pub fn append_batch(
        &self,
        origin: &OriginHandle,
        buf: &[u8],
        spans: &[Span],
    ) -> Result<Range<u64>, SpanError> {
        if let Some(bad) = spans
            .iter()
            .find(|s| s.start as usize + s.len as usize > buf.len())
        {
            return Err(SpanError {
                start: bad.start,
                len: bad.len,
                buf_len: buf.len(),
            });
        }
        let mut seqs = self.published_seq()..self.published_seq();
        let mut rest = spans;
        let mut first_batch = true;
        while !rest.is_empty() {
            let (count, words) = self.batch_extent(rest);
            let claim = self.claim(count as u64, words);
            self.wait_for_lap(claim.seq, count as u64, claim.pos, words);
            fence(Ordering::Release);
            let streaming = self.streams(&claim, count);
            let mut at = self.write_position(claim.seq, claim.pos, streaming);
            let mut relay_lag = 0;
            for span in &rest[..count] {
                let msg = &buf[span.start as usize..(span.start + span.len) as usize];
                let (msg, flags) = self.fit(msg, span.flags);
                if let SourceTime::Original(t) = span.source_time {
                    relay_lag = relay_lag.max(claim.time.saturating_sub(t));
                }
                let stamp =
                    (span.source_time != SourceTime::None).then(|| span.source_time.to_word());
                self.write_entry(&mut at, claim.time, origin.id(), flags, stamp, msg);
            }
            if relay_lag > 0 {
                self.note_relay_lag(relay_lag);
            }
            self.publish(claim.seq, count as u64, &at);
            if first_batch {
                seqs.start = claim.seq;
                first_batch = false;
            }
            seqs.end = claim.seq + count as u64;
            rest = &rest[count..];
        }
        Ok(seqs)
    }

    /// Whether a batch of `count` entries at `claim` is stored with
    /// streaming stores: in a large ring, for a large batch, not on the
    /// first lap, where the kernel has just zeroed the pages into the cache
    /// and plain stores are the cheaper ones, and not while a follower reads
    /// close behind (see `NearHead`).
    #[inline(never)]
    fn streams(&self, claim: &Claimed, count: usize) -> bool {
        self.streaming
            && count >= STREAMING_MIN_BATCH
            && claim.seq > self.geometry.slots
            && claim.pos >= self.geometry.data_words
            && !self.near_head.recent(claim.seq, self.geometry.slots)
    }

    /// How many leading spans fit in one claim, and their data words.
    fn batch_extent(&self, spans: &[Span]) -> (usize, u64) {
        let mut words = 0;
        let mut count = 0;
        for span in spans.iter().take(self.max_batch_entries as usize) {
            let len = (span.len as usize).min(self.max_entry_len);
            let w = entry_words(len, span.source_time != SourceTime::None);
            if count > 0 && words + w > self.max_batch_words {
                break;
            }
            words += w;
            count += 1;
        }
        (count, words)
    }

    /// Cuts a message to the longest an entry holds, flagging it.
    fn fit<'m>(&self, msg: &'m [u8], flags: Flags) -> (&'m [u8], Flags) {
        if msg.len() > self.max_entry_len {
            (&msg[..self.max_entry_len], flags.with_truncated(true))
        } else {
            (msg, flags)
        }
    }

    fn claim(&self, count: u64, words: u64) -> Claimed {
        let word = self.region.claim();
        let mut current = word.load();
        loop {
            // Read after the load that saw the previous claim, whose clock
            // reading raised the floor before its CAS: so this reading is at
            // least the previous claim's (see `Clock`).
            let time = self.clock.now();
            match word.compare_exchange(current, (current.0 + count, current.1 + words)) {
                Ok(()) => {
                    return Claimed {
                        seq: current.0,
                        pos: current.1,
                        time,
                    }
                }
                Err(now) => current = now,
            }
        }
    }

    /// Waits until the entries one lap behind the claimed range are
    /// published, so that nothing still being copied gets overwritten.
    fn wait_for_lap(&self, seq: u64, count: u64, pos: u64, words: u64) {
        let need_seq = (seq + count).saturating_sub(self.geometry.slots);
        let need_pos = (pos + words).saturating_sub(self.geometry.data_words);
        let mut step = 0;
        loop {
            let published = self.region.word(hdr::PUBLISHED_SEQ).load(Ordering::Acquire);
            let published_pos = self.region.word(hdr::PUBLISHED_POS).load(Ordering::Relaxed);
            if published >= need_seq && published_pos >= need_pos {
                return;
            }
            spin_wait(&mut step);
        }
    }

    /// Where the entry with `seq` at data position `pos` goes. The two
    /// divisions happen once per claim; `write_entry` then steps with wraps.
    fn write_position(&self, seq: u64, pos: u64, streaming: bool) -> WriteAt {
        WriteAt {
            slot: (seq % self.geometry.slots) as usize,
            data: self.data_index(pos),
            pos,
            streaming,
        }
    }

    /// Writes one entry at `at` and moves `at` to the next entry. A stamped
    /// entry (one with a source time) has the stamp word first in its data,
    /// then the message.
    fn write_entry(
        &self,
        at: &mut WriteAt,
        time: u64,
        origin: u32,
        flags: Flags,
        stamp: Option<u64>,
        msg: &[u8],
    ) {
        let words = self.region.words();
        let data_at = self.geometry.data_at();
        let data_words = self.geometry.data_words as usize;
        let streaming = at.streaming;
        let mut data = at.data;
        if let Some(stamp) = stamp {
            if streaming {
                store_streaming(&words[data_at + data], stamp);
            } else {
                words[data_at + data].store(stamp, Ordering::Relaxed);
            }
            data += 1;
            if data == data_words {
                data = 0;
            }
        }
        let room = (data_words - data) * 8;
        if msg.len() <= room {
            super::copy_words_in(words, data_at + data, msg, streaming);
        } else {
            let (head, tail) = msg.split_at(room);
            super::copy_words_in(words, data_at + data, head, streaming);
            super::copy_words_in(words, data_at, tail, streaming);
        }
        let slot = self.geometry.slots_at() + at.slot * SLOT_WORDS;
        let meta = meta(msg.len(), stamp.is_some(), flags.bits(), origin);
        if streaming {
            store_streaming(&words[slot], time);
            store_streaming(&words[slot + 1], at.pos);
            store_streaming(&words[slot + 2], meta);
        } else {
            words[slot].store(time, Ordering::Relaxed);
            words[slot + 1].store(at.pos, Ordering::Relaxed);
            words[slot + 2].store(meta, Ordering::Relaxed);
        }
        let w = entry_words(msg.len(), stamp.is_some());
        at.pos += w;
        at.data += w as usize;
        if at.data >= data_words {
            at.data -= data_words;
        }
        at.slot += 1;
        if at.slot == self.geometry.slots as usize {
            at.slot = 0;
        }
    }

    /// Raises the ring's largest relay lag (see [`Ring::max_relay_lag`]).
    /// Loaded first: the word changes rarely, and a plain load keeps the
    /// cache line shared between writers.
    fn note_relay_lag(&self, lag: u64) {
        let word = self.region.word(hdr::MAX_RELAY_LAG);
        if word.load(Ordering::Relaxed) < lag {
            word.fetch_max(lag, Ordering::Relaxed);
        }
    }

    /// Publishes `count` entries from `seq` once all earlier ones are.
    fn publish(&self, seq: u64, count: u64, at: &WriteAt) {
        let end_pos = at.pos;
        if at.streaming {
            // The batch's streaming stores before the release store below.
            streaming_fence();
        }
        let published = self.region.word(hdr::PUBLISHED_SEQ);
        let mut step = 0;
        while published.load(Ordering::Acquire) != seq {
            spin_wait(&mut step);
        }
        self.region
            .word(hdr::PUBLISHED_POS)
            .store(end_pos, Ordering::Relaxed);
        published.store(seq + count, Ordering::Release);
        self.notifier.notify();
    }
}

/// The slot index, data word index and data position of the next entry a
/// writer stores.
struct WriteAt {
    slot: usize,
    data: usize,
    pos: u64,
    /// Stores bypass the cache (see `Ring::streaming`).
    streaming: bool,
}

/// Batches smaller than this use plain stores even in a large ring: the
/// fence that publishing streaming stores takes (a few hundred ns, while
/// the stores drain) is worth paying only over many entries.
const STREAMING_MIN_BATCH: usize = 64;

struct Claimed {
    seq: u64,
    pos: u64,
    time: u64,
}
