//! The fd-passing ingest socket end to end: a real unix datagram socket in
//! a temp dir, the fd-passing source on a tokio runtime ([`Stack`]), fds
//! registered with `fdpass::register`, and lines read back from ring
//! snapshots.
//!
//! Nothing here sleeps for a fixed time and then asserts: every check
//! polls the ring until the condition holds, with a generous deadline.

mod support;

use std::fs::File;
use std::io::{PipeWriter, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtail::ring::RingConfig;
use ringtail::sources::fdpass;
use ringtail::sources::{IngestConfig, LongLines, RateLimit};

use support::{Stack, DEADLINE};

/// A running ingest socket: a [`Stack`] with the fd-passing source.
struct Daemon;

impl Daemon {
    fn start(config: IngestConfig) -> Stack {
        Daemon::with_ring(config, RingConfig::new(100_000))
    }

    fn with_ring(config: IngestConfig, ring_config: RingConfig) -> Stack {
        Stack::builder()
            .ring(ring_config)
            .ingest(config)
            .fdpass()
            .start()
    }
}

fn config() -> IngestConfig {
    IngestConfig::default()
}

#[test]
fn several_fds_in_one_datagram_share_the_name() {
    let d = Daemon::start(config());
    let pipes: Vec<_> = (0..3).map(|_| std::io::pipe().expect("pipe")).collect();
    let fds: Vec<_> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
    fdpass::register(&d.log, b"multi", &fds).expect("register");
    for (i, (_, w)) in pipes.iter().enumerate() {
        let mut w: &PipeWriter = w;
        writeln!(w, "from pipe {i}").unwrap();
    }
    let got = d.wait_for("three lines from multi", |entries| {
        let mut m: Vec<String> = entries
            .iter()
            .filter(|e| e.origin.source == "multi")
            .map(|e| String::from_utf8_lossy(&e.msg).into_owned())
            .collect();
        m.sort();
        (m.len() == 3).then_some(m)
    });
    assert_eq!(got, ["from pipe 0", "from pipe 1", "from pipe 2"]);
}

#[test]
fn stdout_and_stderr_style_names_are_separate_sources() {
    let d = Daemon::start(config());
    // As LinuxKit's logwrite registers a service: stdout as NAME.out,
    // stderr as NAME.
    let mut out = d.pipe("onboot.001-dhcpcd.out");
    let mut err = d.pipe("onboot.001-dhcpcd");
    writeln!(out, "eth0: carrier acquired").unwrap();
    writeln!(err, "warning: no lease").unwrap();
    d.wait_messages("onboot.001-dhcpcd.out", &["eth0: carrier acquired"]);
    d.wait_messages("onboot.001-dhcpcd", &["warning: no lease"]);
}

#[test]
fn lines_split_over_many_writes_and_the_tail_at_eof() {
    let d = Daemon::start(config());
    let mut w = d.pipe("pieces");
    for piece in [
        "hel",
        "lo wo",
        "rld\nsec",
        "ond",
        " line\n",
        "\n",
        "no newline at the end",
    ] {
        w.write_all(piece.as_bytes()).unwrap();
        w.flush().unwrap();
    }
    d.wait_messages("pieces", &["hello world", "second line", ""]);
    drop(w);
    d.wait_messages(
        "pieces",
        &["hello world", "second line", "", "no newline at the end"],
    );
}

#[test]
fn long_lines_are_split_and_flagged_partial() {
    let d = Daemon::start(IngestConfig {
        max_line_len: 10,
        ..config()
    });
    let mut w = d.pipe("long");
    writeln!(w, "0123456789abcdefghijKLMNO").unwrap();
    writeln!(w, "short").unwrap();
    let got = d.wait_messages("long", &["0123456789", "abcdefghij", "KLMNO", "short"]);
    let partial: Vec<bool> = got.iter().map(|e| e.flags.partial()).collect();
    assert_eq!(partial, [true, true, false, false]);
    assert!(got.iter().all(|e| !e.flags.truncated()));
}

#[test]
fn long_lines_are_truncated_with_truncate() {
    let d = Daemon::start(IngestConfig {
        max_line_len: 10,
        long_lines: LongLines::Truncate,
        ..config()
    });
    let mut w = d.pipe("cut");
    // The dropped rest of the line spans several writes.
    w.write_all(b"0123456789abc").unwrap();
    w.flush().unwrap();
    w.write_all(b"defghij\nnext\n").unwrap();
    let got = d.wait_messages("cut", &["0123456789", "next"]);
    assert!(got[0].flags.truncated() && !got[0].flags.partial());
    assert!(!got[1].flags.truncated());
}

#[test]
fn invalid_utf8_is_kept_as_bytes() {
    let d = Daemon::start(config());
    let mut w = d.pipe("bytes");
    w.write_all(b"\xff\xfe bad \xc3 utf-8\r\n").unwrap();
    let got = d.wait_for("the raw line", |entries| {
        entries
            .iter()
            .find(|e| e.origin.source == "bytes")
            .map(|e| e.msg.clone())
    });
    assert_eq!(got, b"\xff\xfe bad \xc3 utf-8\r");
}

#[test]
fn a_datagram_without_fds_is_ignored_with_a_warning() {
    let d = Daemon::start(config());
    fdpass::register(&d.log, b"nofd", &[]).expect("send");
    d.wait_selflog(&["nofd", "no file descriptor"]);
    // The socket still serves.
    let mut w = d.pipe("after");
    writeln!(w, "still here").unwrap();
    d.wait_messages("after", &["still here"]);
}

#[test]
fn a_flood_of_bad_datagrams_logs_a_bounded_number_of_warnings() {
    let d = Daemon::start(config());
    for _ in 0..200 {
        fdpass::register(&d.log, b"nofd", &[]).expect("send");
    }
    let mut w = d.pipe("after");
    writeln!(w, "done").unwrap();
    d.wait_messages("after", &["done"]);
    // Datagrams are received in order, so all 200 were handled by now.
    let warnings = d
        .messages("ringtail")
        .iter()
        .filter(|m| m.contains("no file descriptor"))
        .count();
    assert!(
        (1..=10).contains(&warnings),
        "{warnings} warnings for 200 bad datagrams"
    );
    d.wait_selflog(&["suppressed", "more ingest warnings"]);
}

#[test]
fn an_unbounded_writer_on_dev_zero_does_not_starve_a_normal_source() {
    // Truncate mode: /dev/zero yields one truncated entry and then keeps a
    // reader busy forever (it never sends a newline), without filling the
    // ring; the other source must still get its turn.
    let d = Daemon::start(IngestConfig {
        long_lines: LongLines::Truncate,
        ..config()
    });
    let zero = File::open("/dev/zero").expect("/dev/zero");
    fdpass::register(&d.log, b"zero", &[zero.as_fd()]).expect("register /dev/zero");
    drop(zero);
    d.wait_for("the truncated /dev/zero entry", |entries| {
        entries
            .iter()
            .find(|e| e.origin.source == "zero" && e.flags.truncated())
            .map(|_| ())
    });
    // And a pipe flooded by a writer that never stops (no newline either).
    let mut flood = d.pipe("flood");
    let flooding = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        while flood.write_all(&chunk).is_ok() {}
    });
    let mut w = d.pipe("normal");
    let want: Vec<String> = (0..100).map(|i| format!("normal line {i}")).collect();
    for line in &want {
        writeln!(w, "{line}").unwrap();
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    d.wait_messages("normal", &want);
    let mut d = d;
    d.stop();
    // The flood writer sees EPIPE once the daemon closed its end.
    flooding.join().unwrap();
}

