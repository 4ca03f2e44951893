//! Ring benchmarks for the figures issue 2 asks for, on 100-byte messages:
//!
//! - append, one producer (batched as ingest does, and single appends);
//! - two producers together (overall ns per entry);
//! - snapshot reads while a writer appends at full speed (entries/s, torn);
//! - a follower against a writer at half the follower's copy rate (loss),
//!   and how much followers slow a full-speed writer.
//!
//! `cargo bench --bench ring` (env `RING_BENCH_RUNS`, default 7, sets the
//! repetitions; each figure is the median). Pass a filter word to run one
//! group: `cargo bench --bench ring -- snapshot`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig, Span};

const MSG_LEN: usize = 100;
const BATCH: usize = 256;
/// The ring size: `RING_BENCH_LINES`, default 1M (far bigger than the CPU
/// caches, so appends run at memory bandwidth); memlogd's default of 5000
/// lines fits in cache.
fn ring_lines() -> u64 {
    env_or("RING_BENCH_LINES", 1_000_000)
}

/// The value of environment variable `name`, or `default` when it is
/// unset or not a number.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ring() -> Ring {
    Ring::open(&RingConfig::new(ring_lines())).unwrap()
}

/// A buffer of BATCH messages of MSG_LEN bytes whose first 8 bytes repeat
/// at the end, so readers can spot a torn entry cheaply.
fn batch_buffer() -> (Vec<u8>, Vec<Span>) {
    let mut buf = Vec::with_capacity(BATCH * MSG_LEN);
    let mut spans = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let tag = (i as u64 * 0x9e3779b97f4a7c15).to_le_bytes();
        let start = buf.len();
        buf.extend_from_slice(&tag);
        buf.extend(std::iter::repeat_n(b'x', MSG_LEN - 16));
        buf.extend_from_slice(&tag);
        spans.push(Span::new(start as u32, MSG_LEN as u32, Flags::default()));
    }
    (buf, spans)
}

fn intact(msg: &[u8]) -> bool {
    msg.len() == MSG_LEN && msg[..8] == msg[MSG_LEN - 8..]
}

/// CPU time of the calling thread: unlike wall time it does not count time
/// the thread spent preempted, which on a shared 2-core machine is most of
/// the noise.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Entries per read call: `RING_BENCH_READ`, default 4096 (read once: it
/// is asked for at every read).
fn read_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| env_or("RING_BENCH_READ", 4096))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn runs() -> usize {
    env_or("RING_BENCH_RUNS", 7)
}

/// Appends `entries` in batches; returns (wall, CPU) ns per entry.
fn append_batched(ring: &Ring, entries: u64) -> (f64, f64) {
    let origin = ring.origin(Origin::new("bench")).unwrap();
    let (buf, spans) = batch_buffer();
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut done = 0;
    while done < entries {
        ring.append_batch(&origin, &buf, &spans).unwrap();
        done += BATCH as u64;
    }
    (
        start.elapsed().as_nanos() as f64 / done as f64,
        (thread_cpu() - cpu).as_nanos() as f64 / done as f64,
    )
}

/// A ring whose memory has been written once: first-touch page faults are a
/// one-time cost of a new ring, not of appending.
fn warm_ring() -> Ring {
    let r = ring();
    append_batched(&r, ring_lines() + ring_lines() / 2);
    r
}

