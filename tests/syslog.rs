//! Syslog and the kernel log, end to end: a real `ringtail serve` with
//! its syslog listeners and `--kmsg`, fed by real clients (util-linux
//! `logger`, Python's `SysLogHandler`, rsyslog's `omfwd`, the kernel's
//! `/dev/kmsg`) and by hand-made input only where no client sends it (a
//! NUL-separated busybox datagram, an oversized frame, idle connections).
//! Every entry is checked field by field through `ringtail read -o ndjson`.
//!
//! Needs: `logger` (util-linux, `bsdutils` on Debian), `python3`,
//! `rsyslog` (started by the test in the foreground, own config and
//! port). The kmsg round trip through `/dev/kmsg` runs as root only.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{free_port, wait_for, Daemon};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every entry the daemon holds, as JSON objects.
fn entries(d: &Daemon) -> Vec<Value> {
    let o = d.read(&["-o", "ndjson"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("msg").is_some())
        .collect()
}

/// Waits for an entry whose message is `msg`; returns it.
fn wait_entry(d: &Daemon, msg: &str) -> Value {
    let mut found = None;
    wait_for(&format!("an entry {msg:?}"), || {
        found = entries(d).into_iter().find(|e| e["msg"] == msg);
        found.is_some()
    });
    found.unwrap()
}

/// Waits for a self-log entry containing every one of `words`.
fn wait_selflog(d: &Daemon, words: &[&str]) -> String {
    let mut found = None;
    wait_for(&format!("a self-log entry with {words:?}"), || {
        found = entries(d)
            .into_iter()
            .filter(|e| e["source"] == "ringtail")
            .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
            .find(|m| words.iter().all(|w| m.contains(w)));
        found.is_some()
    });
    found.unwrap()
}

fn label<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
    e["labels"][k].as_str()
}

fn logger(args: &[&str]) {
    let st = Command::new("logger")
        .args(args)
        .status()
        .expect("logger(1) from util-linux (Debian: bsdutils)");
    assert!(st.success(), "logger {args:?} failed");
}

fn uid() -> String {
    rustix::process::getuid().as_raw().to_string()
}

