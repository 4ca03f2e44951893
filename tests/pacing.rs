//! Pacing end to end: the fd-passing socket and the query socket sharing
//! one pacer, over real sockets, with a real pipe writer and a follower
//! client.
//!
//! No assertion depends on how fast this machine is: the loss-free test
//! gives the pacer limits no scheduler hiccup can reach, and the stalled
//! follower test only waits (with a generous deadline) for ingest to finish.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use ringtail::ring::Ring;
use ringtail::serve::memlogq::{self, ClientRequest, Mode, QueryConfig};
use ringtail::sources::fdpass;
use ringtail::sources::pace::Pacer;
use support::Stack;

const DEADLINE: Duration = Duration::from_secs(60);

/// The fd-passing socket and the query socket sharing one pacer.
struct Daemon {
    /// Keeps the sockets and the runtime alive.
    _stack: Stack,
    log: PathBuf,
    query: PathBuf,
    ring: Arc<Ring>,
    pacer: Arc<Pacer>,
}

impl Daemon {
    fn start(lines: u64, pacer: impl FnOnce(Arc<Ring>) -> Pacer + 'static) -> Daemon {
        let stack = Stack::builder()
            .lines(lines)
            .pacer(pacer)
            .fdpass()
            .query(QueryConfig::default())
            .start();
        Daemon {
            log: stack.log.clone(),
            query: stack.query.clone(),
            ring: stack.ring.clone(),
            pacer: stack.pipeline.pacer().clone(),
            _stack: stack,
        }
    }

    /// A follower connected and caught up: a marker line written now has
    /// reached it.
    fn follower(
        &self,
        marker: &mut std::io::PipeWriter,
    ) -> BufReader<std::os::unix::net::UnixStream> {
        let s = memlogq::connect(&self.query, &ClientRequest::Mode(Mode::Follow)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // The follower may connect after a first marker: write until one
        // arrives.
        let start = Instant::now();
        loop {
            writeln!(marker, "marker").unwrap();
            line.clear();
            r.get_mut()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match r.read_line(&mut line) {
                Ok(_) if line.contains("marker") => break,
                _ => assert!(start.elapsed() < DEADLINE, "the follower never started"),
            }
        }
        r.get_mut().set_read_timeout(Some(DEADLINE)).unwrap();
        r
    }

    fn pipe(&self, name: &str) -> std::io::PipeWriter {
        let (r, w) = std::io::pipe().unwrap();
        fdpass::register(&self.log, name.as_bytes(), &[r.as_fd()]).unwrap();
        w
    }
}

/// Writes `n` numbered 100-byte lines from another thread.
fn burst(mut w: std::io::PipeWriter, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(n * 100);
        for i in 0..n {
            let _ = writeln!(buf, "burst {i:08} {}", "x".repeat(84));
        }
        w.write_all(&buf).unwrap();
    })
}

#[test]
fn a_follower_that_keeps_reading_loses_nothing_in_a_burst_into_a_small_ring() {
    // 50 bursts' worth of lines into a 2,000-line ring. The limits are long
    // enough that only pacing that does not work can lose a line.
    let d = Daemon::start(2_000, |ring| {
        Pacer::with_limits(
            ring,
            50,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
    });
    let mut marker = d.pipe("marker");
    let mut follower = d.follower(&mut marker);
    let n = 100_000;
    let writer = burst(d.pipe("burst"), n);
    // Fall behind first: without pacing the writer laps the follower now.
    std::thread::sleep(Duration::from_millis(100));
    let mut next = 0;
    let mut line = String::new();
    while next < n {
        line.clear();
        assert!(
            follower.read_line(&mut line).unwrap() > 0,
            "the follower was closed"
        );
        assert!(
            !line.contains("\"source\":\"ringtail\""),
            "the follower was told it missed lines: {line}"
        );
        if let Some(at) = line.find("burst ") {
            let seen: usize = line[at + 6..at + 14].parse().unwrap();
            assert_eq!(seen, next, "lines missing or out of order");
            next += 1;
        }
    }
    writer.join().unwrap();
    assert!(
        d.ring.stats().evicted_total > 0,
        "the burst did not even fill the ring: the test proves nothing"
    );
    eprintln!("sources waited {:?} in all", d.pacer.waited());
}

#[test]
fn a_follower_that_stops_reading_does_not_hold_ingest() {
    // Default limits: a follower whose client reads nothing stops counting
    // after 20 ms, so the burst goes in at full speed after that.
    let d = Daemon::start(2_000, |ring| Pacer::new(ring, 50));
    let mut marker = d.pipe("marker");
    let _stalled = d.follower(&mut marker);
    let before = d.ring.published_seq();
    let n = 100_000;
    let writer = burst(d.pipe("burst"), n);
    writer.join().unwrap();
    let start = Instant::now();
    while d.ring.published_seq() < before + n as u64 {
        assert!(
            start.elapsed() < DEADLINE,
            "ingest is held up by a follower that does not read"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