fn bench_append() {
    let n = 20_000_000;
    let one: Vec<(f64, f64)> = (0..runs())
        .map(|_| append_batched(&warm_ring(), n))
        .collect();
    println!(
        "append, 1 producer, batches of {BATCH}: {:.1} ns/entry wall, {:.1} ns/entry CPU (medians of {})",
        median(one.iter().map(|x| x.0).collect()),
        median(one.iter().map(|x| x.1).collect()),
        one.len()
    );

    let single: Vec<(f64, f64)> = (0..runs())
        .map(|_| {
            let r = warm_ring();
            let o = r.origin(Origin::new("bench")).unwrap();
            let msg = [b'x'; MSG_LEN];
            let count = 5_000_000;
            let (start, cpu) = (Instant::now(), thread_cpu());
            for _ in 0..count {
                r.append(&o, Flags::default(), &msg);
            }
            (
                start.elapsed().as_nanos() as f64 / count as f64,
                (thread_cpu() - cpu).as_nanos() as f64 / count as f64,
            )
        })
        .collect();
    println!(
        "append, 1 producer, one entry per call: {:.1} ns/entry wall, {:.1} ns/entry CPU",
        median(single.iter().map(|x| x.0).collect()),
        median(single.iter().map(|x| x.1).collect())
    );

    let two: Vec<(f64, f64)> = (0..runs())
        .map(|_| {
            let r = warm_ring();
            let start = Instant::now();
            let cpu: f64 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|_| s.spawn(|| append_batched(&r, n / 2).1))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<f64>() / 2.0
            });
            // `cpu` is already total CPU / total entries (the mean of the
            // two threads' per-entry CPU over equal halves).
            (start.elapsed().as_nanos() as f64 / n as f64, cpu)
        })
        .collect();
    println!(
        "append, 2 producers together, batches of {BATCH}: {:.1} ns/entry overall wall, {:.1} ns CPU per entry (both cores)",
        median(two.iter().map(|x| x.0).collect()),
        median(two.iter().map(|x| x.1).collect())
    );
}

fn bench_snapshot() {
    let results: Vec<(f64, u64, u64, f64)> = (0..runs())
        .map(|_| {
            let r = warm_ring();
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let origin = r.origin(Origin::new("bench")).unwrap();
                    let (buf, spans) = batch_buffer();
                    while !stop.load(Ordering::Relaxed) {
                        r.append_batch(&origin, &buf, &spans).unwrap();
                    }
                });
                let mut batch = ReadBatch::new();
                let (mut read, mut torn, mut missed) = (0u64, 0u64, 0u64);
                let (start, cpu) = (Instant::now(), thread_cpu());
                for _ in 0..3 {
                    let mut c = r.snapshot().cursor(All);
                    while c.read(&mut batch, read_size()) == ReadStatus::More {
                        for item in batch.iter() {
                            match item {
                                Read::Entry(e) => {
                                    read += 1;
                                    torn += !intact(e.msg) as u64;
                                }
                                Read::Gap { missed: m, .. } => missed += m,
                            }
                        }
                    }
                }
                let rate = read as f64 / start.elapsed().as_secs_f64();
                let cpu_rate = read as f64 / (thread_cpu() - cpu).as_secs_f64();
                stop.store(true, Ordering::Relaxed);
                (rate, torn, missed, cpu_rate)
            })
        })
        .collect();
    let torn: u64 = results.iter().map(|r| r.1).sum();
    let missed: u64 = results.iter().map(|r| r.2).sum();
    println!(
        "snapshot read of the whole ring while a writer runs at full speed: {:.1} M entries/s wall, {:.1} M/s of reader CPU, torn {torn}, evicted under the reader {missed}",
        median(results.iter().map(|r| r.0).collect()) / 1e6,
        median(results.iter().map(|r| r.3).collect()) / 1e6
    );
}

/// One whole-ring read of `r`, checking every entry; returns its rate in
/// entries/s, (wall, reader CPU).
fn copy_pass(r: &Ring, batch: &mut ReadBatch) -> (f64, f64) {
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut c = r.snapshot().cursor(All);
    let mut n = 0u64;
    while c.read(batch, read_size()) == ReadStatus::More {
        n += batch
            .iter()
            .filter(|i| matches!(i, Read::Entry(e) if intact(e.msg)))
            .count() as u64;
    }
    let cpu = (thread_cpu() - cpu).as_secs_f64();
    (n as f64 / start.elapsed().as_secs_f64(), n as f64 / cpu)
}

/// The read path alone: whole-ring passes over one full ring, no writer.
fn bench_copy() {
    let r = warm_ring();
    let mut batch = ReadBatch::new();
    let rates: Vec<(f64, f64)> = (0..runs() * 3).map(|_| copy_pass(&r, &mut batch)).collect();
    println!(
        "copy passes over a full ring, no writer: {:.1} M entries/s wall, {:.1} M/s CPU (medians of {})",
        median(rates.iter().map(|r| r.0).collect()) / 1e6,
        median(rates.iter().map(|r| r.1).collect()) / 1e6,
        rates.len()
    );
}