#[test]
fn logger_to_each_listener() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dev-log");
    let (udp, tcp) = (free_udp_port(), free_port());
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--syslog-socket",
            sock.to_str().unwrap(),
            "--syslog-udp",
            &format!("127.0.0.1:{udp}"),
            "--syslog-tcp",
            &format!("127.0.0.1:{tcp}"),
            "--syslog-time-zone",
            "UTC",
        ],
    );
    let mode = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o666);
    let s = sock.to_str().unwrap();
    let (udp, tcp) = (udp.to_string(), tcp.to_string());

    // The local socket, glibc-like form (what `logger -u` sends by default).
    let child = Command::new("logger")
        .args(["-u", s, "-t", "unixapp", "-p", "daemon.err", "unix plain"])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    assert!(child.wait_with_output().unwrap().status.success());
    let e = wait_entry(&d, "unix plain");
    assert_eq!(e["source"], "unixapp");
    assert_eq!(e["level"], "error");
    assert_eq!(label(&e, "facility"), Some("daemon"));
    assert_eq!(label(&e, "severity"), Some("err"));
    assert_eq!(label(&e, "pid"), Some(pid.as_str()), "the kernel's pid");
    assert_eq!(label(&e, "uid"), Some(uid().as_str()));
    assert!(label(&e, "gid").is_some());
    assert_eq!(label(&e, "hostname"), None, "no hostname on /dev/log");
    assert!(
        e["source_time_ns"].as_u64().is_some(),
        "the header's time is kept"
    );

    // --rfc3164 with a hostname and -i (the pid in the tag).
    logger(&[
        "-u",
        s,
        "--rfc3164",
        "-i",
        "-t",
        "r3164",
        "-p",
        "local3.warning",
        "unix 3164",
    ]);
    let e = wait_entry(&d, "unix 3164");
    assert_eq!(e["source"], "r3164");
    assert_eq!(e["level"], "warning");
    assert_eq!(label(&e, "facility"), Some("local3"));
    assert!(
        label(&e, "hostname").is_some(),
        "logger --rfc3164 -u names the host"
    );
    assert_eq!(
        label(&e, "procid"),
        label(&e, "pid"),
        "tag pid and kernel pid agree"
    );

    // --rfc5424 with structured data and a msgid.
    logger(&[
        "-u",
        s,
        "--rfc5424",
        "-t",
        "r5424",
        "--msgid",
        "ID47",
        "--sd-id",
        "meta@32473",
        "--sd-param",
        "k=\"v w\"",
        "unix 5424",
    ]);
    let e = wait_entry(&d, "unix 5424");
    assert_eq!(e["source"], "r5424");
    assert_eq!(label(&e, "msgid"), Some("ID47"));
    assert_eq!(label(&e, "sd.meta_32473.k"), Some("v w"));
    assert_eq!(label(&e, "severity"), Some("notice"));

    // UDP, RFC 5424 (-d -n).
    logger(&[
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "--rfc5424",
        "-t",
        "udpapp",
        "-p",
        "user.info",
        "over udp",
    ]);
    let e = wait_entry(&d, "over udp");
    assert_eq!(e["source"], "udpapp");
    assert_eq!(e["level"], "info");
    assert_eq!(label(&e, "peer"), Some("127.0.0.1"));
    assert!(label(&e, "hostname").is_some());
    assert_eq!(
        label(&e, "pid"),
        None,
        "no kernel credentials on the network"
    );

    // UDP, RFC 3164.
    logger(&[
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "--rfc3164",
        "-t",
        "udp3164",
        "udp 3164",
    ]);
    let e = wait_entry(&d, "udp 3164");
    assert_eq!(e["source"], "udp3164");

    // TCP with octet counting (-T --octet-count), RFC 5424.
    logger(&[
        "-T",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "--octet-count",
        "--rfc5424",
        "-t",
        "tcpapp",
        "-p",
        "auth.crit",
        "tcp counted",
    ]);
    let e = wait_entry(&d, "tcp counted");
    assert_eq!(e["source"], "tcpapp");
    assert_eq!(e["level"], "crit");
    assert_eq!(label(&e, "facility"), Some("auth"));
    assert_eq!(label(&e, "peer"), Some("127.0.0.1"));

    // TCP with LF framing, RFC 3164.
    logger(&[
        "-T",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "--rfc3164",
        "-t",
        "tcplf",
        "tcp lf",
    ]);
    let e = wait_entry(&d, "tcp lf");
    assert_eq!(e["source"], "tcplf");

    // Python's SysLogHandler, unix and UDP.
    let py = format!(
        r#"
import logging, logging.handlers
for addr in ({s:?}, ("127.0.0.1", {udp})):
    h = logging.handlers.SysLogHandler(address=addr, facility="local1")
    h.setFormatter(logging.Formatter("pyapp[%(process)d]: %(message)s"))
    log = logging.getLogger(str(addr)); log.addHandler(h); log.setLevel(logging.DEBUG)
    log.warning("python %s", "unix" if isinstance(addr, str) else "udp")
"#
    );
    let st = Command::new("python3").args(["-c", &py]).status().unwrap();
    assert!(st.success());
    for m in ["python unix", "python udp"] {
        let e = wait_entry(&d, m);
        assert_eq!(e["source"], "pyapp");
        assert_eq!(e["level"], "warning");
        assert_eq!(label(&e, "facility"), Some("local1"));
        assert!(label(&e, "procid").is_some());
    }
    assert!(d.stop().success());
}

#[test]
fn busybox_datagrams_bad_input_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dev-log");
    let d = Daemon::start(
        dir.path(),
        &["--http", "off", "--syslog-socket", sock.to_str().unwrap()],
    );
    let tx = UnixDatagram::unbound().unwrap();
    // busybox and some libcs: several messages, each ended by NUL.
    tx.send_to(b"<13>Dec  2 05:46:18 bb: one\0<11>bb[7]: two\0", &sock)
        .unwrap();
    let one = wait_entry(&d, "one");
    let two = wait_entry(&d, "two");
    assert_eq!(one["source"], "bb");
    assert_eq!(two["level"], "error");
    assert_eq!(label(&two, "procid"), Some("7"));
    // A PRI of 999, invalid UTF-8, a NUL in the tag: stored, not lost.
    tx.send_to(b"<999>bad pri", &sock).unwrap();
    let e = wait_entry(&d, "<999>bad pri");
    assert_eq!(e["source"], "syslog");
    tx.send_to(b"<13>t\0g: nul in tag", &sock).unwrap();
    tx.send_to(b"<13>app: caf\xe9", &sock).unwrap();
    wait_for("the non-UTF-8 message", || {
        entries(&d).iter().any(|e| e["source"] == "app")
    });
    // 64 KiB of garbage: one entry per --max-line-len piece, nothing lost.
    let garbage: Vec<u8> = (0..65_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    tx.send_to(&garbage, &sock).unwrap();
    wait_for("the garbage datagram in pieces", || {
        let stored: usize = entries(&d)
            .iter()
            .filter(|e| {
                e["source"] == "syslog"
                    && e["msg"]
                        .as_str()
                        .unwrap()
                        .bytes()
                        .all(|b| b.is_ascii_lowercase())
            })
            .map(|e| e["msg"].as_str().unwrap().len())
            .sum();
        stored >= 65_000
    });
    // A datagram longer than the receive buffer: stored cut, flagged.
    tx.send_to(&vec![b'q'; 70_000], &sock).unwrap();
    wait_selflog(&d, &["longer than 65536 bytes", "truncated"]);
    let q: Vec<Value> = entries(&d)
        .into_iter()
        .filter(|e| e["msg"].as_str().unwrap().bytes().all(|b| b == b'q'))
        .collect();
    let stored: usize = q.iter().map(|e| e["msg"].as_str().unwrap().len()).sum();
    assert_eq!(stored, 65_536);
    assert_eq!(q.last().unwrap()["truncated"], true);
    // Still serving.
    tx.send_to(b"<13>after: still here", &sock).unwrap();
    wait_entry(&d, "still here");
    assert!(d.stop().success());
}