#[test]
fn the_rate_limit_drops_the_excess_and_says_how_much() {
    let d = Daemon::start(IngestConfig {
        rate_limit: Some(RateLimit {
            lines: 5,
            interval: Duration::from_millis(300),
        }),
        ..config()
    });
    let mut w = d.pipe("chatty");
    let mut all = String::new();
    for i in 0..50 {
        all.push_str(&format!("line {i}\n"));
    }
    w.write_all(all.as_bytes()).unwrap();
    // Every line is either stored or counted in a "suppressed" entry.
    let (stored, suppressed) = d.wait_for("50 lines stored or suppressed", |entries| {
        let stored: Vec<String> = entries
            .iter()
            .filter(|e| e.origin.source == "chatty")
            .map(|e| String::from_utf8_lossy(&e.msg).into_owned())
            .collect();
        let suppressed: u64 = entries
            .iter()
            .filter(|e| e.origin.source == "ringtail")
            .filter_map(|e| {
                let m = String::from_utf8_lossy(&e.msg).into_owned();
                m.strip_suffix(" lines from chatty")?
                    .strip_prefix("suppressed ")?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        (suppressed > 0 && stored.len() as u64 + suppressed == 50).then_some((stored, suppressed))
    });
    assert!(
        stored.len() >= 5,
        "the first lines of each window are kept: {stored:?}"
    );
    assert_eq!(
        stored[..5],
        ["line 0", "line 1", "line 2", "line 3", "line 4"]
    );
    assert!(suppressed <= 45, "{suppressed} suppressed");
}

#[test]
fn a_rate_limited_dev_zero_cannot_flood_the_ring() {
    let d = Daemon::start(IngestConfig {
        max_line_len: 64,
        rate_limit: Some(RateLimit {
            lines: 100,
            interval: Duration::from_millis(100),
        }),
        ..config()
    });
    let zero = File::open("/dev/zero").expect("/dev/zero");
    fdpass::register(&d.log, b"zero", &[zero.as_fd()]).expect("register /dev/zero");
    // One "suppressed" entry per interval, never more often.
    let times = d.wait_for("three suppression entries", |entries| {
        let times: Vec<u64> = entries
            .iter()
            .filter(|e| e.origin.source == "ringtail" && e.msg.ends_with(b" lines from zero"))
            .map(|e| e.time)
            .collect();
        (times.len() >= 3).then_some(times)
    });
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 90_000_000,
            "suppression entries {pair:?} closer than the interval"
        );
    }
    let mut w = d.pipe("normal");
    writeln!(w, "one").unwrap();
    writeln!(w, "two").unwrap();
    d.wait_messages("normal", &["one", "two"]);
    let mut d = d;
    d.stop();
}

