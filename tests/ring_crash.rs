//! A child process writes to a ring file with several threads and is killed
//! with SIGKILL at an arbitrary moment; the parent reopens the file and
//! checks that every published entry is there, intact, with its seq, and
//! that new seqs continue after the last one. Several rounds on one file
//! exercise repeated recovery.
//!
//! The child is this same test binary, re-run with an environment variable
//! that turns `crash_child_writer` into the writer.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig, Span};
use support::verify::{check, message};

const CHILD_ENV: &str = "RINGTAIL_CRASH_CHILD_FILE";
const WRITERS: u32 = 3;

fn config(path: &std::path::Path) -> RingConfig {
    let mut c = RingConfig::new(4096);
    c.max_bytes = 256 * 1024;
    c.max_entry_len = 512;
    c.file = Some(path.to_path_buf());
    c
}

/// Runs only as the child: writes until killed, printing progress.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("RINGTAIL_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let ring = Ring::open(&config(path.as_ref())).unwrap();
    println!("opened next_seq={}", ring.published_seq());
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let ring = &ring;
            s.spawn(move || {
                let origin = ring.origin(Origin::new(format!("writer-{w}"))).unwrap();
                // Counters are unique per round so order checks span rounds.
                let mut n = round << 40;
                let (mut buf, mut spans) = (Vec::new(), Vec::new());
                loop {
                    buf.clear();
                    spans.clear();
                    for _ in 0..(1 + n % 7) {
                        let m = message(w, n, 300);
                        spans.push(Span::new(
                            buf.len() as u32,
                            m.len() as u32,
                            Flags::default(),
                        ));
                        buf.extend_from_slice(&m);
                        n += 1;
                    }
                    ring.append_batch(&origin, &buf, &spans).unwrap();
                    if w == 0 && n % 1000 < 7 {
                        println!("progress {}", ring.published_seq());
                    }
                }
            });
        }
    });
}

/// Reads the whole ring and checks it; returns (entries, first seq, end).
fn verify(ring: &Ring) -> (u64, u64, u64) {
    let snap = ring.snapshot();
    let mut cursor = snap.cursor(All);
    let mut batch = ReadBatch::new();
    let mut next = snap.first();
    let mut last_time = 0;
    let mut last_counter = [None::<u64>; WRITERS as usize];
    let mut delivered = 0;
    while cursor.read(&mut batch, 256) == ReadStatus::More {
        for r in batch.iter() {
            match r {
                Read::Entry(e) => {
                    assert_eq!(e.seq, next, "seq missing after recovery");
                    assert!(e.time >= last_time, "time went back at seq {}", e.seq);
                    last_time = e.time;
                    let (w, n) = check(e.msg).unwrap_or_else(|err| panic!("seq {}: {err}", e.seq));
                    assert_eq!(e.origin.source, format!("writer-{w}"));
                    let last = &mut last_counter[w as usize];
                    assert!(last.is_none_or(|l| n > l));
                    *last = Some(n);
                    delivered += 1;
                    next += 1;
                }
                Read::Gap { first_seq, missed } => {
                    panic!("gap of {missed} at {first_seq} in a ring nobody writes to")
                }
            }
        }
    }
    assert_eq!(next, snap.end());
    (delivered, snap.first(), snap.end())
}

/// Kills the child with SIGKILL when dropped, so a failing assertion in the
/// parent never leaves a writer running.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn ring_file_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.ring");
    let exe = std::env::current_exe().unwrap();
    let mut last_end = 1;
    let mut torn_total = 0;
    for round in 0..4u64 {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "--exact",
                    "crash_child_writer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &path)
                .env("RINGTAIL_CRASH_ROUND", round.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        // libtest prints its own lines first.
        let opened = lines
            .by_ref()
            .map(|l| l.unwrap())
            .find_map(|l| l.find("opened").map(|at| l[at..].to_string()))
            .expect("child did not open the ring");
        assert_eq!(
            opened,
            format!("opened next_seq={last_end}"),
            "seqs continue after the last published one"
        );
        // Let it write a few thousand entries (several laps of the ring),
        // then kill it wherever it is.
        let progress = lines
            .by_ref()
            .map(|l| l.unwrap())
            .filter(|l| l.starts_with("progress"))
            .nth(5 + round as usize * 3);
        assert!(progress.is_some(), "child stopped early");
        child.kill();

        let ring = Ring::open(&config(&path)).unwrap();
        let rec = ring.recovery();
        assert!(rec.reopened);
        assert_eq!(rec.epoch, 2 * round + 2);
        torn_total += rec.torn;
        let (delivered, first, end) = verify(&ring);
        assert!(end > last_end, "the child published entries");
        assert_eq!(delivered, rec.intact);
        assert_eq!(delivered, end - first);
        assert!(delivered > 0);
        last_end = end;
    }
    // A crash tears at most the batches in flight: a handful per writer.
    assert!(torn_total <= 4 * WRITERS as u64 * 7, "torn {torn_total}");
}