/// A reader that copies (reads and checks) everything it can; returns its
/// copy rate in entries/s on a full ring with no writer: the median of
/// several passes with one batch buffer, as a follower reuses its own (one
/// pass over a small ring is mostly the first growth of the buffer).
fn follower_copy_rate() -> f64 {
    let r = warm_ring();
    let mut batch = ReadBatch::new();
    let passes: Vec<(f64, f64)> = (0..5).map(|_| copy_pass(&r, &mut batch)).collect();
    let wall = median(passes.iter().map(|p| p.0).collect());
    let cpu = median(passes.iter().map(|p| p.1).collect());
    println!(
        "  copy pass: {:.1} M entries/s wall, {:.1} M entries/s of reader CPU",
        wall / 1e6,
        cpu / 1e6
    );
    wall
}

/// A writer appending `total` entries at `rate` entries/s (0: full speed)
/// while `followers` follow; returns (writer ns/entry, entries the
/// followers missed).
fn writer_with_followers(total: u64, rate: f64, followers: usize) -> (f64, u64) {
    let r = warm_ring();
    let done = AtomicBool::new(false);
    let missed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..followers {
            s.spawn(|| {
                let mut c = r.follow(All);
                let mut batch = ReadBatch::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    match c.read(&mut batch, read_size()) {
                        ReadStatus::More => {
                            for i in batch.iter() {
                                match i {
                                    Read::Entry(e) => assert!(intact(e.msg)),
                                    Read::Gap { missed: m, .. } => {
                                        missed.fetch_add(m, Ordering::Relaxed);
                                    }
                                }
                            }
                        }
                        _ if finished => break,
                        _ => {
                            c.wait_blocking(Duration::from_millis(10));
                        }
                    }
                }
            });
        }
        let origin = r.origin(Origin::new("bench")).unwrap();
        let (buf, spans) = batch_buffer();
        let start = Instant::now();
        let mut written = 0u64;
        while written < total {
            if rate > 0.0 {
                let due = Duration::from_secs_f64(written as f64 / rate);
                while start.elapsed() < due {
                    std::hint::spin_loop();
                }
            }
            r.append_batch(&origin, &buf, &spans).unwrap();
            written += BATCH as u64;
        }
        let ns = start.elapsed().as_nanos() as f64 / written as f64;
        done.store(true, Ordering::Release);
        (ns, missed.load(Ordering::Relaxed))
    })
}

fn bench_follow() {
    let copy = median((0..runs()).map(|_| follower_copy_rate()).collect());
    println!(
        "follower copy rate (no writer): {:.1} M entries/s",
        copy / 1e6
    );
    let half: Vec<(f64, u64)> = (0..runs())
        .map(|_| writer_with_followers(10_000_000, copy / 2.0, 1))
        .collect();
    let lost: u64 = half.iter().map(|h| h.1).sum();
    println!(
        "follower vs a writer at half its copy rate ({:.1} M/s), 10M entries x {} runs: lost {lost}",
        copy / 2e6,
        half.len()
    );
    // Alone and with a follower alternate, and the slowdown is the median
    // of the pairs' ratios: the host's speed drifts over seconds, and two
    // medians taken one after the other would measure the drift.
    let pairs: Vec<(f64, f64)> = (0..runs())
        .map(|_| {
            (
                writer_with_followers(20_000_000, 0.0, 0).0,
                writer_with_followers(20_000_000, 0.0, 1).0,
            )
        })
        .collect();
    println!(
        "full-speed writer: alone {:.1} ns/entry, with 1 follower {:.1} ns/entry (slowdown, median of paired runs: {:+.1} %)",
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
        median(pairs.iter().map(|p| (p.1 / p.0 - 1.0) * 100.0).collect())
    );
}

fn main() {
    println!("ring of {} lines, {MSG_LEN}-byte messages", ring_lines());
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("append") {
        bench_append();
    }
    if wanted("snapshot") {
        bench_snapshot();
    }
    if wanted("follow") {
        bench_follow();
    }
    if wanted("copy") {
        bench_copy();
    }
}