#[test]
fn a_regular_file_is_read_to_its_end() {
    let d = Daemon::start(config());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("input.log");
    std::fs::write(&path, b"first\nsecond\nthird, unterminated").unwrap();
    let f = File::open(&path).unwrap();
    fdpass::register(&d.log, b"file", &[f.as_fd()]).expect("register a file");
    d.wait_messages("file", &["first", "second", "third, unterminated"]);
}

#[test]
fn shutdown_stores_the_unfinished_line() {
    let mut d = Daemon::start(config());
    let mut w = d.pipe("cut-short");
    // One write (atomic for a pipe): once "complete" is stored, the
    // unfinished line is in the daemon's hands.
    w.write_all(b"complete\nunfinished").unwrap();
    d.wait_messages("cut-short", &["complete"]);
    d.stop();
    assert_eq!(d.messages("cut-short"), ["complete", "unfinished"]);
    drop(w);
}

#[test]
fn too_many_sources_are_refused_with_a_self_log_entry() {
    let d = Daemon::start(IngestConfig {
        max_sources: 3,
        ..config()
    });
    let pipes: Vec<_> = (0..5).map(|_| std::io::pipe().expect("pipe")).collect();
    let fds: Vec<_> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
    fdpass::register(&d.log, b"crowd", &fds).expect("register");
    d.wait_selflog(&["refused 2 of 5 fd(s)", "crowd", "--max-sources"]);
    for (i, (_, w)) in pipes.iter().take(3).enumerate() {
        let mut w: &PipeWriter = w;
        writeln!(w, "kept {i}").unwrap();
    }
    d.wait_for("the three kept sources", |entries| {
        (entries
            .iter()
            .filter(|e| e.origin.source == "crowd")
            .count()
            == 3)
            .then_some(())
    });
}

#[test]
fn thousands_of_idle_sources_then_one_active_source() {
    fdpass::raise_fd_limit().expect("raise the fd limit");
    let d = Daemon::start(config());
    let mut writers = Vec::new();
    for batch in 0..8 {
        let pipes: Vec<_> = (0..250).map(|_| std::io::pipe().expect("pipe")).collect();
        let fds: Vec<_> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        fdpass::register(&d.log, format!("idle-{batch}").as_bytes(), &fds).expect("register");
        // The daemon has its own copies of the read ends.
        writers.extend(pipes.into_iter().map(|(_, w)| w));
    }
    let mut w = d.pipe("active");
    writeln!(w, "heard over 2000 idle sources").unwrap();
    d.wait_messages("active", &["heard over 2000 idle sources"]);
    // An idle source that wakes up works too.
    writeln!(writers[1234], "woke up").unwrap();
    d.wait_messages("idle-4", &["woke up"]);
    drop(writers);
}

#[test]
fn register_says_what_to_do_when_no_daemon_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let (r, _w) = std::io::pipe().unwrap();
    let err = fdpass::register(&path, b"x", &[r.as_fd()]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("ringtail serve"), "{text}");
    assert!(text.contains("--socket-log"), "{text}");
}

