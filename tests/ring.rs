//! Functional tests of the ring through its public API: capacity rules,
//! gaps with exact counts, cursors, snapshots, time seeks, origins, and a
//! ring file reopened after a clean close.

use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig, Select, Span};

fn ring(max_lines: u64, max_bytes: u64) -> Ring {
    let mut c = RingConfig::new(max_lines);
    c.max_bytes = max_bytes;
    c.max_entry_len = 64;
    c.max_origins = 8;
    Ring::open(&c).unwrap()
}

/// Reads everything a cursor yields until it is caught up or done.
fn drain<S: Select>(
    cursor: &mut ringtail::ring::Cursor<'_, S>,
) -> (Vec<(u64, String, Vec<u8>)>, u64) {
    let mut batch = ReadBatch::new();
    let mut entries = Vec::new();
    let mut missed = 0;
    while cursor.read(&mut batch, 7) == ReadStatus::More {
        for r in batch.iter() {
            match r {
                Read::Entry(e) => entries.push((e.seq, e.origin.source.clone(), e.msg.to_vec())),
                Read::Gap { missed: m, .. } => missed += m,
            }
        }
    }
    (entries, missed)
}

#[test]
fn appends_get_increasing_seqs_and_times() {
    let r = ring(16, 4096);
    let o = r.origin(Origin::new("a")).unwrap();
    let s1 = r.append(&o, Flags::default(), b"one");
    let s2 = r.append(&o, Flags::default(), b"two");
    assert_eq!((s1, s2), (1, 2));
    let (entries, missed) = drain(&mut r.snapshot().cursor(All));
    assert_eq!(missed, 0);
    assert_eq!(
        entries,
        vec![
            (1, "a".into(), b"one".to_vec()),
            (2, "a".into(), b"two".to_vec())
        ]
    );
}