#[test]
fn rate_limit_per_sender_reports_what_it_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dev-log");
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--syslog-socket",
            sock.to_str().unwrap(),
            "--syslog-rate-limit",
            "5/5s",
        ],
    );
    let tx = UnixDatagram::unbound().unwrap();
    for i in 0..20 {
        tx.send_to(format!("<13>flood: m{i}").as_bytes(), &sock)
            .unwrap();
    }
    // An emergency always passes.
    tx.send_to(b"<8>flood: emergency", &sock).unwrap();
    wait_entry(&d, "emergency");
    let me = std::process::id().to_string();
    let report = wait_selflog(&d, &["suppressed 15 messages", &format!("pid {me}")]);
    assert!(report.contains("rate limit"), "{report}");
    let kept: Vec<String> = entries(&d)
        .iter()
        .filter(|e| e["source"] == "flood")
        .map(|e| e["msg"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, ["m0", "m1", "m2", "m3", "m4", "emergency"]);
    assert!(d.stop().success());
}

#[test]
fn oversized_tcp_frames_are_skipped_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--syslog-tcp",
            &format!("127.0.0.1:{port}"),
            "--syslog-max-frame",
            "1000",
        ],
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let big = "x".repeat(5000);
    write!(s, "5000 {big}13 <13>a: after1").unwrap();
    // An LF frame of 3000 bytes, then one more.
    write!(s, "{}\n<13>b: after2\n", "y".repeat(3000)).unwrap();
    // A length prefix of 2^63: not believed, read as an LF frame.
    writeln!(s, "9223372036854775808 <13>c: huge count").unwrap();
    s.flush().unwrap();
    wait_entry(&d, "after1");
    wait_entry(&d, "after2");
    wait_selflog(&d, &["longer than 1000 bytes", "--syslog-max-frame"]);
    let stored = entries(&d);
    assert!(
        !stored
            .iter()
            .any(|e| e["msg"].as_str().unwrap().contains("xxxx")),
        "the oversized frame is not stored"
    );
    wait_for("the frame with the huge count", || {
        entries(&d)
            .iter()
            .any(|e| e["msg"].as_str().unwrap().contains("huge count"))
    });
    // An unterminated 10 MB frame costs at most --syslog-max-frame; other
    // senders go on meanwhile.
    let mut hog = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let chunk = vec![b'z'; 1 << 20];
    for _ in 0..10 {
        hog.write_all(&chunk).unwrap();
    }
    let mut other = TcpStream::connect(("127.0.0.1", port)).unwrap();
    other.write_all(b"<13>other: unaffected\n").unwrap();
    wait_entry(&d, "unaffected");
    drop(hog);
    assert!(d.stop().success());
}

/// CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn many_idle_tcp_connections_cost_no_cpu_and_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--syslog-tcp",
            &format!("127.0.0.1:{port}"),
            "--syslog-max-connections",
            "400",
        ],
    );
    let mut idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Each is accepted (one message through the last one proves it).
    idle[399].write_all(b"<13>idle: last\n").unwrap();
    wait_entry(&d, "last");
    // One more is closed at once, with a reason in ringtail's own log.
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra.set_read_timeout(Some(support::DEADLINE)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(extra.read(&mut b).unwrap_or(0), 0, "closed by the daemon");
    wait_selflog(&d, &["at most 400", "--syslog-max-connections"]);
    // Idle connections cost no CPU: nothing wakes the daemon.
    let before = cpu_ticks(d.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(d.child.id()) - before;
    assert!(
        used <= 10,
        "{used} ticks of CPU in 2 s with 400 idle connections"
    );
    // Room again once one closes.
    drop(idle.pop());
    wait_for("a new connection to be served", || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"<13>idle: room again\n");
        drop(s);
        entries(&d).iter().any(|e| e["msg"] == "room again")
    });
    drop(idle);
    assert!(d.stop().success());
}

