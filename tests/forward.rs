//! Forwarders end to end: a real `ringtail serve` process forwarding to
//! the strict fake Loki (scripted 429/5xx/400, a backend down for as long
//! as the test wants), to another ringtail's Loki push API (fan-in), to a
//! real rsyslog (TCP and RELP) and to moto_server (CloudWatch Logs).
//!
//! What is checked is exact: every line the ring held arrives once, in
//! order; what the ring evicted before it was shipped is counted to the
//! entry; refusals are counted by reason; a `kill -9` of the forwarding
//! daemon (with `--ring-file`) loses and duplicates nothing.

mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::fake_loki::{FakeLoki, Scripted};
use support::fake_relp::FakeRelp;
use support::moto::Moto;
use support::rsyslog::{Input, Rsyslog};
use support::{wait_for, Daemon};

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("ringtail.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ringtail serve` in `dir` with `config` and HTTP on a free port.
fn start(dir: &Path, config: &Path, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--follower-pacing",
        "0",
    ];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The stats of sink `name` (`KIND:NAME`).
fn sink_stats(d: &Daemon, name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&http_get(d.http_addr().unwrap(), "/api/v1/stats")).unwrap();
    v["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sink {name} in {v}"))
        .clone()
}

fn lines(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:06}")).collect()
}

