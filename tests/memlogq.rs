//! The query socket end to end: a real unix socket in a temp dir, a ring
//! filled through the ring API, and clients that speak memlogd's mode
//! bytes or the JSON request.
//!
//! No test waits a fixed time for something to happen: every wait is for a
//! condition (a line, an end of file) with a generous timeout that only
//! matters when the test is failing anyway.

mod support;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{OriginHandle, Ring, Span};
use ringtail::serve::memlogq::{self, ClientRequest, JsonRequest, Mode, QueryConfig, QueryFormat};
use serde_json::Value;
use support::Stack;

/// Long enough that only a broken server hits it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A query socket over a ring filled through the ring API.
struct Server {
    stack: Stack,
    path: PathBuf,
    ring: Arc<Ring>,
}

impl Server {
    fn start(max_lines: u64, config: QueryConfig) -> Server {
        let stack = Stack::builder()
            .lines(max_lines)
            .ingest(ringtail::sources::IngestConfig {
                follower_pacing: 0,
                ..Default::default()
            })
            .query(config)
            .start();
        Server {
            path: stack.query.clone(),
            ring: stack.ring.clone(),
            stack,
        }
    }

    fn origin(&self, name: &str) -> OriginHandle {
        self.ring.origin(Origin::new(name)).unwrap()
    }

    /// A connection that has sent `bytes`.
    fn send(&self, bytes: &[u8]) -> UnixStream {
        let mut s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(bytes).unwrap();
        s
    }

    fn mode(&self, mode: u8) -> UnixStream {
        self.send(&[mode])
    }

    fn json(&self, request: &str) -> UnixStream {
        self.send(format!("{request}\n").as_bytes())
    }

    /// Stops the server and checks that it returns.
    fn stop(mut self) {
        self.stack.stop();
    }
}

/// Reads to end of file; fails on a timeout or a reset.
fn read_all(mut s: UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server ends the answer with a clean end of file");
    out
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    assert_eq!(v.pop(), Some(&b""[..]), "the answer ends with a newline");
    v
}

