//! Many writers and readers on a small ring, with self-verifying messages.
//!
//! Asserts, for every reader: no torn entry (checksums), seqs strictly
//! increasing, times non-decreasing in seq order, each writer's counters in
//! order, and exact accounting: entries delivered + gap counts = the seq
//! range the reader covered.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringtail::entry::{Flags, Origin, SourceTime};
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig, Span};
use support::verify::{check, message};

const WRITERS: u32 = 4;
const PER_WRITER: u64 = 60_000;

fn small_ring() -> Arc<Ring> {
    let mut c = RingConfig::new(64);
    c.max_bytes = 4096;
    c.max_entry_len = 256;
    Arc::new(Ring::open(&c).unwrap())
}

/// What one reader saw over a seq range.
#[derive(Default)]
struct Tally {
    delivered: u64,
    missed: u64,
    first: Option<u64>,
    next: u64,
    last_time: u64,
    last_counter: Vec<Option<u64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            last_counter: vec![None; WRITERS as usize],
            ..Tally::default()
        }
    }

    fn take(&mut self, item: Read<'_>) {
        match item {
            Read::Entry(e) => {
                if self.first.is_none() {
                    self.first = Some(e.seq);
                    self.next = e.seq;
                }
                assert_eq!(e.seq, self.next, "seq skipped without a gap");
                assert!(
                    e.time >= self.last_time,
                    "time went backwards at seq {}",
                    e.seq
                );
                self.last_time = e.time;
                let (w, n) = check(e.msg).unwrap_or_else(|err| panic!("seq {}: {err}", e.seq));
                // Batched writers stamp every third message with its own
                // checksum: a stamp must never be torn from its message.
                if let Some(t) = e.source_time.ns() {
                    assert_eq!(
                        t,
                        stamp_of(e.msg),
                        "seq {}: stamp torn from its message",
                        e.seq
                    );
                }
                assert_eq!(
                    e.origin.source,
                    format!("writer-{w}"),
                    "entry carries another writer's origin"
                );
                let last = &mut self.last_counter[w as usize];
                assert!(
                    last.is_none_or(|l| n > l),
                    "writer {w} went back from {last:?} to {n}"
                );
                *last = Some(n);
                self.delivered += 1;
                self.next = e.seq + 1;
            }
            Read::Gap { first_seq, missed } => {
                if self.first.is_none() {
                    self.first = Some(first_seq);
                    self.next = first_seq;
                }
                assert_eq!(
                    first_seq, self.next,
                    "gap does not start where the reader was"
                );
                self.missed += missed;
                self.next = first_seq + missed;
            }
        }
    }

    fn assert_exact(&self, range_end: u64) {
        if let Some(first) = self.first {
            assert_eq!(self.next, range_end);
            assert_eq!(
                self.delivered + self.missed,
                range_end - first,
                "delivered + missed != appended"
            );
        }
    }
}

/// The stamp a batched writer gives a message: its checksum, cut to the 63
/// bits a source time holds.
fn stamp_of(msg: &[u8]) -> u64 {
    support::verify::fnv(msg) >> 1
}

/// Writes `per_writer` messages, in batches of 1 to `spread` when batched.
fn writer(ring: &Ring, w: u32, batched: bool, per_writer: u64, spread: u64) {
    let origin = ring.origin(Origin::new(format!("writer-{w}"))).unwrap();
    let mut n = 0;
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    while n < per_writer {
        if batched {
            buf.clear();
            spans.clear();
            for _ in 0..(1 + n % spread).min(per_writer - n) {
                let m = message(w, n, 200);
                let mut span = Span::new(buf.len() as u32, m.len() as u32, Flags::default());
                if n % 3 == 0 {
                    span = span.with_source_time(SourceTime::Kept(stamp_of(&m)));
                }
                spans.push(span);
                buf.extend_from_slice(&m);
                n += 1;
            }
            ring.append_batch(&origin, &buf, &spans).unwrap();
        } else {
            ring.append(&origin, Flags::default(), &message(w, n, 200));
            n += 1;
        }
    }
}

#[test]
fn concurrent_writers_and_readers_never_see_torn_entries() {
    stress(small_ring(), PER_WRITER, 13);
}

/// A ring big enough for streaming stores (64 MiB), lapped twice over in
/// bytes: writers switch between streaming and plain stores as followers
/// come near the head and fall back, and readers must see no difference.
#[test]
fn streaming_ring_under_writers_and_readers_never_shows_torn_entries() {
    let mut c = RingConfig::new(4096);
    c.max_bytes = 64 << 20;
    c.max_entry_len = 256;
    let ring = Arc::new(Ring::open(&c).unwrap());
    // About 136 bytes per message on average: 1M messages are 136 MB,
    // two laps of the data area; batches of up to 150 entries (streaming
    // starts at 64).
    stress(ring, 250_000, 150);
}

fn stress(ring: Arc<Ring>, per_writer: u64, spread: u64) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let ring = &ring;
                s.spawn(move || writer(ring, w, w % 2 == 0, per_writer, spread))
            })
            .collect();
        // Followers from the start: they must account for every seq.
        let followers: Vec<_> = (0..2)
            .map(|_| {
                let (ring, done) = (&ring, &done);
                s.spawn(move || {
                    let mut tally = Tally::new();
                    let mut cursor = ring.cursor(1, All);
                    let mut batch = ReadBatch::new();
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        match cursor.read(&mut batch, 16) {
                            ReadStatus::More => batch.iter().for_each(|r| tally.take(r)),
                            _ if finished => break,
                            _ => {
                                cursor.wait_blocking(std::time::Duration::from_millis(5));
                            }
                        }
                    }
                    tally.assert_exact(cursor.position());
                    tally
                })
            })
            .collect();
        // Snapshot readers, forward and backward, over and over.
        let snapshotters: Vec<_> = (0..2)
            .map(|i| {
                let (ring, done) = (&ring, &done);
                s.spawn(move || {
                    let mut batch = ReadBatch::new();
                    let mut snapshots = 0u64;
                    let mut missed = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let snap = ring.snapshot();
                        let mut tally = Tally::new();
                        if i == 0 {
                            let mut c = snap.cursor(All);
                            while c.read(&mut batch, 9) == ReadStatus::More {
                                batch.iter().for_each(|r| tally.take(r));
                            }
                            tally.assert_exact(snap.end());
                        } else {
                            let mut c = snap.rev(All);
                            let (mut delivered, mut gap) = (0, 0);
                            let mut prev = u64::MAX;
                            while c.read(&mut batch, 9) == ReadStatus::More {
                                for r in batch.iter() {
                                    match r {
                                        Read::Entry(e) => {
                                            assert!(e.seq < prev);
                                            prev = e.seq;
                                            check(e.msg).unwrap();
                                            delivered += 1;
                                        }
                                        Read::Gap { missed, .. } => gap += missed,
                                    }
                                }
                            }
                            assert_eq!(delivered + gap, snap.len());
                            tally.missed = gap;
                        }
                        snapshots += 1;
                        missed += tally.missed;
                    }
                    (snapshots, missed)
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let total = WRITERS as u64 * per_writer;
        assert_eq!(ring.published_seq(), total + 1);
        for f in followers {
            let t = f.join().unwrap();
            assert_eq!(
                t.delivered + t.missed,
                total,
                "a follower from seq 1 accounts for every entry"
            );
        }
        for s in snapshotters {
            let (snapshots, _missed) = s.join().unwrap();
            assert!(snapshots > 0);
        }
    });
}
