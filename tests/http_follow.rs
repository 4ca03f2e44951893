//! `GET /api/v1/follow` over real TCP: server-sent events and their resume
//! with `Last-Event-ID` (no duplicate, no loss), gap events after eviction,
//! plain lines seen at once by `curl -N`, backlogs, the follower cap.

#[path = "http_util/mod.rs"]
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringtail::entry::{Flags, Origin};
use ringtail::serve::http::HttpConfig;
use util::{within, Sse, TestServer};

fn config() -> HttpConfig {
    HttpConfig::default()
}

async fn sse(s: &TestServer, query: &str, last_event_id: Option<u64>) -> Sse {
    let mut req = s
        .client
        .get(s.url(&format!("/api/v1/follow?{query}")))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    Sse::new(req.send().await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_last_event_id_without_loss_or_repeat() {
    let s = TestServer::start(10_000, config()).await;
    let backlog = s.append_n("app", "before", 5);
    let mut stream = sse(&s, "source=app&tail=3", None).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = stream.expect().await;
        assert_eq!(ev.event, "entry");
        let v = ev.json();
        assert_eq!(ev.id.as_deref(), Some(v["seq"].to_string().as_str()));
        got.push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(got, backlog[2..]);
    // Live entries; other sources are filtered out.
    let live = s.append_n("app", "live", 4);
    s.append_n("noise", "n", 3);
    for want in &live[..2] {
        let ev = stream.expect().await;
        assert_eq!(ev.json()["seq"], *want);
        got.push(*want);
    }
    // The client drops the connection having seen up to live[1]; more
    // entries arrive meanwhile; it reconnects with Last-Event-ID.
    let last = *got.last().unwrap();
    drop(stream);
    let more = s.append_n("app", "while away", 3);
    let mut stream = sse(&s, "source=app&tail=3", Some(last)).await;
    let mut after: Vec<u64> = Vec::new();
    let want: Vec<u64> = live[2..].iter().chain(&more).copied().collect();
    while after.len() < want.len() {
        let ev = stream.expect().await;
        assert_eq!(ev.event, "entry", "{ev:?}");
        after.push(ev.json()["seq"].as_u64().unwrap());
    }
    assert_eq!(
        after, want,
        "exactly the entries after the last id, in order"
    );
    let next = s.append_n("app", "after resume", 1)[0];
    assert_eq!(stream.expect().await.json()["seq"], next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_gap_event_after_eviction() {
    let s = TestServer::start(16, config()).await;
    let seen = s.append_n("x", "old", 4)[1];
    let newer = s.append_n("x", "new", 40);
    let oldest = s.ring.stats().oldest_seq;
    let mut stream = sse(&s, "", Some(seen)).await;
    let gap = stream.expect().await;
    assert_eq!(gap.event, "gap");
    let v = gap.json();
    assert_eq!(v["first_seq"], seen + 1);
    assert_eq!(v["missed"], oldest - seen - 1);
    assert_eq!(
        gap.id,
        Some((oldest - 1).to_string()),
        "a resume after the gap skips it"
    );
    // Then every retained entry, in order: delivered + missed = appended.
    let mut n = 0;
    let last = *newer.last().unwrap();
    loop {
        let ev = stream.expect().await;
        assert_eq!(ev.event, "entry");
        let seq = ev.json()["seq"].as_u64().unwrap();
        assert_eq!(seq, oldest + n);
        n += 1;
        if seq == last {
            break;
        }
    }
    assert_eq!(n + (oldest - seen - 1), last - seen);
    util::wait_until("the gap in the stats", || async {
        s.stats().await["http"]["gap_entries_total"].as_u64() >= Some(oldest - seen - 1)
    })
    .await;
}

/// A stream whose source is quiet while other sources go round the ring
/// many times is not lapped into reporting entries it never wanted: the
/// hub wakes it only for its own entries, and its keep-alives move it past
/// what holds none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_filtered_follower_reports_no_false_gap() {
    let mut cfg = config();
    cfg.keep_alive = Duration::from_millis(20);
    let s = TestServer::start(1000, cfg).await;
    let mut resp = s
        .client
        .get(s.url("/api/v1/follow?format=sse&source=quiet"))
        .send()
        .await
        .unwrap();
    s.wait_followers(1).await;
    let mut text = String::new();
    for _ in 0..20 {
        // Half the ring each time; wait until the stream has moved past it.
        let last = *s.append_n("noisy", "n", 500).last().unwrap();
        within("a keep-alive past the noise", async {
            while !text.contains(&format!("id: {last}\n")) {
                let c = resp.chunk().await.unwrap().expect("stream open");
                text.push_str(std::str::from_utf8(&c).unwrap());
            }
        })
        .await;
    }
    let seq = s.append_n("quiet", "hello", 1)[0];
    within("the quiet entry", async {
        while !text.contains("event: entry") {
            let c = resp.chunk().await.unwrap().expect("stream open");
            text.push_str(std::str::from_utf8(&c).unwrap());
        }
    })
    .await;
    assert!(!text.contains("event: gap"), "{text}");
    assert!(text.contains(&format!("id: {seq}\nevent: entry")), "{text}");
    assert_eq!(s.stats().await["http"]["gap_events_total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_follower_gets_gaps_not_a_buffer() {
    // A client that stops reading: its stream waits, the ring evicts, and
    // when it reads again it is told exactly what it missed.
    let s = TestServer::start(64, config()).await;
    let mut stream = sse(&s, "", None).await;
    s.wait_followers(1).await;
    let h = s.ring.origin(Origin::new("flood")).unwrap();
    let total = 200_000u64;
    let big = vec![b'x'; 900];
    let first = s.ring.append(&h, Flags::default(), &big);
    for _ in 1..total {
        s.ring.append(&h, Flags::default(), &big);
    }
    let last = first + total - 1;
    let (mut delivered, mut missed) = (0u64, 0u64);
    let mut next = first;
    while next <= last {
        let ev = stream.expect().await;
        match ev.event.as_str() {
            "entry" => {
                let seq = ev.json()["seq"].as_u64().unwrap();
                assert_eq!(seq, next, "in order, nothing skipped silently");
                delivered += 1;
                next = seq + 1;
            }
            "gap" => {
                let v = ev.json();
                assert_eq!(v["first_seq"], next);
                let m = v["missed"].as_u64().unwrap();
                missed += m;
                next += m;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(delivered + missed, total);
    assert!(missed > 0, "a 64-entry ring cannot hold a 200k burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reset_when_the_ring_was_replaced() {
    let s = TestServer::start(100, config()).await;
    let seqs = s.append_n("r", "fresh", 2);
    let mut stream = sse(&s, "source=r", Some(1_000_000)).await;
    let ev = stream.expect().await;
    assert_eq!(ev.event, "reset");
    assert_eq!(ev.json()["last_event_id"], 1_000_000);
    let first = stream.expect().await;
    assert_eq!(first.json()["seq"], seqs[0]);
    let r = s
        .client
        .get(s.url("/api/v1/follow"))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e = s.error("/api/v1/follow?after=99999", 400).await;
    assert!(e.contains("past the newest entry"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_carries_the_position_past_filtered_entries() {
    let mut cfg = config();
    cfg.keep_alive = Duration::from_millis(50);
    let s = TestServer::start(100, cfg).await;
    let resp = s
        .client
        .get(s.url("/api/v1/follow?format=sse&source=wanted"))
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    s.wait_followers(1).await;
    let skipped = s.append_n("unwanted", "u", 3);
    let mut text = String::new();
    within("a keep-alive with the position", async {
        while !text.contains(&format!("id: {}\n", skipped[2])) {
            let c = resp.chunk().await.unwrap().expect("stream open");
            text.push_str(std::str::from_utf8(&c).unwrap());
        }
    })
    .await;
    assert!(text.contains(": keep-alive\n"), "{text}");
    assert!(!text.contains("event: entry"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_backlog_and_limit() {
    let s = TestServer::start(1000, config()).await;
    s.append_n("p", "old", 5);
    let t = ringtail::timefmt::now_ns();
    s.append_n("p", "recent", 2);
    // since: from that time on; limit ends the stream.
    let body = within(
        "a limited follow",
        s.get(&format!("/api/v1/follow?source=p&since={t}&limit=3")),
    )
    .await;
    assert_eq!(body.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(body.headers().get("content-encoding").is_none());
    let reader = tokio::spawn(async move { body.text().await.unwrap() });
    s.wait_followers(1).await;
    s.append_n("p", "new", 1);
    let text = within("the follow to end at its limit", reader)
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].ends_with(";p;recent 0") && lines[2].ends_with(";p;new 0"),
        "{text}"
    );
    // after=SEQ, ndjson.
    let seqs = s.append_n("q", "n", 3);
    let text = s
        .get(&format!(
            "/api/v1/follow?source=q&after={}&format=ndjson&limit=2",
            seqs[0]
        ))
        .await
        .text()
        .await
        .unwrap();
    let got: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, seqs[1..]);
    let e = s.error("/api/v1/follow?until=1m", 400).await;
    assert!(e.contains("no end time"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_are_capped_then_freed() {
    let mut cfg = config();
    cfg.max_followers = 2;
    let s = TestServer::start(100, cfg).await;
    let a = s.get("/api/v1/follow").await;
    let b = s.get("/api/v1/follow?format=sse").await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let r = s.get("/api/v1/follow").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("--http-max-followers"));
    assert_eq!(s.stats().await["http"]["followers_refused_total"], 1);
    // A client that goes away frees its slot.
    drop(a);
    s.wait_followers(1).await;
    assert_eq!(s.get("/api/v1/follow?limit=1").await.status(), 200);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_latency_is_recorded() {
    let s = TestServer::start(100, config()).await;
    let mut stream = sse(&s, "", None).await;
    s.wait_followers(1).await;
    s.append_n("lat", "x", 3);
    for _ in 0..3 {
        stream.expect().await;
    }
    util::wait_until("latency samples", || async {
        s.stats().await["latency"]["ingest_to_visible_us"]["count"].as_u64() >= Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_follow_streams() {
    let s = TestServer::start(100, config()).await;
    let mut stream = sse(&s, "", None).await;
    s.wait_followers(1).await;
    s.run.shutdown.cancel();
    // The stream ends (cleanly or aborted), it does not hang.
    within("the stream to end at shutdown", async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    within("the server task to end", s.run.task)
        .await
        .unwrap()
        .unwrap();
}

/// `curl -N` itself: a line appended after the request shows up on curl's
/// stdout while the stream stays open. With `--compressed` too, since a
/// compressed stream would hold lines back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_n_sees_lines_as_they_are_appended() {
    let s = TestServer::start(1000, config()).await;
    for compressed in [false, true] {
        let source = format!("web{}", u8::from(compressed));
        let mut cmd = Command::new("curl");
        cmd.args(["-sN", "--max-time", "60"]);
        if compressed {
            cmd.arg("--compressed");
        }
        let mut curl = cmd
            .arg(s.url(&format!("/api/v1/follow?source={source}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("curl is installed");
        let stdout = curl.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        s.wait_followers(1).await;
        s.append(
            Origin::new(source.as_str()),
            Flags::default(),
            b"GET /index.html 200",
        );
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(util::DEADLINE))
            .await
            .unwrap()
            .expect("curl printed the line while the stream is open");
        assert!(
            line.ends_with(&format!(";{source};GET /index.html 200")),
            "{line}"
        );
        assert!(
            curl.try_wait().unwrap().is_none(),
            "the stream is still open"
        );
        curl.kill().unwrap();
        curl.wait().unwrap();
        reader.join().unwrap();
        s.wait_followers(0).await;
    }
}
