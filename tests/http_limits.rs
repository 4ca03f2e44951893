//! What hostile or careless HTTP clients cannot do to a running daemon:
//! hold connections forever (idle, trickling headers, more than the cap),
//! or make it hold more memory than its in-flight budget while it decodes
//! pushes. Against a real `ringtail serve` process on loopback; every wait
//! is for a condition (a connection closed, an answer), with a deadline
//! that only matters when the test fails.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{wait_for, Daemon, DEADLINE};

fn start(extra: &[&str]) -> (tempfile::TempDir, Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let d = Daemon::start(dir.path(), &args);
    let addr = d.http_addr().expect("the HTTP address is printed");
    (dir, d, addr)
}

/// Reads until the server closes the connection; fails the test if it
/// has not by the deadline.
fn read_to_close(mut s: &TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server never closed the connection ({} bytes read: {:?})",
            out.len(),
            String::from_utf8_lossy(&out)
        );
    }
    out
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let text = String::from_utf8_lossy(&read_to_close(&s)).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A metric's value from `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let (_dir, d, addr) = start(&["--http-idle-timeout", "1s", "--http-header-timeout", "1h"]);
    let s = TcpStream::connect(addr).unwrap();
    // Silent: closed by the daemon (read returns end of file).
    assert!(read_to_close(&s).is_empty());
    // After a request, a keep-alive connection that goes quiet too.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&s)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(d.stop().success());
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_by_the_header_timeout() {
    // With an idle timeout of an hour, only the header deadline can end
    // this connection.
    let (_dir, d, addr) = start(&["--http-idle-timeout", "1h", "--http-header-timeout", "1s"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = loop {
        assert!(started.elapsed() < DEADLINE, "never cut off");
        // One header byte at a time, never finishing the head.
        if s.write_all(b"X").is_err() {
            break true;
        }
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break false,
            Err(_) => {}
        }
    };
    assert!(closed, "the connection was answered instead of closed");
    wait_for("the timeout to be counted", || {
        metric(addr, "ringtail_http_header_timeouts_total") >= 1
    });
    assert!(d.stop().success());
}

#[test]
fn a_live_follow_stream_is_never_idle() {
    let (_dir, d, addr) = start(&["--http-idle-timeout", "1s", "--http-header-timeout", "1s"]);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/v1/follow?source=late.out&format=raw HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    // Past both deadlines, silent on both sides...
    std::thread::sleep(Duration::from_millis(2500));
    // ...then a line arrives, and the stream still carries it.
    assert!(d
        .run(&["-n", "late", "--", "echo", "still here"])
        .status
        .success());
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("still here") {
        let n = s.read(&mut buf).expect("the stream is open");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(d.stop().success());
}

#[test]
fn connections_past_the_cap_get_a_clear_503_and_are_counted() {
    let (_dir, d, addr) = start(&["--http-max-connections", "4", "--http-idle-timeout", "1h"]);
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    wait_for("four connections open", || {
        // The metric's own request needs a fifth slot: count refusals.
        let s = TcpStream::connect(addr).unwrap();
        let text = String::from_utf8_lossy(&read_to_close(&s)).into_owned();
        text.starts_with("HTTP/1.1 503")
    });
    let s = TcpStream::connect(addr).unwrap();
    let text = String::from_utf8_lossy(&read_to_close(&s)).into_owned();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("--http-max-connections"), "{text}");
    drop(held);
    wait_for("a slot to free up", || get(addr, "/healthz").0 == 200);
    assert!(metric(addr, "ringtail_http_connections_refused_total") >= 2);
    assert!(d.stop().success());
}

/// The daemon's peak and current resident memory, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// A push that inflates from under 100 KB of gzip to about 27 MB of JSON:
/// one stream of a million short lines.
fn bomb() -> Vec<u8> {
    let mut json = br#"{"streams":[{"stream":{"source":"m"},"values":["#.to_vec();
    for i in 0..1_000_000 {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(br#"["1","llllllllllllllllllll"]"#);
    }
    json.extend_from_slice(b"]}]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json).unwrap();
    gz.finish().unwrap()
}

fn push(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /loki/api/v1/push HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    // Not read_to_close's deadline: queued behind fifteen others, a push
    // can take minutes in a debug build on a busy machine.
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let mut answer = Vec::new();
    let _ = (&s).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn pushes_that_inflate_cost_no_more_than_the_budget() {
    // A generous request timeout: sixteen million-line pushes queue for
    // the budget one after another, which takes long in a debug build on a
    // busy machine, and a 408 would say nothing about memory.
    let (_dir, d, addr) = start(&[
        "--http-max-inflight",
        "8MiB",
        "--max-lines",
        "10000",
        "--http-timeout",
        "1h",
    ]);
    let body = bomb();
    assert!(body.len() < 200_000, "{} bytes", body.len());
    let pid = d.child.id();
    let (hwm_before, _) = memory(pid);
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16).map(|_| scope.spawn(|| push(addr, &body))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = answers.iter().filter(|(s, _)| *s == 204).count();
    for (status, text) in &answers {
        assert!(
            *status == 204 || (*status == 429 && text.contains("retry-after")),
            "{text}"
        );
    }
    assert!(stored >= 1, "at least one push got through");
    let (hwm, _) = memory(pid);
    // Before the budget, each of these cost about 80 MB at once (1.28 GB
    // for 16). Now: the budget (8 MiB), the ring (10,000 lines), and what
    // each handler holds besides (its stack, one line, serde's scratch).
    let grew_mib = (hwm.saturating_sub(hwm_before)) / 1024;
    eprintln!(
        "VmHWM {hwm_before} -> {hwm} KiB (+{grew_mib} MiB); {stored} of 16 stored, the rest 429"
    );
    assert!(grew_mib < 64, "peak memory grew by {grew_mib} MiB");
    assert!(d.stop().success());
}

#[test]
fn a_push_larger_than_the_whole_budget_is_refused_at_once() {
    let (_dir, d, addr) = start(&["--http-max-inflight", "1MiB"]);
    let body = vec![b'x'; 3 << 20];
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /loki/api/v1/push HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(&body);
    let text = String::from_utf8_lossy(&read_to_close(&s)).into_owned();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("--http-max-inflight"), "{text}");
    assert!(d.stop().success());
}