#[test]
fn rsyslog_forwards_to_ringtail_over_tcp_with_octet_counting() {
    if !support::rsyslog::Rsyslog::available("rsyslog_forwards_to_ringtail") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--syslog-tcp",
            &format!("127.0.0.1:{port}"),
        ],
    );
    // rsyslog takes messages on a unix socket of its own and forwards
    // them with omfwd, RFC 5424 over TCP, octet-counted.
    let rs = tempfile::tempdir().unwrap();
    let r = rs.path().display();
    let conf = format!(
        "global(workDirectory=\"{r}\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{r}/log.sock\" CreatePath=\"on\")\n\
         action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" \
         TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n"
    );
    std::fs::write(rs.path().join("rsyslog.conf"), conf).unwrap();
    let mut rsyslogd = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(rs.path().join("rsyslog.conf"))
        .arg("-i")
        .arg(rs.path().join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rsyslogd");
    let sock = rs.path().join("log.sock");
    wait_for("rsyslog's socket", || sock.exists());
    for i in 0..50 {
        logger(&[
            "-u",
            sock.to_str().unwrap(),
            "-t",
            "viarsyslog",
            "-p",
            "local5.err",
            &format!("relayed {i}"),
        ]);
    }
    let got = {
        let mut got = Vec::new();
        wait_for("50 relayed messages", || {
            got = entries(&d)
                .into_iter()
                .filter(|e| e["source"] == "viarsyslog")
                .collect();
            got.len() >= 50
        });
        got
    };
    for (i, e) in got.iter().enumerate() {
        // rsyslog keeps the space after the tag's colon in MSG when it
        // forwards a local message as RFC 5424 (its `mmrm1stspace` module
        // exists to remove it); ringtail stores MSG as sent.
        let msg = e["msg"].as_str().unwrap();
        assert_eq!(
            msg.trim_start(),
            format!("relayed {i}"),
            "in order, each once"
        );
        assert_eq!(e["level"], "error");
        assert_eq!(label(e, "facility"), Some("local5"));
        assert_eq!(label(e, "peer"), Some("127.0.0.1"));
        assert!(label(e, "hostname").is_some());
        assert!(e["source_time_ns"].as_u64().is_some());
    }
    assert_eq!(got.len(), 50);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rsyslogd.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    support::wait_exit(&mut rsyslogd);
    assert!(d.stop().success());
}

// ----------------------------------------------------------------------
// the kernel log

fn kmsg_args<'a>(path: &'a str, state: &'a str, ring: &'a str) -> Vec<&'a str> {
    vec![
        "--http",
        "off",
        "--kmsg",
        path,
        "--kmsg-state",
        state,
        "--ring-file",
        ring,
    ]
}

#[test]
fn kmsg_records_from_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("kmsg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let state = dir.path().join("kmsg.seq");
    let ring = dir.path().join("ring");
    let d = Daemon::start(
        dir.path(),
        &kmsg_args(
            fifo.to_str().unwrap(),
            state.to_str().unwrap(),
            ring.to_str().unwrap(),
        ),
    );
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(
        b"6,10,1000,-;e1000e: eth0 NIC Link is Up\n SUBSYSTEM=net\n DEVICE=n2\n\
          3,11,2000,-;tab\\x09and backslash\\x5c\n",
    )
    .unwrap();
    w.flush().unwrap();
    let e = wait_entry(&d, "e1000e: eth0 NIC Link is Up");
    assert_eq!(e["source"], "kernel");
    assert_eq!(e["level"], "info");
    assert_eq!(label(&e, "facility"), Some("kern"));
    assert_eq!(label(&e, "subsystem"), Some("net"));
    assert_eq!(label(&e, "device"), Some("n2"));
    let e = wait_entry(&d, "tab\tand backslash\\");
    assert_eq!(e["level"], "error");
    // A seq jump: three records were overwritten before they were read.
    w.write_all(b"4,15,3000,-;after the gap\n").unwrap();
    w.flush().unwrap();
    wait_entry(&d, "after the gap");
    wait_selflog(&d, &["missed 3 kernel messages"]);
    // A record that cannot be read is stored as it came.
    w.write_all(b"garbage without a prefix\n").unwrap();
    w.flush().unwrap();
    wait_entry(&d, "garbage without a prefix");
    assert!(d.stop().success());
}

