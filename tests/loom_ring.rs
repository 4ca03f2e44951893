//! Model checks of the ring's claim / copy / publish / validate protocol
//! under loom: `cargo test --release --features loom --test loom_ring`.
//!
//! Rings here are tiny (4 slots, 8 data words) so that a handful of appends
//! laps them and every interleaving of claims, copies, publications and
//! reader validations is explored (up to the preemption bound).
//!
//! Messages are two words that both hold the same tag; a torn read (words
//! of two different entries) or an entry with another writer's origin is
//! caught by the reader itself.
#![cfg(feature = "loom")]

use std::sync::Arc;

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{All, OriginHandle, Read, ReadBatch, ReadStatus, Ring, RingConfig};

/// Runs a model with a preemption bound (`LOOM_MAX_PREEMPTIONS` overrides
/// it for deeper runs) and prints how many executions loom explored, so a
/// model that silently stopped exploring shows up in the test output.
fn model(default_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    static EXECUTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    EXECUTIONS.store(0, std::sync::atomic::Ordering::Relaxed);
    let counted = move || {
        EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    };
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_bound),
    );
    b.max_branches = 20_000;
    b.check(counted);
    let n = EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed);
    println!("loom explored {n} executions");
    assert!(n > 1, "the model explored only one execution");
}

fn tiny_ring() -> (Arc<Ring>, Vec<OriginHandle>) {
    let mut c = RingConfig::new(4);
    c.max_entry_len = 16;
    c.max_bytes = 64;
    c.max_origins = 2;
    let ring = Arc::new(Ring::open(&c).unwrap());
    // Interned before any thread starts: interning takes std locks, which
    // loom does not model.
    let origins = (0..2)
        .map(|w| ring.origin(Origin::new(format!("w{w}"))).unwrap())
        .collect();
    (ring, origins)
}

fn message(writer: u64, counter: u64) -> [u8; 16] {
    let tag = (writer << 32 | counter).to_le_bytes();
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&tag);
    m[8..].copy_from_slice(&tag);
    m
}

/// Checks one entry; returns (writer, counter).
fn check(e: &ringtail::entry::EntryRef<'_>) -> (u64, u64) {
    assert_eq!(e.msg.len(), 16, "seq {} has a torn length", e.seq);
    assert_eq!(e.msg[..8], e.msg[8..], "seq {} is torn", e.seq);
    let tag = u64::from_le_bytes(e.msg[..8].try_into().unwrap());
    let (w, n) = (tag >> 32, tag & 0xffff_ffff);
    assert_eq!(
        e.origin.source,
        format!("w{w}"),
        "seq {} has another writer's origin",
        e.seq
    );
    (w, n)
}

/// Makes `reads` reads from `from` (no waiting: the model decides what
/// has been published by then), checking every entry and the exact
/// accounting over the range covered; returns (delivered, missed, end).
fn follow_for(ring: &Ring, from: u64, reads: usize) -> (u64, u64, u64) {
    let mut cursor = ring.cursor(from, All);
    let mut batch = ReadBatch::new();
    let (mut delivered, mut missed) = (0, 0);
    let mut next = from;
    let mut last = [None::<u64>; 2];
    for _ in 0..reads {
        if cursor.read(&mut batch, 3) != ReadStatus::More {
            loom::thread::yield_now();
            continue;
        }
        for r in batch.iter() {
            match r {
                Read::Entry(e) => {
                    assert_eq!(e.seq, next);
                    let (w, n) = check(&e);
                    assert!(
                        last[w as usize].is_none_or(|l| n > l),
                        "writer order broken"
                    );
                    last[w as usize] = Some(n);
                    delivered += 1;
                    next += 1;
                }
                Read::Gap {
                    first_seq,
                    missed: m,
                } => {
                    assert_eq!(first_seq, next);
                    missed += m;
                    next += m;
                }
            }
        }
    }
    assert_eq!(next, cursor.position());
    assert_eq!(delivered + missed, cursor.position() - from);
    (delivered, missed, cursor.position())
}

/// Two writers publish concurrently; a follower from the start sees both
/// entries, whole, in seq order, and never skips one still being copied.
#[test]
fn two_writers_one_follower() {
    model(2, || {
        let (ring, origins) = tiny_ring();
        let writers: Vec<_> = origins
            .into_iter()
            .enumerate()
            .map(|(w, o)| {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    ring.append(&o, Flags::default(), &message(w as u64, 0));
                })
            })
            .collect();
        let (_, missed, _) = follow_for(&ring, 1, 2);
        assert_eq!(
            missed, 0,
            "nothing can be evicted from a 4-slot ring by 2 entries"
        );
        for w in writers {
            w.join().unwrap();
        }
        // After both writers are done, a reader sees both, whole and in order.
        assert_eq!(follow_for(&ring, 1, 1), (2, 0, 3));
    });
}

/// A writer laps a ring while a reader copies: the reader gets only whole
/// entries, and what it lost comes back as gaps with exact counts.
#[test]
fn writer_laps_reader() {
    model(2, || {
        let (ring, origins) = tiny_ring();
        let o = origins[0].clone();
        for n in 0..3 {
            ring.append(&o, Flags::default(), &message(0, n));
        }
        // Two more lap the 4-slot ring: seq 5 takes the slot of seq 1.
        let writer = {
            let ring = ring.clone();
            loom::thread::spawn(move || {
                for n in 3..5 {
                    ring.append(&o, Flags::default(), &message(0, n));
                }
            })
        };
        let snap = ring.snapshot();
        let mut cursor = snap.cursor(All);
        let mut batch = ReadBatch::new();
        let (mut delivered, mut missed) = (0, 0);
        while cursor.read(&mut batch, 2) == ReadStatus::More {
            for r in batch.iter() {
                match r {
                    Read::Entry(e) => {
                        let (_, n) = check(&e);
                        assert_eq!(n + 1, e.seq, "entry content belongs to another seq");
                        delivered += 1;
                    }
                    Read::Gap { missed: m, .. } => missed += m,
                }
            }
        }
        assert_eq!(delivered + missed, snap.len());
        writer.join().unwrap();
    });
}

/// Two writers whose appends lap a ring that was already full, while a
/// follower reads from the start: it gets whole entries and exact gaps.
#[test]
fn two_writers_lap_with_follower() {
    // Three threads: bound 2 takes over ten minutes; 1 keeps CI fast.
    model(1, || {
        let (ring, origins) = tiny_ring();
        for n in 0..3 {
            ring.append(&origins[0], Flags::default(), &message(0, 100 + n));
        }
        let writers: Vec<_> = origins
            .into_iter()
            .enumerate()
            .map(|(w, o)| {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for n in 0..2 {
                        ring.append(&o, Flags::default(), &message(w as u64, 200 + n));
                    }
                })
            })
            .collect();
        follow_for(&ring, 1, 2);
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(ring.published_seq(), 8);
        let (delivered, missed, end) = follow_for(&ring, 1, 3);
        assert_eq!(
            (delivered, missed, end),
            (4, 3, 8),
            "4 slots: the last 4 are retained"
        );
    });
}