#[test]
fn count_limit_evicts_oldest() {
    let r = ring(8, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..20u32 {
        r.append(&o, Flags::default(), format!("m{i}").as_bytes());
    }
    let snap = r.snapshot();
    assert_eq!((snap.first(), snap.end()), (13, 21));
    let (entries, missed) = drain(&mut snap.cursor(All));
    assert_eq!(missed, 0);
    assert_eq!(entries.len(), 8);
    assert_eq!(entries[0].2, b"m12");
    let st = r.stats();
    assert_eq!(
        (st.retained, st.appended_total, st.evicted_total),
        (8, 20, 12)
    );
}

#[test]
fn byte_limit_evicts_oldest() {
    // 64 words of data; 24-byte messages take 3 words: at most 21 fit.
    let r = ring(1000, 512);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..100u32 {
        r.append(&o, Flags::default(), format!("{i:024}").as_bytes());
    }
    let snap = r.snapshot();
    assert_eq!(snap.end(), 101);
    assert_eq!(snap.len(), 21);
    let (entries, missed) = drain(&mut snap.cursor(All));
    assert_eq!(missed, 0);
    assert_eq!(entries.len(), 21);
    assert_eq!(entries.last().unwrap().2, format!("{:024}", 99).as_bytes());
    // Messages wrap around the end of the data area and come back whole.
    for (seq, _, msg) in entries {
        assert_eq!(msg, format!("{:024}", seq - 1).as_bytes());
    }
}

#[test]
fn lapped_cursor_gets_exact_gap_then_resumes() {
    let r = ring(8, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    r.append(&o, Flags::default(), b"first");
    let mut cursor = r.cursor(1, All);
    for i in 0..30u32 {
        r.append(&o, Flags::default(), format!("m{i}").as_bytes());
    }
    let (entries, missed) = drain(&mut cursor);
    // 31 appended from seq 1 on: 8 retained, 23 missed.
    assert_eq!(missed, 23);
    assert_eq!(entries.len(), 8);
    assert_eq!(entries[0].0, 24);
    assert_eq!(cursor.position(), 32);
    r.append(&o, Flags::default(), b"after");
    let (entries, missed) = drain(&mut cursor);
    assert_eq!((entries.len(), missed), (1, 0));
}

#[test]
fn lapped_snapshot_reader_resumes_ahead_of_the_writers() {
    let r = ring(1024, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..1024u32 {
        r.append(&o, Flags::default(), format!("m{i}").as_bytes());
    }
    let snap = r.snapshot();
    assert_eq!((snap.first(), snap.end()), (1, 1025));
    let mut cursor = snap.cursor(All);
    // The writers move 10 entries past the snapshot, evicting seqs 1..=10.
    for i in 0..10u32 {
        r.append(&o, Flags::default(), format!("n{i}").as_bytes());
    }
    let (entries, missed) = drain(&mut cursor);
    // The reader resumes four times the writers' progress (40) past the
    // oldest retained entry (11), and the gap counts everything it skipped.
    assert_eq!(entries.first().unwrap().0, 51);
    assert_eq!(missed, 50);
    assert_eq!(entries.len() as u64 + missed, snap.len());
    assert_eq!(entries.last().unwrap().0, 1024);
}

#[test]
fn cursor_resumes_without_loss_or_duplicate() {
    let r = ring(64, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..10u32 {
        r.append(&o, Flags::default(), format!("m{i}").as_bytes());
    }
    let mut batch = ReadBatch::new();
    let mut c = r.snapshot().cursor(All);
    c.read(&mut batch, 4);
    let stop = c.position();
    assert_eq!(stop, 5);
    let (rest, missed) = drain(&mut r.cursor(stop, All));
    assert_eq!(missed, 0);
    assert_eq!(rest.first().unwrap().0, 5);
    assert_eq!(rest.len(), 6);
}

#[test]
fn reverse_reads_newest_first_and_reports_evicted_tail() {
    let r = ring(8, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..8u32 {
        r.append(&o, Flags::default(), format!("m{i}").as_bytes());
    }
    let snap = r.snapshot();
    let mut rev = snap.rev(All);
    let mut batch = ReadBatch::new();
    assert_eq!(rev.read(&mut batch, 3), ReadStatus::More);
    let seqs: Vec<u64> = batch
        .iter()
        .filter_map(|r| match r {
            Read::Entry(e) => Some(e.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![8, 7, 6]);
    // Evict everything the reverse reader has not reached yet.
    for i in 0..5u32 {
        r.append(&o, Flags::default(), format!("n{i}").as_bytes());
    }
    assert_eq!(rev.read(&mut batch, 3), ReadStatus::More);
    let items: Vec<String> = batch
        .iter()
        .map(|r| match r {
            Read::Entry(e) => format!("e{}", e.seq),
            Read::Gap { first_seq, missed } => format!("gap{first_seq}+{missed}"),
        })
        .collect();
    assert_eq!(items, vec!["gap1+5"]);
    assert_eq!(rev.read(&mut batch, 3), ReadStatus::End);
}

#[test]
fn follow_sees_only_new_entries() {
    let r = ring(16, 4096);
    let o = r.origin(Origin::new("a")).unwrap();
    r.append(&o, Flags::default(), b"old");
    let mut f = r.follow(All);
    let mut batch = ReadBatch::new();
    assert_eq!(f.read(&mut batch, 10), ReadStatus::CaughtUp);
    assert!(!f.wait_blocking(std::time::Duration::from_millis(1)));
    r.append(&o, Flags::default(), b"new");
    assert!(f.wait_blocking(std::time::Duration::from_secs(10)));
    let (entries, _) = drain(&mut f);
    assert_eq!(entries, vec![(2, "a".into(), b"new".to_vec())]);
}

#[test]
fn blocking_follower_wakes_on_append_from_another_thread() {
    let r = std::sync::Arc::new(ring(16, 4096));
    let o = r.origin(Origin::new("a")).unwrap();
    let f = r.follow(All);
    std::thread::scope(|s| {
        s.spawn(|| r.append(&o, Flags::default(), b"x"));
        assert!(f.wait_blocking(std::time::Duration::from_secs(30)));
    });
}

#[test]
fn batch_append_splits_into_claims_and_keeps_order() {
    let r = ring(16, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    let buf: Vec<u8> = (0..10u8).flat_map(|i| [b'a' + i; 5]).collect();
    let spans: Vec<Span> = (0..10)
        .map(|i| Span::new(i * 5, 5, Flags::default().with_stream(Some(Stream::Stderr))))
        .collect();
    let seqs = r.append_batch(&o, &buf, &spans).unwrap();
    assert_eq!(seqs, 1..11);
    let (entries, _) = drain(&mut r.snapshot().cursor(All));
    assert_eq!(entries.len(), 10);
    assert_eq!(entries[3].2, b"ddddd");
    let bad = [Span::new(48, 5, Flags::default())];
    assert!(r.append_batch(&o, &buf, &bad).is_err());
}

#[test]
fn long_messages_are_cut_and_flagged() {
    let r = ring(16, 4096);
    let o = r.origin(Origin::new("a")).unwrap();
    r.append(&o, Flags::default(), &[b'x'; 100]);
    let snap = r.snapshot();
    let mut batch = ReadBatch::new();
    snap.cursor(All).read(&mut batch, 10);
    let Some(Read::Entry(e)) = batch.iter().next() else {
        panic!("no entry")
    };
    assert_eq!(e.msg.len(), 64);
    assert!(e.flags.truncated());
}

struct OnlySource(&'static str);
impl Select for OnlySource {
    fn origin(&self, o: &Origin) -> bool {
        o.source == self.0
    }
}

struct Contains(&'static [u8]);
impl Select for Contains {
    fn entry(&self, e: &ringtail::entry::EntryRef<'_>) -> bool {
        e.msg.windows(self.0.len()).any(|w| w == self.0)
    }
}

#[test]
fn filters_account_for_every_entry() {
    let r = ring(64, 64 * 1024);
    let a = r.origin(Origin::new("a")).unwrap();
    let b = r
        .origin(Origin::new("b").with_label("container_name", "web"))
        .unwrap();
    for i in 0..20u32 {
        let o = if i % 2 == 0 { &a } else { &b };
        r.append(o, Flags::default(), format!("msg {i}").as_bytes());
    }
    let snap = r.snapshot();
    let mut batch = ReadBatch::new();
    let mut c = snap.cursor(OnlySource("b"));
    let (mut delivered, mut filtered) = (0, 0);
    while c.read(&mut batch, 6) == ReadStatus::More {
        for r in batch.iter() {
            if let Read::Entry(e) = r {
                assert_eq!(e.origin.label("container_name"), Some("web"));
                delivered += 1;
            }
        }
        filtered += batch.filtered();
    }
    assert_eq!((delivered, filtered), (10, 10));
    let (entries, _) = drain(&mut snap.cursor(Contains(b"msg 1")));
    let seqs: Vec<u64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(seqs, vec![2, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
}

#[test]
fn time_seek_finds_first_entry_at_or_after() {
    let r = ring(64, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    let mut times = Vec::new();
    for i in 0..20u32 {
        r.append(&o, Flags::default(), format!("{i}").as_bytes());
    }
    let mut batch = ReadBatch::new();
    r.snapshot().cursor(All).read(&mut batch, 100);
    for item in batch.iter() {
        if let Read::Entry(e) = item {
            times.push((e.seq, e.time));
        }
    }
    assert!(times.windows(2).all(|w| w[0].1 <= w[1].1));
    let (seq, t) = times[7];
    let first_with_t = times.iter().find(|x| x.1 == t).unwrap().0;
    assert_eq!(r.snapshot().seek_time(t), first_with_t.min(seq));
    assert_eq!(r.snapshot().seek_time(u64::MAX), 21);
    assert_eq!(r.snapshot().seek_time(0), 1);
}

#[test]
fn origins_are_interned_and_reclaimed_when_unused() {
    let r = ring(8, 4096);
    let a1 = r.origin(Origin::new("a")).unwrap();
    let a2 = r.origin(Origin::new("a")).unwrap();
    assert_eq!(a1.id(), a2.id());
    // 8 origin slots: fill them while holding the handles.
    let held: Vec<_> = (0..7)
        .map(|i| r.origin(Origin::new(format!("s{i}"))).unwrap())
        .collect();
    assert!(r.origin(Origin::new("one-too-many")).is_err());
    // Released handles whose entries are gone can be reclaimed.
    let last_id = held.last().unwrap().id();
    drop(held);
    let fresh = r.origin(Origin::new("fresh")).unwrap();
    assert!(fresh.id() > last_id, "ids are never reused");
    // An origin whose entries are still in the ring is not reclaimed.
    let keep = r.origin(Origin::new("kept")).unwrap();
    r.append(&keep, Flags::default(), b"still here");
    let keep_id = keep.id();
    drop(keep);
    for i in 0..6 {
        let _ = r.origin(Origin::new(format!("t{i}")));
    }
    let (entries, _) = drain(&mut r.snapshot().cursor(All));
    assert!(entries.iter().any(|e| e.1 == "kept"));
    assert!(r.origins().iter().any(|(id, _)| *id == keep_id));
}

#[test]
fn bad_geometry_is_a_clear_error() {
    let mut c = RingConfig::new(2);
    assert!(Ring::open(&c)
        .unwrap_err()
        .to_string()
        .contains("at least 4"));
    c = RingConfig::new(100);
    c.max_bytes = 100;
    let err = Ring::open(&c).unwrap_err().to_string();
    assert!(err.contains("four of the longest lines"), "{err}");
}

#[test]
fn ring_ids_are_random_per_ring_and_kept_by_a_ring_file() {
    let (a, b) = (ring(8, 4096), ring(8, 4096));
    assert!(a.id() != 0 && b.id() != 0 && a.id() != b.id());
    let dir = tempfile::tempdir().unwrap();
    let mut c = RingConfig::new(32);
    c.file = Some(dir.path().join("ring"));
    let first = Ring::open(&c).unwrap().id();
    assert_eq!(Ring::open(&c).unwrap().id(), first, "reopened: same ring");
    c.reset = true;
    assert_ne!(Ring::open(&c).unwrap().id(), first, "reset: a new ring");
}

#[test]
fn ring_file_reopens_with_entries_seqs_and_origins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let mut c = RingConfig::new(32);
    c.file = Some(path.clone());
    {
        let r = Ring::open(&c).unwrap();
        assert!(!r.recovery().reopened);
        let o = r
            .origin(Origin::new("svc").with_label("container_name", "web"))
            .unwrap();
        for i in 0..40u32 {
            r.append(
                &o,
                Flags::default().with_stream(Some(Stream::Stdout)),
                format!("line {i}").as_bytes(),
            );
        }
        r.flush().unwrap();
    }
    let r = Ring::open(&c).unwrap();
    let rec = r.recovery();
    assert!(rec.reopened);
    assert_eq!((rec.torn, rec.intact, rec.epoch), (0, 32, 2));
    let (entries, missed) = drain(&mut r.snapshot().cursor(All));
    assert_eq!(missed, 0);
    assert_eq!(entries.len(), 32);
    assert_eq!(entries[0], (9, "svc".into(), b"line 8".to_vec()));
    let o = r
        .origin(Origin::new("svc").with_label("container_name", "web"))
        .unwrap();
    assert_eq!(r.append(&o, Flags::default(), b"after"), 41);
    // Another geometry is refused unless a reset is asked for.
    let mut other = c.clone();
    other.max_lines = 64;
    other.max_bytes = c.max_bytes;
    drop(r);
    let err = Ring::open(&other).err().unwrap().to_string();
    assert!(err.contains("--ring-reset"), "{err}");
    other.reset = true;
    let r = Ring::open(&other).unwrap();
    assert_eq!(r.stats().retained, 0);
}

#[test]
fn entry_times_agree_with_wall_clock_reads_around_the_append() {
    // Clients ask for `since=<now>` and then expect what is appended next;
    // the ring's clock must not lag the wall clock for that to hold.
    let r = ring(64, 64 * 1024);
    let o = r.origin(Origin::new("a")).unwrap();
    for _ in 0..50 {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let seq = r.append(&o, Flags::default(), b"x");
        let mut batch = ReadBatch::new();
        r.cursor(seq, All).read(&mut batch, 1);
        let Some(Read::Entry(e)) = batch.iter().next() else {
            panic!("entry {seq} missing")
        };
        assert!(
            e.time >= before,
            "entry time {} is before the wall clock read {before}",
            e.time
        );
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(
            e.time <= after,
            "entry time {} is after the wall clock read {after}",
            e.time
        );
    }
}

#[test]
fn behind_measures_the_nearer_limit() {
    // 8 entries or 64 words; 24-byte messages take 3 words.
    let r = ring(8, 512);
    let o = r.origin(Origin::new("a")).unwrap();
    assert_eq!(r.behind(1), 0.0, "nothing published: nobody is behind");
    for i in 0..4u32 {
        r.append(&o, Flags::default(), format!("{i:024}").as_bytes());
    }
    // Four of eight entries (12 of 64 words) lie ahead of seq 1.
    assert_eq!(r.behind(1), 0.5);
    assert_eq!(r.behind(4), 0.125);
    assert_eq!(r.behind(5), 0.0, "caught up");
    for i in 4..8u32 {
        r.append(&o, Flags::default(), format!("{i:024}").as_bytes());
    }
    assert_eq!(r.behind(1), 1.0, "the next append evicts seq 1");
    r.append(&o, Flags::default(), b"x");
    assert_eq!(r.behind(1), 1.0, "evicted");

    // By bytes: 7 words each, the entry limit (1000) is far.
    let r = ring(1000, 512);
    let o = r.origin(Origin::new("a")).unwrap();
    for i in 0..3u32 {
        r.append(&o, Flags::default(), format!("{i:056}").as_bytes());
    }
    assert_eq!(r.behind(1), 21.0 / 64.0);
}

/// Entries with a source time keep it, of either kind, through wraps of the
/// data region (the stamp word and the message may each wrap), mixed with
/// entries without one; the byte limit counts the stamp word.
#[test]
fn source_times_round_trip_through_wraps_and_count_against_the_byte_limit() {
    use ringtail::entry::SourceTime;
    // 9 data words: a stamped 8-byte message takes 2, an unstamped 1.
    let mut c = RingConfig::new(64);
    c.max_bytes = 72;
    c.max_entry_len = 8;
    let r = Ring::open(&c).unwrap();
    let o = r.origin(Origin::new("a")).unwrap();
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let msg = format!("m{i:06}");
        let st = match i % 3 {
            0 => SourceTime::None,
            1 => SourceTime::Kept(1_000 + i),
            _ => SourceTime::Original(2_000 + i),
        };
        let span = Span::new(0, msg.len() as u32, Flags::default()).with_source_time(st);
        let seqs = r.append_batch(&o, msg.as_bytes(), &[span]).unwrap();
        expected.push((seqs.start, st, msg.into_bytes()));
    }
    let mut batch = ReadBatch::new();
    let mut cursor = r.snapshot().cursor(All);
    let mut got = Vec::new();
    while cursor.read(&mut batch, 3) == ReadStatus::More {
        for item in batch.iter() {
            if let Read::Entry(e) = item {
                got.push((e.seq, e.source_time, e.msg.to_vec()));
                match e.source_time {
                    SourceTime::Original(t) => assert_eq!(e.event_time(), t.min(e.time)),
                    _ => assert_eq!(e.event_time(), e.time),
                }
            }
        }
    }
    assert!(!got.is_empty());
    let first = got[0].0 as usize - 1;
    assert_eq!(got, expected[first..], "the retained suffix, intact");
    // The last 9 words hold the newest entries: 2 + 2 + 1 + 2 + 2 = 9 for
    // seqs 36..=40 (kinds 0 none, 1 kept, 2 original by i % 3).
    assert_eq!(got.len(), 5, "{got:?}");
}

#[test]
fn relayed_entries_widen_event_time_ranges_by_their_lag() {
    use ringtail::entry::SourceTime;
    let r = ring(64, 4096);
    let o = r.origin(Origin::new("a")).unwrap();
    assert_eq!(r.max_relay_lag(), 0);
    r.append(&o, Flags::default(), b"local");
    let now = ringtail::timefmt::now_ns();
    let ten_s = 10_000_000_000;
    let span =
        Span::new(0, 7, Flags::default()).with_source_time(SourceTime::Original(now - ten_s));
    r.append_batch(&o, b"relayed", &[span]).unwrap();
    let lag = r.max_relay_lag();
    assert!((ten_s..ten_s + 5_000_000_000).contains(&lag), "lag {lag}");
    // A range that ends before the relayed entry arrived still covers it.
    let (first, end) = r.event_time_range(now - ten_s - 1, now - ten_s + 1);
    assert!(first <= 2 && end > 2, "{first}..{end}");
    // A clock ahead of ours is clamped to the receive time, and adds no lag.
    let span =
        Span::new(0, 6, Flags::default()).with_source_time(SourceTime::Original(now + 100 * ten_s));
    r.append_batch(&o, b"future", &[span]).unwrap();
    assert_eq!(r.max_relay_lag(), lag);
    let (entries, _) = drain(&mut r.snapshot().cursor(All));
    assert_eq!(entries.len(), 3);
    let mut batch = ReadBatch::new();
    r.snapshot().cursor_from(3, All).read(&mut batch, 1);
    let first = batch.iter().next();
    match first {
        Some(Read::Entry(e)) => assert_eq!(e.event_time(), e.time),
        other => panic!("{other:?}"),
    };
}