#[test]
fn kmsg_resumes_without_duplicates_on_a_ring_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kmsg.txt");
    let state = dir.path().join("kmsg.seq");
    let ring = dir.path().join("ring");
    let (f, s, r) = (
        file.to_str().unwrap(),
        state.to_str().unwrap(),
        ring.to_str().unwrap(),
    );
    std::fs::write(&file, b"6,0,10,-;first\n6,1,20,-;second\n").unwrap();
    let d = Daemon::start(dir.path(), &kmsg_args(f, s, r));
    wait_entry(&d, "second");
    wait_for("the position to be saved", || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.trim().ends_with(" 2"))
    });
    assert!(d.stop().success());
    // The same records again, and one more: only the new one is stored.
    std::fs::write(&file, b"6,0,10,-;first\n6,1,20,-;second\n6,2,30,-;third\n").unwrap();
    let d = Daemon::start(dir.path(), &kmsg_args(f, s, r));
    wait_entry(&d, "third");
    let kernel: Vec<String> = entries(&d)
        .iter()
        .filter(|e| e["source"] == "kernel")
        .map(|e| e["msg"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kernel, ["first", "second", "third"]);
    assert!(d.stop().success());
    // Another ring (the file reset): the backlog belongs in it again.
    std::fs::remove_file(&ring).unwrap();
    let d = Daemon::start(dir.path(), &kmsg_args(f, s, r));
    wait_entry(&d, "third");
    wait_entry(&d, "first");
    assert!(d.stop().success());
}

#[test]
fn dev_kmsg_round_trip_as_root() {
    let writable = Path::new("/dev/kmsg").exists()
        && std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .is_ok()
        && std::fs::File::open("/dev/kmsg").is_ok();
    if !writable {
        eprintln!("SKIPPED dev_kmsg_round_trip_as_root: /dev/kmsg is not readable and writable here (run as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kmsg.seq");
    let d = Daemon::start(
        dir.path(),
        &[
            "--http",
            "off",
            "--kmsg",
            "--kmsg-state",
            state.to_str().unwrap(),
        ],
    );
    let token = format!("ringtail-test-{}-{}", std::process::id(), free_port());
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .unwrap()
        .write_all(format!("<12>ringtailtest: {token}\n").as_bytes())
        .unwrap();
    let mut found = None;
    wait_for("the record written to /dev/kmsg", || {
        found = entries(&d)
            .into_iter()
            .find(|e| e["source"] == "kernel" && e["msg"].as_str().unwrap().contains(&token));
        found.is_some()
    });
    let e = found.unwrap();
    assert_eq!(e["level"], "warning");
    assert_eq!(label(&e, "facility"), Some("user"));
    assert_eq!(label(&e, "severity"), Some("warning"));
    assert!(d.stop().success());
}

#[test]
fn syslog_tables_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp) = (free_port(), free_udp_port());
    let conf = dir.path().join("ringtail.toml");
    std::fs::write(
        &conf,
        format!(
            "http = \"off\"\n\
             syslog-udp = [\"127.0.0.1:{udp}\"]\n\
             [[syslog]]\n\
             tcp = \"127.0.0.1:{tcp}\"\n\
             name = \"syslog-tcp-edge\"\n\
             time-zone = \"UTC\"\n\
             rate-limit = \"100/10s\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    // An RFC 3164 time read in the table's zone (UTC).
    s.write_all(b"<13>Jan  5 10:00:00 edge app: from a table\n")
        .unwrap();
    let e = wait_entry(&d, "from a table");
    assert_eq!(e["source"], "app");
    assert_eq!(label(&e, "hostname"), Some("edge"));
    let t = e["source_time"].as_str().unwrap();
    assert!(t.contains("-01-05T10:00:00"), "{t}");
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"<13>app: from a flag", ("127.0.0.1", udp))
        .unwrap();
    wait_entry(&d, "from a flag");
    assert!(d.stop().success());

    // A table with two addresses is refused, naming the file and line.
    std::fs::write(
        &conf,
        "http = \"off\"\n[[syslog]]\nudp = \"127.0.0.1:1\"\ntcp = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, _, err) = support::serve_check(&["--config", conf.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("exactly one of socket"), "{err}");
    assert!(err.contains("ringtail.toml"), "{err}");
}