/// End-to-end ingest rate in-process: 4 pipes, one writer thread each
/// writing 100-byte lines in 64 KiB writes, until the ring has them all.
/// `cargo test --release --test ingest measure_ingest_rate -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_ingest_rate() {
    const SOURCES: usize = 4;
    const LINES: usize = 2_500_000;
    let d = Daemon::with_ring(config(), RingConfig::new(1_000_000));
    let mut line = vec![b'y'; 99];
    line.push(b'\n');
    let block: Vec<u8> = line.iter().copied().cycle().take(100 * 655).collect();
    let writers: Vec<PipeWriter> = (0..SOURCES)
        .map(|i| d.pipe(&format!("bench-{i}")))
        .collect();
    let before = d.ring.published_seq();
    let barrier = Arc::new(std::sync::Barrier::new(SOURCES + 1));
    let threads: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let block = block.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut left = LINES;
                while left > 0 {
                    let n = left.min(655);
                    w.write_all(&block[..n * 100]).unwrap();
                    left -= n;
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let want = before + (SOURCES * LINES) as u64;
    while d.ring.published_seq() < want {
        assert!(start.elapsed() < DEADLINE * 4, "ingest did not finish");
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "ingest, {SOURCES} pipes, 100-byte lines: {:.2} M lines/s ({:.2} s for {} lines)",
        (SOURCES * LINES) as f64 / secs / 1e6,
        secs,
        SOURCES * LINES
    );
}

/// Resident memory per idle source: registers 9,000 idle pipes and compares
/// the process's RSS before and after.
/// `cargo test --release --test ingest measure_idle_source_memory -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_idle_source_memory() {
    const IDLE: usize = 9_000;
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    fdpass::raise_fd_limit().expect("raise the fd limit");
    let d = Daemon::start(config());
    let mut warm = d.pipe("warm-up");
    writeln!(warm, "warm").unwrap();
    d.wait_messages("warm-up", &["warm"]);
    let mut writers = Vec::with_capacity(IDLE);
    let before = rss_kib();
    for batch in 0..IDLE / 250 {
        let pipes: Vec<_> = (0..250).map(|_| std::io::pipe().expect("pipe")).collect();
        let fds: Vec<_> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        fdpass::register(&d.log, format!("idle-{batch}").as_bytes(), &fds).expect("register");
        writers.extend(pipes.into_iter().map(|(_, w)| w));
    }
    let mut w = d.pipe("active");
    writeln!(w, "done").unwrap();
    d.wait_messages("active", &["done"]);
    // Let every idle task reach its first wait.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib();
    println!(
        "{IDLE} idle sources: RSS {} KiB -> {} KiB, {:.0} bytes per idle source",
        before,
        after,
        (after.saturating_sub(before) * 1024) as f64 / IDLE as f64
    );
    drop(writers);
}

/// Runs out of fds for real, in a child process (the fd limit is
/// per process, and the other tests here share this one).
#[test]
fn running_out_of_fds_refuses_new_sources_and_recovers() {
    const CHILD: &str = "RINGTAIL_TEST_FD_EXHAUSTION_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "running_out_of_fds_refuses_new_sources_and_recovers",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the child test");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let d = Daemon::start(config());
    // All pipes first: once the limit is low, this process cannot make any.
    let pipes: Vec<_> = (0..40).map(|_| std::io::pipe().expect("pipe")).collect();
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open + 10),
            maximum: limit.maximum,
        },
    )
    .expect("lower the fd limit");
    // This process keeps its copies of the read ends, so every fd the
    // daemon receives is one more: after about ten, none can arrive. The
    // datagrams go out on a socket opened beforehand, since `register`
    // would need a new fd for each.
    for (i, (r, _)) in pipes.iter().enumerate() {
        send_registration(&client, &d.log, format!("src-{i}").as_bytes(), r.as_fd());
    }
    d.wait_selflog(&["refused source", "out of fds"]);
    // The first source arrived and works.
    let mut first: &PipeWriter = &pipes[0].1;
    writeln!(first, "alive").unwrap();
    d.wait_messages("src-0", &["alive"]);
    // Free fds: the daemon recovers and takes new sources.
    setrlimit(Resource::Nofile, limit).expect("restore the fd limit");
    let mut w = d.pipe("after");
    writeln!(w, "recovered").unwrap();
    d.wait_messages("after", &["recovered"]);
    drop(pipes);
}

/// What `fdpass::register` sends, on a given socket.
fn send_registration(
    socket: &std::os::unix::net::UnixDatagram,
    path: &std::path::Path,
    name: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let fds = [fd];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let addr = SocketAddrUnix::new(path).unwrap();
    rustix::net::sendmsg_addr(
        socket,
        &addr,
        &[std::io::IoSlice::new(name)],
        &mut control,
        SendFlags::empty(),
    )
    .expect("send a registration");
}