/// Every line the fake stored for source `source`, in arrival order per
/// stream, streams concatenated.
fn loki_lines(fake: &FakeLoki, source: &str) -> Vec<String> {
    let st = fake.state();
    st.streams
        .iter()
        .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "source" && v == source))
        .flat_map(|(_, e)| e.iter().map(|e| e.line.clone()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn loki_retries_throttling_and_errors_and_counts_refusals() {
    let rt = runtime();
    let fake = rt.block_on(FakeLoki::start());
    fake.state().max_line_bytes = 100;
    fake.script([
        Scripted::Status {
            status: 429,
            retry_after: Some("1".into()),
        },
        Scripted::status(500),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[forward]]\nname = \"central\"\nloki = \"{}\"\nsources = [\"app\"]\n\
             batch-delay = \"50ms\"\n",
            fake.url
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let mut want = lines("app", 0..500);
    d.log_lines(b"app", &want);
    wait_for("the fake Loki to store 500 lines", || {
        loki_lines(&fake, "app").len() >= 500
    });
    assert_eq!(loki_lines(&fake, "app"), want, "once each, in order");
    // One line over the fake's 100-byte limit: Loki stores the others and
    // answers 400 naming it; the forwarder counts it and moves on.
    let long = "x".repeat(150);
    let more = vec![long.clone(), "after the long one".to_string()];
    d.log_lines(b"app", &more);
    want.push("after the long one".into());
    wait_for("the line after the refused one", || {
        loki_lines(&fake, "app").len() >= 501
    });
    assert_eq!(loki_lines(&fake, "app"), want);
    // The fake stores before it answers: the forwarder counts a moment
    // later.
    wait_for("the forwarder to count the answer", || {
        sink_stats(&d, "loki:central")["state"] != "sending"
    });
    let s = sink_stats(&d, "loki:central");
    assert_eq!(s["retries_total"], 2, "{s}");
    assert_eq!(s["rejected_by_reason"]["line_too_long"], 1, "{s}");
    assert_eq!(s["delivered_entries_total"], 502, "{s}");
    assert_eq!(s["evicted_total"], 0, "{s}");
    assert_eq!(fake.state().duplicates, 0);
    let metrics = http_get(d.http_addr().unwrap(), "/metrics");
    assert!(
        metrics.contains(
            "ringtail_sink_rejected_entries_total{sink=\"loki:central\",reason=\"line_too_long\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("ringtail_sink_retries_total{sink=\"loki:central\"} 2"));
    // Only the source asked for was shipped.
    assert!(loki_lines(&fake, "ringtail").is_empty());
    d.stop();
}

/// `in-flight = 2` against a Loki that takes entries out of order (its
/// default): through a 429 and a 500 every line arrives once, the
/// forwarder counts every entry once, and its cursor moved push by push.
#[test]
fn loki_in_flight_two_ships_every_line_once_through_errors() {
    let rt = runtime();
    let fake = rt.block_on(FakeLoki::start());
    fake.state().unordered = true;
    fake.script([Scripted::status(429), Scripted::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[forward]]\nname = \"fast\"\nloki = \"{}\"\nsources = [\"app\"]\n\
             in-flight = 2\nbatch-entries = 50\nbatch-delay = \"20ms\"\n",
            fake.url
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let want = lines("app", 0..2000);
    d.log_lines(b"app", &want);
    wait_for("the fake Loki to store 2000 lines", || {
        loki_lines(&fake, "app").len() >= 2000
    });
    wait_for("the forwarder to count every line", || {
        sink_stats(&d, "loki:fast")["delivered_entries_total"] == 2000
    });
    let mut got = loki_lines(&fake, "app");
    got.sort();
    assert_eq!(got, want, "once each");
    assert_eq!(fake.state().duplicates, 0, "no answered push sent again");
    let s = sink_stats(&d, "loki:fast");
    assert_eq!(s["retries_total"], 2, "{s}");
    assert_eq!(s["rejected_total"], 0, "{s}");
    // At most 50 entries per push: 40 pushes at least, plus the 2 failed.
    assert!(fake.state().received.len() >= 42);
    d.stop();
}

#[test]
fn in_flight_zero_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[forward]]\nloki = \"http://127.0.0.1:9\"\nin-flight = 0\n",
    );
    let (code, _, err) = support::serve_check(&["--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("in-flight 0"), "{err}");
}

#[test]
fn eviction_while_loki_is_down_is_counted_exactly_and_reported_once() {
    let rt = runtime();
    let fake = rt.block_on(FakeLoki::start());
    fake.state().down = true;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "max-lines = 1000\n[[forward]]\nname = \"down\"\nloki = \"{}\"\nsources = [\"app\"]\n\
             batch-delay = \"10ms\"\nbatch-entries = 100\n",
            fake.url
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let all = lines("app", 0..5000);
    d.log_lines(b"app", &all);
    // Everything is in (or through) the ring before the backend comes back.
    d.read_until(&["-o", "ndjson"], "the last line in the ring", |o| {
        o.contains("app 004999")
    });
    assert!(
        fake.state().received.iter().all(|r| r.status == 503),
        "nothing stored while down"
    );
    fake.state().down = false;
    wait_for("the forwarder to catch up", || {
        let s = sink_stats(&d, "loki:down");
        s["lag_entries"] == 0 && loki_lines(&fake, "app").last() == all.last()
    });
    let got = loki_lines(&fake, "app");
    let s = sink_stats(&d, "loki:down");
    let evicted = s["evicted_total"].as_u64().unwrap();
    // What arrived is the newest lines, once each, in order, and every
    // other entry of the ring's history is counted as evicted: the count
    // is over the ring's seqs (entries of every source, as the ring
    // cannot tell what an evicted entry was).
    assert_eq!(&all[all.len() - got.len()..], &got[..]);
    let next_seq = s["next_seq"].as_u64().unwrap();
    let delivered = s["delivered_entries_total"].as_u64().unwrap();
    let skipped_by_filter = next_seq - delivered - evicted;
    assert_eq!(delivered, got.len() as u64);
    assert!(
        evicted >= (all.len() - got.len()) as u64,
        "{evicted} evicted, {} app lines missing",
        all.len() - got.len()
    );
    // The entries of other sources the filter skipped are few (the
    // daemon's own entries): the count is exact, not an estimate.
    assert!(skipped_by_filter < 20, "{s}");
    let report = d.read_until(&["-o", "ndjson"], "the loss report", |o| {
        o.contains("sink loki:down: the ring evicted")
    });
    let reports: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("sink loki:down: the ring evicted"))
        .collect();
    assert_eq!(reports.len(), 1, "one report per episode: {reports:?}");
    assert!(
        reports[0].contains(&format!("evicted {evicted} entries")),
        "{}",
        reports[0]
    );
    assert_eq!(s["eviction_episodes_total"], 1, "{s}");
    d.stop();
}

#[test]
fn kill_9_mid_stream_then_restart_ships_every_entry_once() {
    let rt = runtime();
    let fake = rt.block_on(FakeLoki::start());
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("ring");
    let cfg = write_config(
        dir.path(),
        &format!(
            "max-lines = 100000\nring-file = \"{}\"\n[[forward]]\nname = \"c\"\nloki = \"{}\"\n\
             sources = [\"app\"]\nbatch-delay = \"1ms\"\nbatch-entries = 50\n",
            ring.display(),
            fake.url
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let all = lines("app", 0..20000);
    d.log_lines(b"app", &all);
    wait_for("some lines shipped", || {
        loki_lines(&fake, "app").len() >= 2000
    });
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(d);
    let before = loki_lines(&fake, "app").len();
    // The default cursor location: <ring file>.forward/<name>.cursor.
    let cursor = PathBuf::from(format!("{}.forward/c.cursor", ring.display()));
    assert!(cursor.exists(), "the cursor file {}", cursor.display());
    let d = start(dir.path(), &cfg, &[]);
    // The ring file holds what the daemon read before it was killed; the
    // rest of the pipe died with it.
    let in_ring: Vec<String> = d
        .read(&["-o", "ndjson", "--source", "app"])
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["msg"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(in_ring.len() > before, "killed mid-stream");
    assert_eq!(in_ring[..], all[..in_ring.len()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while loki_lines(&fake, "app").len() < in_ring.len() {
        if std::time::Instant::now() > deadline {
            let last: Vec<_> = fake
                .state()
                .received
                .iter()
                .rev()
                .take(3)
                .map(|r| (r.status, r.answer.clone()))
                .collect();
            panic!(
                "not every entry shipped: {} of {}; stats {}; last answers {last:?}; stderr {}",
                loki_lines(&fake, "app").len(),
                in_ring.len(),
                sink_stats(&d, "loki:c"),
                d.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = loki_lines(&fake, "app");
    assert_eq!(got, in_ring, "every entry once, in order");
    // A batch acknowledged by Loki whose cursor write the kill beat is
    // sent again, identical, and dropped by Loki's de-duplication: at most
    // one batch.
    let dups = fake.state().duplicates;
    assert!(dups <= 50, "{dups} duplicates");
    let s = sink_stats(&d, "loki:c");
    assert_eq!(s["evicted_total"], 0, "{s}");
    d.stop();
}

/// Entries of one source in a daemon, as (msg, time_ns, source_time_ns).
fn ndjson(d: &Daemon, source: &str) -> Vec<serde_json::Value> {
    d.read(&["-o", "ndjson", "--source", source])
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn ringtail_fan_in_keeps_each_hosts_time_through_restarts() {
    // The central daemon keeps one address across its restart, as a
    // fleet's central store does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{port}");
    let central_dir = tempfile::tempdir().unwrap();
    let central_ring = central_dir.path().join("ring");
    let central_args = [
        "--max-lines",
        "100000",
        "--ring-file",
        central_ring.to_str().unwrap(),
        "--http",
        &http,
    ];
    let mut central = Daemon::start(central_dir.path(), &central_args);
    let url = format!("http://{http}");
    let mut edges = Vec::new();
    for host in ["a", "b"] {
        let dir = tempfile::tempdir().unwrap();
        let ring = dir.path().join("ring");
        let cfg = write_config(
            dir.path(),
            &format!(
                "max-lines = 100000\nring-file = \"{}\"\n[[forward]]\nname = \"central\"\n\
                 loki = \"{url}\"\nsources = [\"{host}app\"]\nbatch-delay = \"5ms\"\n\
                 batch-entries = 200\n",
                ring.display()
            ),
        );
        let d = start(dir.path(), &cfg, &[]);
        edges.push((host, dir, cfg, d));
    }
    let n = 3000;
    for (host, _, _, d) in &edges {
        d.log_lines(format!("{host}app").as_bytes(), &lines(host, 0..n / 2));
    }
    wait_for("some lines at the centre", || {
        !ndjson(&central, "aapp").is_empty()
    });
    // An orderly restart of one edge, then of the central daemon, while
    // the other edge keeps shipping (and retrying while the centre is
    // away).
    {
        let (_, dir, cfg, d) = edges.remove(0);
        d.stop();
        let d = start(dir.path(), &cfg, &[]);
        edges.insert(0, ("a", dir, cfg, d));
    }
    central.stop();
    central = Daemon::start(central_dir.path(), &central_args);
    for (host, _, _, d) in &edges {
        d.log_lines(format!("{host}app").as_bytes(), &lines(host, n / 2..n));
    }
    for (host, _, _, d) in &edges {
        let source = format!("{host}app");
        wait_for("every line at the centre", || {
            ndjson(&central, &source).len() >= n as usize
        });
        let at_centre = ndjson(&central, &source);
        let at_edge = ndjson(d, &source);
        let msgs: Vec<&str> = at_centre
            .iter()
            .map(|e| e["msg"].as_str().unwrap())
            .collect();
        let want = lines(host, 0..n);
        assert_eq!(msgs, want.iter().map(String::as_str).collect::<Vec<_>>());
        // Each entry shows the time it was logged on its host.
        assert_eq!(at_edge.len(), at_centre.len());
        for (c, e) in at_centre.iter().zip(&at_edge) {
            assert_eq!(c["msg"], e["msg"]);
            // Entries stored together share a ring time; the Loki
            // forwarder shifts each after the first by 1 ns so that Loki
            // cannot take two identical lines for one.
            let shift = c["source_time_ns"].as_u64().unwrap() - e["time_ns"].as_u64().unwrap();
            assert!(shift < 10_000, "{shift} ns: {c} vs {e}");
            assert_eq!(c["relayed"], true, "{c}");
        }
    }
    central.stop();
}

#[test]
fn relp_to_rsyslog_loses_nothing_across_a_restart() {
    if !Rsyslog::available("relp_to_rsyslog_loses_nothing_across_a_restart") {
        return;
    }
    let mut rs = Rsyslog::start(Input::Relp);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "max-lines = 100000\n[[forward]]\nname = \"relay\"\nsyslog = \"relp://{}\"\n\
             sources = [\"app\"]\nbatch-delay = \"5ms\"\nbatch-entries = 500\n",
            rs.addr()
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let first = lines("app", 0..5000);
    d.log_lines(b"app", &first);
    rs.wait_for_lines(1000, Duration::from_secs(30));
    rs.stop();
    rs.restart();
    let second = lines("app", 5000..10000);
    d.log_lines(b"app", &second);
    let got = rs.wait_for_lines(10000, Duration::from_secs(60));
    let mut seen = BTreeMap::new();
    for l in &got {
        if let Some(at) = l.rfind("app ") {
            *seen.entry(l[at..].to_string()).or_insert(0u32) += 1;
        }
    }
    for want in first.iter().chain(&second) {
        assert!(seen.contains_key(want), "{want} lost");
    }
    let dups: u32 = seen.values().map(|n| n - 1).sum();
    // After a broken connection RELP sends its unanswered window again.
    assert!(dups <= 128, "{dups} duplicates");
    let s = sink_stats(&d, "syslog:relay");
    assert_eq!(s["evicted_total"], 0, "{s}");
    d.stop();
}

/// The RELP forwarder's cursor follows rsyslog's answers, transaction by
/// transaction: held in the middle of a batch with exactly 300 messages
/// answered, its cursor file names the 300th; after `kill -9` and a restart
/// it sends from the 301st on. No answered message is sent twice; what is
/// sent again is only what was in flight unanswered (at most the window).
#[test]
fn relp_cursor_follows_each_answer_across_kill_9() {
    let rt = runtime();
    let relp = rt.block_on(FakeRelp::start());
    relp.set_budget(Some(300));
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("ring");
    let cfg = write_config(
        dir.path(),
        &format!(
            "max-lines = 100000\nring-file = \"{}\"\n[[forward]]\nname = \"relay\"\n\
             syslog = \"relp://{}\"\nsources = [\"app\"]\nbatch-delay = \"5ms\"\n\
             batch-entries = 5000\n",
            ring.display(),
            relp.addr
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let all = lines("app", 0..1000);
    d.log_lines(b"app", &all);
    wait_for("the ring to hold every line", || {
        ndjson(&d, "app").len() == 1000
    });
    let seq_of = |msg: &str| {
        ndjson(&d, "app")
            .iter()
            .find(|e| e["msg"] == msg)
            .and_then(|e| e["seq"].as_u64())
            .unwrap()
    };
    let last_answered = seq_of(&all[299]);
    let cursor = PathBuf::from(format!("{}.forward/relay.cursor", ring.display()));
    let saved = || {
        ringtail::sinks::cursor::read_cursor(&cursor, "syslog:relay")
            .ok()
            .flatten()
            .map(|c| c.last_acked_seq)
    };
    wait_for(
        "the cursor at the 300th line, the last one answered",
        || saved() == Some(last_answered),
    );
    // The forwarder goes on sending until its window (librelp's default,
    // 128) is in flight, unanswered, and then waits.
    wait_for("a full window in flight", || {
        relp.state().received.len() == 300 + 128
    });
    let in_flight = 128;
    assert_eq!(relp.state().acked.len(), 300);
    let s = sink_stats(&d, "syslog:relay");
    assert_eq!(s["delivered_entries_total"], 300, "{s}");
    assert_eq!(s["next_seq"], last_answered + 1, "{s}");
    assert_eq!(s["state"], "sending", "{s}");

    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(d);
    assert_eq!(
        saved(),
        Some(last_answered),
        "the cursor file after kill -9"
    );
    relp.set_budget(None);
    let d = start(dir.path(), &cfg, &[]);
    wait_for("every line answered", || {
        let st = relp.state();
        let answered: std::collections::BTreeSet<&str> = st
            .acked
            .iter()
            .filter_map(|m| m.rfind("app ").map(|at| &m[at..]))
            .collect();
        answered.len() == 1000
    });
    let st = relp.state();
    let msg = |m: &String| m[m.rfind("app ").unwrap()..].to_string();
    let first_run: Vec<String> = st
        .received
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, m)| msg(m))
        .collect();
    let second_run: Vec<String> = st
        .received
        .iter()
        .filter(|(c, _)| *c > 1)
        .map(|(_, m)| msg(m))
        .collect();
    assert_eq!(st.connections, 2, "one connection per run");
    // The first run sent the answered 300 and its window; the second
    // starts right after the last answered line and sends the rest once.
    assert_eq!(first_run[..], all[..300 + in_flight]);
    assert_eq!(second_run[..], all[300..], "resumed after the 300th");
    let s = sink_stats(&d, "syslog:relay");
    assert_eq!(s["delivered_entries_total"], 700, "{s}");
    d.stop();
}

/// `kill -9` of a ringtail forwarding over RELP in the middle of a long
/// batch, with rsyslog frozen so that its answers stop part-way: after a
/// restart every line arrives, and rsyslog gets at most one window (128)
/// of lines twice, not the answered part of the batch.
#[test]
fn relp_kill_9_mid_batch_sends_again_at_most_the_window() {
    if !Rsyslog::available("relp_kill_9_mid_batch_sends_again_at_most_the_window") {
        return;
    }
    let rs = Rsyslog::start(Input::Relp);
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("ring");
    let cfg = write_config(
        dir.path(),
        &format!(
            "max-lines = 100000\nring-file = \"{}\"\n[[forward]]\nname = \"relay\"\n\
             syslog = \"relp://{}\"\nsources = [\"app\"]\nbatch-delay = \"5ms\"\n\
             batch-entries = 10000\n",
            ring.display(),
            rs.addr()
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let all = lines("app", 0..20000);
    d.log_lines(b"app", &all);
    rs.wait_for_lines(2000, Duration::from_secs(60));
    rs.freeze();
    let written_before = rs.lines().len();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(d);
    rs.thaw();
    let d = start(dir.path(), &cfg, &[]);
    let in_ring = ndjson(&d, "app").len();
    assert!(in_ring > written_before, "killed mid-stream");
    let count = |lines: &[String]| {
        let mut seen = BTreeMap::new();
        for l in lines {
            if let Some(at) = l.rfind("app ") {
                *seen.entry(l[at..].to_string()).or_insert(0u32) += 1;
            }
        }
        seen
    };
    let mut seen = BTreeMap::new();
    wait_for("every line of the ring at rsyslog", || {
        seen = count(&rs.lines());
        seen.len() >= in_ring
    });
    for want in &all[..in_ring] {
        assert!(seen.contains_key(want), "{want} lost");
    }
    let dups: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "RELP, kill -9 of ringtail mid-batch: {written_before} lines written before, \
         {in_ring} in the ring, {dups} arrived twice"
    );
    assert!(dups <= 128, "{dups} duplicates");
    d.stop();
}

#[test]
fn tcp_to_rsyslog_ships_in_order() {
    if !Rsyslog::available("tcp_to_rsyslog_ships_in_order") {
        return;
    }
    let rs = Rsyslog::start(Input::Tcp);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[forward]]\nname = \"relay\"\nsyslog = \"tcp://{}\"\nsources = [\"app\"]\n\
             batch-delay = \"5ms\"\nhostname = \"edge1\"\n",
            rs.addr()
        ),
    );
    let d = start(dir.path(), &cfg, &[]);
    let want = lines("app", 0..2000);
    d.log_lines(b"app", &want);
    let got = rs.wait_for_lines(2000, Duration::from_secs(30));
    let msgs: Vec<&str> = got.iter().map(|l| &l[l.rfind("app ").unwrap()..]).collect();
    assert_eq!(msgs, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(got[0].contains(" edge1 app "), "{}", got[0]);
    d.stop();
}

#[test]
fn cloudwatch_to_moto_stores_every_line_once() {
    if !Moto::available("cloudwatch_to_moto_stores_every_line_once") {
        return;
    }
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[forward]]\nname = \"aws\"\ncloudwatch = \"us-east-1\"\nendpoint = \"{}\"\n\
             group = \"fleet\"\nstream = \"{{{{.Source}}}}\"\ncreate-missing = true\n\
             sources = [\"app\"]\nbatch-delay = \"5ms\"\nbatch-entries = 700\n",
            moto.endpoint()
        ),
    );
    let mut cmd = std::process::Command::new(support::bin());
    let log = dir.path().join("log.sock");
    let query = dir.path().join("query.sock");
    cmd.args(["serve", "--socket-log", log.to_str().unwrap()])
        .args(["--socket-query", query.to_str().unwrap()])
        .args(["--config", cfg.to_str().unwrap(), "--http", "127.0.0.1:0"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret");
    let d = Daemon::spawn_command(cmd, log, query);
    let want = lines("app", 0..3000);
    d.log_lines(b"app", &want);
    wait_for("the forwarder to catch up", || {
        let s = sink_stats(&d, "cloudwatch:aws");
        s["delivered_entries_total"] == 3000
    });
    let rt = runtime();
    let got = rt.block_on(read_back(&moto, "fleet", "app"));
    assert_eq!(got, want, "once each, in order");
    d.stop();
}

async fn read_back(moto: &Moto, group: &str, stream: &str) -> Vec<String> {
    use ringtail::sinks::cloudwatch::{AwsCredentials, CloudWatchTarget, CredentialSource};
    use ringtail::sinks::http::{HttpClient, HttpOptions};
    let target = CloudWatchTarget::new(
        "us-east-1",
        Some(&moto.endpoint()),
        CredentialSource::fixed(AwsCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        }),
    )
    .unwrap();
    let client = HttpClient::new(&HttpOptions {
        max_answer_bytes: 64 << 20,
        ..HttpOptions::default()
    })
    .unwrap();
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = serde_json::json!({
            "logGroupName": group, "logStreamName": stream, "startFromHead": true, "limit": 10000
        });
        if let Some(t) = &token {
            body["nextToken"] = t.clone().into();
        }
        let req = target
            .request(
                "GetLogEvents",
                body.to_string().into(),
                std::time::SystemTime::now(),
            )
            .unwrap();
        let answer = client.send(req).await.unwrap();
        assert_eq!(answer.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let events = v["events"].as_array().unwrap();
        out.extend(
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_string()),
        );
        let next = v["nextForwardToken"].as_str().map(str::to_string);
        if events.is_empty() || next == token {
            return out;
        }
        token = next;
    }
}