fn json_lines(data: &[u8]) -> Vec<Value> {
    lines(data)
        .into_iter()
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// Appends `n` messages `<prefix><i>` and returns their seqs.
fn fill(ring: &Ring, origin: &OriginHandle, prefix: &str, range: std::ops::Range<u64>) -> Vec<u64> {
    range
        .map(|i| ring.append(origin, Flags::default(), format!("{prefix}{i}").as_bytes()))
        .collect()
}

fn msgs(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["msg"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dump_in_memlogd_json() {
    let srv = Server::start(1000, QueryConfig::default());
    let web = srv.origin("web.out");
    let db = srv.origin("db");
    let mut want = Vec::new();
    for i in 0..50 {
        let (o, name) = if i % 3 == 0 {
            (&db, "db")
        } else {
            (&web, "web.out")
        };
        let msg = format!("line {i} \"quoted\" \\ tab\t");
        srv.ring.append(o, Flags::default(), msg.as_bytes());
        want.push((name.to_string(), msg));
    }
    let got = json_lines(&read_all(srv.mode(0)));
    assert_eq!(got.len(), 50);
    let mut last_time = String::new();
    for (v, (src, msg)) in got.iter().zip(&want) {
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 3, "memlogd's three fields only: {v}");
        assert_eq!(v["source"], src.as_str());
        assert_eq!(v["msg"], msg.as_str());
        let t = v["time"].as_str().unwrap().to_string();
        assert_eq!(t.len(), 30, "RFC 3339 with ns: {t}");
        assert!(t.ends_with('Z') && t >= last_time);
        last_time = t;
    }
    srv.stop();
}

#[test]
fn dump_in_older_text_lines() {
    let config = QueryConfig {
        format: QueryFormat::Text,
        ..QueryConfig::default()
    };
    let srv = Server::start(100, config);
    let o = srv.origin("svc;odd");
    srv.ring.append(&o, Flags::default(), b"hello; world");
    srv.ring.append(&o, Flags::default(), b"bad \xff byte");
    let data = read_all(srv.mode(0));
    let l = lines(&data);
    assert_eq!(l.len(), 2);
    let s0 = std::str::from_utf8(l[0]).unwrap();
    assert_eq!(&s0[30..], ",svc\\;odd;hello; world");
    assert!(s0[..30].ends_with('Z'));
    assert_eq!(&l[1][30..], b",svc\\;odd;bad \\xff byte");
    srv.stop();
}

#[test]
fn dump_of_an_empty_ring_is_an_empty_answer() {
    let srv = Server::start(100, QueryConfig::default());
    assert_eq!(read_all(srv.mode(0)), b"");
    srv.stop();
}

#[test]
fn trailing_bytes_after_the_mode_byte_are_ignored() {
    let srv = Server::start(100, QueryConfig::default());
    let o = srv.origin("a");
    fill(&srv.ring, &o, "m", 0..10);
    let got = json_lines(&read_all(srv.send(b"\x00garbage-after-mode\n")));
    assert_eq!(
        msgs(&got),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    srv.stop();
}

/// Reads lines from a follower on a thread, so the test can append while
/// it waits for them.
struct LineReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    stream: UnixStream,
}

impl LineReader {
    fn new(s: UnixStream) -> LineReader {
        let stream = s.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(s);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        line.pop();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        LineReader { rx, stream }
    }

    /// Closes the connection (the reading thread then ends).
    fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn next(&self) -> Vec<u8> {
        self.rx
            .recv_timeout(PATIENCE)
            .expect("a line within the patience")
    }

    fn try_next(&self, wait: Duration) -> Option<Vec<u8>> {
        self.rx.recv_timeout(wait).ok()
    }

    fn next_json(&self) -> Value {
        serde_json::from_slice(&self.next()).unwrap()
    }
}

/// Appends probes until the follower shows one: from then on, the server
/// has registered the follow. Returns the probe index it saw first.
fn wait_until_following(srv: &Server, origin: &OriginHandle, reader: &LineReader) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    let mut k = 0;
    loop {
        srv.ring
            .append(origin, Flags::default(), format!("probe {k}").as_bytes());
        k += 1;
        if let Some(line) = reader.try_next(Duration::from_millis(20)) {
            let v: Value = serde_json::from_slice(&line).unwrap();
            let m = v["msg"].as_str().unwrap();
            return m.strip_prefix("probe ").unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the follower never saw a probe");
    }
}

#[test]
fn follow_sends_only_new_entries() {
    let srv = Server::start(1000, QueryConfig::default());
    let o = srv.origin("f");
    fill(&srv.ring, &o, "old ", 0..20);
    let reader = LineReader::new(srv.mode(1));
    let first = wait_until_following(&srv, &o, &reader);
    // Every later probe, then 100 new lines, in order, and nothing old.
    let mut expect: Vec<String> = Vec::new();
    fill(&srv.ring, &o, "new ", 0..100);
    let mut got = Vec::new();
    loop {
        let v = reader.next_json();
        let m = v["msg"].as_str().unwrap().to_string();
        let done = m == "new 99";
        got.push(m);
        if done {
            break;
        }
    }
    let probes_after: Vec<String> = got
        .iter()
        .take_while(|m| m.starts_with("probe "))
        .cloned()
        .collect();
    for (i, p) in probes_after.iter().enumerate() {
        assert_eq!(*p, format!("probe {}", first + 1 + i as u64));
    }
    expect.extend(probes_after.iter().cloned());
    expect.extend((0..100).map(|i| format!("new {i}")));
    assert_eq!(got, expect);
    srv.stop();
}

#[test]
fn dump_then_follow_has_no_gap_and_no_duplicate_at_the_seam() {
    let srv = Server::start(1 << 20, QueryConfig::default());
    let o = Arc::new(srv.origin("seam"));
    fill(&srv.ring, &o, "n=", 0..5000);
    let total = 60_000u64;
    // A writer keeps appending while the dump runs and after it.
    let writer = {
        let ring = srv.ring.clone();
        let o = o.clone();
        std::thread::spawn(move || {
            for i in 5000..total {
                ring.append(&o, Flags::default(), format!("n={i}").as_bytes());
                if i % 1000 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    let reader = LineReader::new(srv.mode(2));
    for i in 0..total {
        let v = reader.next_json();
        assert_eq!(v["source"], "seam", "no gap line expected: {v}");
        assert_eq!(v["msg"], format!("n={i}"));
    }
    writer.join().unwrap();
    srv.stop();
}

/// A reader on a connection that stops reading while a tiny ring is
/// lapped many times: it gets in-band gap lines, and delivered + missed =
/// appended. (memlogd's lines carry no seq, so the exact position of each
/// gap is checked by the NDJSON test below.)
#[test]
fn lapped_follower_gets_gap_lines_that_account_for_every_entry() {
    let srv = Server::start(16, QueryConfig::default());
    let o = srv.origin("t");
    let s = srv.mode(2);
    // Small buffers so the server blocks early (it keeps its own bounded
    // buffer either way).
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    let mut r = BufReader::new(s);
    let ready = srv.ring.append(&o, Flags::default(), b"ready");
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        v["msg"], "ready",
        "the dump+follow started at the ring's first entry"
    );

    // Not reading now: the server fills the socket, blocks, and is lapped.
    let n = 50_000u64;
    fill(&srv.ring, &o, "n=", 0..n);
    let end = srv.ring.append(&o, Flags::default(), b"end");

    let mut delivered = 0u64;
    let mut missed = 0u64;
    let mut gaps = 0;
    let mut last_n: Option<u64> = None;
    loop {
        line.clear();
        assert!(
            r.read_until(b'\n', &mut line).unwrap() > 0,
            "answer ended early"
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        let msg = v["msg"].as_str().unwrap();
        match v["source"].as_str().unwrap() {
            "ringtail" if msg.starts_with("missed ") => {
                let count: u64 = msg["missed ".len()..]
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(msg.contains("this reader fell behind"), "{msg}");
                missed += count;
                gaps += 1;
                continue;
            }
            // The self log's own report of a gap: an entry like any other.
            "ringtail" => {}
            "t" if msg == "end" => {
                delivered += 1;
                break;
            }
            "t" => {
                let i: u64 = msg.strip_prefix("n=").unwrap().parse().unwrap();
                assert!(last_n.is_none_or(|l| i > l), "in order, no duplicate");
                last_n = Some(i);
            }
            other => panic!("unexpected source {other}"),
        }
        delivered += 1;
    }
    assert!(
        gaps >= 1,
        "a reader that stopped reading must have been lapped"
    );
    assert_eq!(
        delivered + missed,
        end - ready,
        "delivered {delivered} + missed {missed} = every entry after `ready`"
    );
    srv.stop();
}

#[test]
fn lapped_ndjson_reader_gets_gap_records_with_seqs() {
    let srv = Server::start(16, QueryConfig::default());
    let o = srv.origin("t");
    let mut r = BufReader::new(srv.json(r#"{"mode":"dump+follow"}"#));
    let ready = srv.ring.append(&o, Flags::default(), b"ready");
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["seq"], ready);
    let seqs = fill(&srv.ring, &o, "n=", 0..50_000);
    let end = srv.ring.append(&o, Flags::default(), b"end");
    let mut next = ready + 1;
    let mut gaps = 0;
    loop {
        line.clear();
        assert!(r.read_until(b'\n', &mut line).unwrap() > 0);
        let v: Value = serde_json::from_slice(&line).unwrap();
        if let Some(g) = v.get("gap") {
            assert_eq!(g["first_seq"], next, "a gap starts where the reader was");
            next += g["missed"].as_u64().unwrap();
            gaps += 1;
            continue;
        }
        // Self-log entries (the report of a gap) have seqs like any other.
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(seq, next, "entries follow gaps without a hole: {v}");
        next = seq + 1;
        if seq == end {
            break;
        }
    }
    assert!(gaps >= 1);
    assert_eq!(*seqs.last().unwrap() + 1, end);
    srv.stop();
}

#[test]
fn unknown_mode_byte_closes_at_once() {
    let srv = Server::start(100, QueryConfig::default());
    let o = srv.origin("a");
    fill(&srv.ring, &o, "m", 0..10);
    for bytes in [&b"\x07"[..], b"\x03more", b"\xff", b"x"] {
        let t0 = Instant::now();
        let data = read_all(srv.send(bytes));
        assert!(data.is_empty(), "nothing is answered to {bytes:?}");
        assert!(t0.elapsed() < PATIENCE);
    }
    // The server is fine afterwards, and noted it once (rate limited).
    let got = json_lines(&read_all(srv.mode(0)));
    assert_eq!(got.iter().filter(|v| v["source"] == "a").count(), 10);
    let notes: Vec<_> = got.iter().filter(|v| v["source"] == "ringtail").collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]["msg"]
        .as_str()
        .unwrap()
        .contains("unknown first byte"));
    srv.stop();
}

#[test]
fn a_silent_client_delays_no_one_and_is_dropped() {
    let config = QueryConfig {
        idle_timeout: Duration::from_millis(300),
        ..QueryConfig::default()
    };
    let srv = Server::start(100, config);
    let o = srv.origin("a");
    fill(&srv.ring, &o, "m", 0..10);
    let silent = UnixStream::connect(&srv.path).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    // Another client is served while the silent one waits.
    assert_eq!(json_lines(&read_all(srv.mode(0))).len(), 10);
    // The silent one is dropped after the idle timeout: end of file.
    let t0 = Instant::now();
    assert_eq!(read_all(silent), b"");
    assert!(t0.elapsed() < PATIENCE);
    srv.stop();
}

#[test]
fn connections_past_max_clients_are_refused() {
    let config = QueryConfig {
        max_clients: 1,
        ..QueryConfig::default()
    };
    let srv = Server::start(100, config);
    let o = srv.origin("a");
    fill(&srv.ring, &o, "m", 0..3);
    let follower = LineReader::new(srv.mode(1));
    // Make sure the follower holds the one slot.
    wait_until_following(&srv, &o, &follower);
    // Refused: closed without an answer (writing the mode byte may already
    // fail, the server having closed first).
    let mut refused = UnixStream::connect(&srv.path).unwrap();
    refused.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = refused.write_all(&[0]);
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    follower.close();
    // Once the follower is gone its slot frees up.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = UnixStream::connect(&srv.path).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut answer = Vec::new();
        if s.write_all(&[0]).is_ok() && s.read_to_end(&mut answer).is_ok() && !answer.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.stop();
}

#[test]
fn shutdown_ends_followers() {
    let srv = Server::start(100, QueryConfig::default());
    let s = srv.mode(1);
    let o = srv.origin("a");
    let reader = LineReader::new(s.try_clone().unwrap());
    wait_until_following(&srv, &o, &reader);
    srv.stop();
    let mut rest = Vec::new();
    let mut s = s;
    s.read_to_end(&mut rest).unwrap();
}

#[test]
fn json_request_resumes_by_seq_without_loss_or_duplicate() {
    let srv = Server::start(1000, QueryConfig::default());
    let o = srv.origin("r");
    let seqs = fill(&srv.ring, &o, "m", 0..100);
    let mut seen = Vec::new();
    let mut last: Option<u64> = None;
    loop {
        let req = match last {
            Some(s) => format!(r#"{{"since_seq":{s},"limit":30}}"#),
            None => r#"{"limit":30}"#.to_string(),
        };
        let got = json_lines(&read_all(srv.json(&req)));
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 30);
        for v in &got {
            seen.push(v["seq"].as_u64().unwrap());
            assert!(v.get("time_ns").is_some() && v.get("time").is_some());
        }
        last = seen.last().copied();
    }
    assert_eq!(seen, seqs);

    // Following with a resume point: the rest, then new entries.
    let reader =
        LineReader::new(srv.json(&format!(r#"{{"mode":"follow","since_seq":{}}}"#, seqs[89])));
    for i in 90..100 {
        assert_eq!(reader.next_json()["msg"], format!("m{i}"));
    }
    let more = fill(&srv.ring, &o, "m", 100..110);
    for s in more {
        assert_eq!(reader.next_json()["seq"], s);
    }
    srv.stop();
}

#[test]
fn json_request_resume_after_eviction_starts_with_a_gap() {
    let srv = Server::start(16, QueryConfig::default());
    let o = srv.origin("r");
    let seqs = fill(&srv.ring, &o, "m", 0..100);
    let first = srv.ring.stats().oldest_seq;
    let got = json_lines(&read_all(
        srv.json(&format!(r#"{{"since_seq":{}}}"#, seqs[9])),
    ));
    assert_eq!(got[0]["gap"]["first_seq"], seqs[10]);
    assert_eq!(got[0]["gap"]["missed"], first - seqs[10]);
    assert_eq!(got[1]["seq"], first);
    assert_eq!(got.len() as u64, 1 + (seqs[99] + 1 - first));
    // The gap was reported to the self log once the dump was done (not in
    // its middle, where the self-log entry would have evicted a line).
    let log = json_lines(&read_all(srv.json(r#"{"sources":["ringtail"]}"#)));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["seq"], seqs[99] + 1);
    assert!(log[0]["msg"]
        .as_str()
        .unwrap()
        .starts_with("reader on query socket missed 74 lines"));
    // A seq this ring never handed out: the ring was replaced.
    let got = json_lines(&read_all(srv.json(r#"{"since_seq":999999}"#)));
    assert_eq!(got.len(), 1);
    assert!(got[0]["error"]
        .as_str()
        .unwrap()
        .contains("past the newest entry"));
    srv.stop();
}

/// Refusals carry a code a client matches instead of the text.
#[test]
fn refusals_carry_a_code() {
    let srv = Server::start(100, QueryConfig::default());
    let code = |req: &str| {
        let got = json_lines(&read_all(srv.json(req)));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0]["error"].is_string(), "{got:?}");
        got[0]["code"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(code(r#"{"since_seq":999999}"#), "future_seq");
    assert_eq!(
        code(r#"{"since_seq":0,"ring_id":"00000000000000ff"}"#),
        "other_ring"
    );
    assert_eq!(code(r#"{"mode":"sideways"}"#), "bad_request");
    srv.stop();
}

#[test]
fn json_request_filters() {
    let srv = Server::start(1000, QueryConfig::default());
    let web = srv
        .ring
        .origin(Origin::new("web.out").with_label("app", "nginx"))
        .unwrap();
    let web2 = srv.origin("web2");
    let db = srv.origin("db");
    for i in 0..30 {
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let flags = Flags::default().with_stream(Some(stream));
        let o = [&web, &web2, &db][i % 3];
        let msg = if i % 5 == 0 {
            format!("error {i}")
        } else {
            format!("ok {i}")
        };
        srv.ring.append(o, flags, msg.as_bytes());
    }
    let q = |req: &str| msgs(&json_lines(&read_all(srv.json(req))));
    assert_eq!(q(r#"{"sources":["db"]}"#).len(), 10);
    assert_eq!(q(r#"{"sources":["web*"]}"#).len(), 20);
    assert_eq!(
        q(r#"{"sources":["web*"],"contains":"error"}"#),
        ["error 0", "error 10", "error 15", "error 25"]
    );
    assert_eq!(
        q(r#"{"regex":"^error [12]"}"#),
        ["error 10", "error 15", "error 20", "error 25"]
    );
    assert_eq!(
        q(r#"{"streams":["stderr"],"contains":"error"}"#),
        ["error 5", "error 15", "error 25"]
    );
    assert_eq!(
        q(r#"{"labels":{"app":"nginx"},"limit":2}"#),
        ["error 0", "ok 3"]
    );
    assert_eq!(q(r#"{"tail":3}"#), ["ok 27", "ok 28", "ok 29"]);
    assert_eq!(q(r#"{"tail":2,"sources":["db"]}"#), ["ok 26", "ok 29"]);
    assert_eq!(q(r#"{"tail":2,"limit":1}"#), ["ok 28"]);
    assert_eq!(q(r#"{"until":"2000-01-01T00:00:00Z"}"#).len(), 0);
    assert_eq!(q(r#"{"since":"1h"}"#).len(), 30);
    // Other formats through the JSON request.
    let data = read_all(srv.json(r#"{"sources":["db"],"limit":1,"format":"logread"}"#));
    let text = String::from_utf8(data).unwrap();
    assert!(text.ends_with(";db;ok 2\n"), "{text}");
    srv.stop();
}

#[test]
fn bad_json_requests_get_one_error_line() {
    let srv = Server::start(100, QueryConfig::default());
    for (req, needle) in [
        ("{not json", "bad request"),
        (
            r#"{"mode":"dump","colour":"red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"regex":"("}"#, "parameter `regex`"),
        (r#"{"mode":"follow","tail":1}"#, "`tail` applies"),
    ] {
        let got = json_lines(&read_all(srv.json(req)));
        assert_eq!(got.len(), 1, "{req}");
        let e = got[0]["error"].as_str().unwrap();
        assert!(e.contains(needle), "{req}: {e}");
    }
    // Too long: no newline within the limit.
    let mut s = UnixStream::connect(&srv.path).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let big = vec![b' '; memlogq::MAX_REQUEST_LEN + 10];
    s.write_all(b"{").unwrap();
    s.write_all(&big).unwrap();
    let got = json_lines(&read_all(s));
    assert!(got[0]["error"].as_str().unwrap().contains("longer than"));
    srv.stop();
}

#[test]
fn the_client_connects_and_sends_both_kinds_of_request() {
    let srv = Server::start(100, QueryConfig::default());
    let o = srv.origin("c");
    fill(&srv.ring, &o, "m", 0..5);
    let s = memlogq::connect(&srv.path, &ClientRequest::Mode(Mode::Dump)).unwrap();
    assert_eq!(json_lines(&read_all(s)).len(), 5);
    let req = JsonRequest {
        limit: Some(2),
        ..JsonRequest::default()
    };
    let s = memlogq::connect(&srv.path, &ClientRequest::Json(req)).unwrap();
    let got = json_lines(&read_all(s));
    assert_eq!(msgs(&got), ["m0", "m1"]);
    srv.stop();
}

/// Run with `cargo test --release --test memlogq -- --ignored --nocapture`.
/// A full ring of 1M 100-byte lines, dumped over the socket in memlogd's
/// JSON, and four such dumps at once with the memory they add.
#[test]
#[ignore = "performance measurement; run in release"]
fn perf_dump_of_a_full_million_line_ring() {
    let srv = Server::start(1_000_000, QueryConfig::default());
    let origins: Vec<_> = (0..4).map(|i| srv.origin(&format!("bench-{i}"))).collect();
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for k in 0..1000u64 {
        buf.clear();
        spans.clear();
        for i in 0..1000u64 {
            let start = buf.len() as u32;
            write!(buf, "B{k}:{:09}:", k * 1000 + i).unwrap();
            while buf.len() - (start as usize) < 100 {
                buf.push(b'x');
            }
            spans.push(Span::new(start, 100, Flags::default()));
        }
        srv.ring
            .append_batch(&origins[(k % 4) as usize], &buf, &spans)
            .unwrap();
    }
    assert_eq!(srv.ring.stats().retained, 1_000_000);

    let dump = |chunk: &mut [u8]| {
        let t0 = Instant::now();
        let mut s = srv.mode(0);
        let mut bytes = 0usize;
        let mut lines = 0usize;
        loop {
            let n = s.read(chunk).unwrap();
            if n == 0 {
                break;
            }
            bytes += n;
            lines += memchr::memchr_iter(b'\n', &chunk[..n]).count();
        }
        (t0.elapsed(), bytes, lines)
    };
    // The client's receive buffers, allocated (and touched) up front so
    // the memory figure below is the server's.
    let mut chunks: Vec<Vec<u8>> = (0..4).map(|_| vec![1u8; 1 << 20]).collect();
    let mut times = Vec::new();
    for _ in 0..5 {
        let (t, bytes, lines) = dump(&mut chunks[0]);
        assert_eq!(lines, 1_000_000);
        println!(
            "dump: {lines} lines, {bytes} bytes in {:.3} s ({:.0} MB/s)",
            t.as_secs_f64(),
            bytes as f64 / t.as_secs_f64() / 1e6
        );
        times.push(t);
    }
    times.sort();
    println!("dump median: {:.3} s", times[2].as_secs_f64());

    let status = |key: &str| -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = status("VmRSS:");
    // Reset the peak so VmHWM measures the concurrent dumps only.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let hs: Vec<_> = chunks
            .iter_mut()
            .map(|c| s.spawn(move || dump(c)))
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap().2, 1_000_000);
        }
    });
    let peak = status("VmHWM:");
    println!(
        "4 concurrent dumps: {:.3} s; RSS before {} KiB, peak during {} KiB (+{} KiB){}",
        t0.elapsed().as_secs_f64(),
        before,
        peak,
        peak.saturating_sub(before),
        if reset {
            ""
        } else {
            " (peak not reset: includes the fill)"
        }
    );
    srv.stop();
}

/// Run with `cargo test --release --test memlogq -- --ignored --nocapture`.
/// Follow latency: from `append` returning to the follower holding the
/// line, one line at a time.
#[test]
#[ignore = "performance measurement; run in release"]
fn perf_follow_latency() {
    let srv = Server::start(100_000, QueryConfig::default());
    let o = srv.origin("lat");
    let s = srv.mode(1);
    let mut r = BufReader::new(s);
    let mut line = Vec::new();
    // Wait until the follow is registered.
    let deadline = Instant::now() + PATIENCE;
    r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    loop {
        srv.ring.append(&o, Flags::default(), b"probe");
        if r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    r.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    // Drain probes that were still on their way.
    srv.ring.append(&o, Flags::default(), b"sync");
    loop {
        line.clear();
        r.read_until(b'\n', &mut line).unwrap();
        if line.windows(4).any(|w| w == b"sync") {
            break;
        }
    }
    let mut lat = Vec::new();
    let msg = [b'x'; 100];
    for _ in 0..20_000 {
        let t0 = Instant::now();
        srv.ring.append(&o, Flags::default(), &msg);
        line.clear();
        r.read_until(b'\n', &mut line).unwrap();
        lat.push(t0.elapsed());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "follow latency over {} lines: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        lat.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    srv.stop();
}
