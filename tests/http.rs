//! The HTTP API over real TCP with a real HTTP client: the OpenAPI contract,
//! filters, cursors, gaps, streamed exports, ingest, auth, limits, gzip,
//! timeouts, and `ringtail serve --http`. Follow streams are in
//! `http_follow.rs`.

#[path = "http_util/mod.rs"]
mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringtail::entry::{Flags, Origin, Stream};
use ringtail::serve::http::{params, HttpConfig, Token, ROUTES};
use util::{wait_until, TestServer};

fn config() -> HttpConfig {
    HttpConfig::default()
}

// ----------------------------------------------------------------------
// the contract

fn spec() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.yaml"))
        .expect("read api/openapi.yaml");
    serde_norway::from_str(&text).expect("api/openapi.yaml is YAML")
}

/// Resolves a local `$ref`.
fn resolve<'a>(spec: &'a serde_json::Value, v: &'a serde_json::Value) -> &'a serde_json::Value {
    match v.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => {
            let path = r.strip_prefix("#/").expect("local refs only");
            path.split('/').fold(spec, |node, key| &node[key])
        }
        None => v,
    }
}

#[test]
fn openapi_spec_and_router_agree() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut in_spec = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                in_spec.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    // The whole app: ringtail's API, the Loki API and the dashboard.
    let in_router: BTreeSet<_> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .chain(
            ringtail::serve::loki::ROUTES
                .iter()
                .chain(ringtail::serve::dashboard::ROUTES)
                .map(|(m, p)| (m.to_string(), p.to_string())),
        )
        .collect();
    let missing: Vec<_> = in_router.difference(&in_spec).collect();
    let extra: Vec<_> = in_spec.difference(&in_router).collect();
    assert!(
        missing.is_empty(),
        "routes not in api/openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "api/openapi.yaml routes the router lacks: {extra:?}"
    );

    // Query parameters, both ways.
    let query_params = |method: &str, path: &str| -> BTreeSet<String> {
        let op = &spec["paths"][path][method];
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| resolve(&spec, p))
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let code = |list: &[&str]| -> BTreeSet<String> {
        list.iter()
            .map(|p| p.trim_end_matches(".KEY").to_string())
            .collect()
    };
    assert_eq!(
        query_params("get", "/api/v1/entries"),
        code(params::ENTRIES_PARAMS)
    );
    assert_eq!(
        query_params("get", "/api/v1/follow"),
        code(params::FOLLOW_PARAMS)
    );
    assert_eq!(
        query_params("post", "/api/v1/entries"),
        code(params::INGEST_PARAMS)
    );
    // Every $ref points somewhere.
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    for r in all {
        let link = serde_json::json!({ "$ref": r });
        let target = resolve(&spec, &link);
        assert!(!target.is_null(), "dangling $ref {r}");
    }
}

// ----------------------------------------------------------------------
// queries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters() {
    let s = TestServer::start(1000, config()).await;
    let out = Flags::default().with_stream(Some(Stream::Stdout));
    let err = Flags::default().with_stream(Some(Stream::Stderr));
    let web = || Origin::new("web.out").with_label("app", "nginx");
    s.append(web(), out, b"GET / 200");
    s.append(web(), err, b"GET /missing 404");
    s.append(Origin::new("db"), out, b"query took 5ms");
    let t_mid = ringtail::timefmt::now_ns();
    s.append(Origin::new("web.err"), err, b"upstream error code=502");
    s.append(Origin::new("db"), out, b"query took 900ms");

    let msgs = |v: serde_json::Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["msg"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |qs: &str| {
        let path = format!("/api/v1/entries?{qs}");
        let s = &s;
        async move { s.json(&path).await }
    };
    assert_eq!(
        msgs(q("source=db").await),
        ["query took 5ms", "query took 900ms"]
    );
    assert_eq!(msgs(q("source=web*&stream=stderr").await).len(), 2);
    assert_eq!(
        msgs(q("source=web.out&source=db&contains=404").await),
        ["GET /missing 404"]
    );
    assert_eq!(msgs(q("label.app=nginx").await).len(), 2);
    assert_eq!(
        msgs(q("regex=code%3D5%5Cd%5Cd").await),
        ["upstream error code=502"]
    );
    assert_eq!(
        msgs(q("contains=query&contains=900").await),
        ["query took 900ms"]
    );
    let since = format!("since={t_mid}&source=web*");
    assert_eq!(msgs(q(&since).await), ["upstream error code=502"]);
    let until = format!("until={t_mid}&source=db");
    assert_eq!(msgs(q(&until).await), ["query took 5ms"]);
    assert_eq!(msgs(q("since=1h&source=db").await).len(), 2);

    // The entry objects carry every field.
    let v = q("source=web.out&stream=stderr").await;
    let e = &v["entries"][0];
    assert_eq!(e["source"], "web.out");
    assert_eq!(e["stream"], "stderr");
    assert_eq!(e["labels"]["app"], "nginx");
    assert!(e["seq"].as_u64().unwrap() >= 1);
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert!(e["time_ns"].as_u64().unwrap() > 0);

    // Errors name the parameter.
    let e = s.error("/api/v1/entries?regex=(", 400).await;
    assert!(e.contains("parameter `regex`"), "{e}");
    let e = s.error("/api/v1/entries?stream=stdin", 400).await;
    assert!(e.contains("stdout or stderr"), "{e}");
    let e = s.error("/api/v1/entries?bogus=1", 400).await;
    assert!(e.contains("unknown parameter `bogus`"), "{e}");
    let e = s.error("/api/v1/entries?since=tomorrow", 400).await;
    assert!(e.contains("`since`"), "{e}");
    let huge = format!("/api/v1/entries?regex={}", "%5Cw%7B1000%7D".repeat(40));
    let e = s.error(&huge, 400).await;
    assert!(e.contains("regex"), "regexes are size-capped: {e}");
    let e = s.error("/nope", 404).await;
    assert!(e.contains("no route GET /nope"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_explicit() {
    let s = TestServer::start(100, config()).await;
    s.append(Origin::new("bin"), Flags::default(), b"ok \xff\xfe end");
    let v = s.json("/api/v1/entries?source=bin").await;
    let e = &v["entries"][0];
    assert_eq!(e["msg"], "ok \\xff\\xfe end");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e["msg_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"ok \xff\xfe end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_page_without_loss_or_repeat() {
    let mut cfg = config();
    cfg.max_limit = 7;
    let s = TestServer::start(1000, cfg).await;
    let seqs = s.append_n("a", "a", 50);
    s.append_n("b", "b", 10);
    // Oldest first, by pages of the capped limit.
    let mut seen: Vec<u64> = Vec::new();
    let mut after = 0;
    loop {
        let v = s
            .json(&format!("/api/v1/entries?source=a&limit=100&after={after}"))
            .await;
        assert_eq!(v["limit"], 7, "limit is capped");
        let page: Vec<u64> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(page.len() <= 7);
        seen.extend(&page);
        after = v["next"].as_u64().unwrap();
        if !v["more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(seen, seqs);
    // Polling with the last `next` finds only what is new.
    let v = s.json(&format!("/api/v1/entries?after={after}")).await;
    assert_eq!(v["count"], 0);
    assert_eq!(v["next"], after);
    let new = s.append_n("a", "late", 1)[0];
    let v = s.json(&format!("/api/v1/entries?after={after}")).await;
    assert_eq!(v["entries"][0]["seq"], new);

    // Newest first, with `before`.
    let mut seen: Vec<u64> = Vec::new();
    let mut before = u64::MAX;
    loop {
        let v = s
            .json(&format!(
                "/api/v1/entries?source=a&order=desc&before={before}"
            ))
            .await;
        seen.extend(
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match v["next"].as_u64() {
            Some(n) => before = n,
            None => break,
        }
    }
    let mut want = seqs.clone();
    want.push(new);
    want.reverse();
    assert_eq!(seen, want);

    // A window: after < seq < before.
    let v = s
        .json(&format!(
            "/api/v1/entries?after={}&before={}",
            seqs[10], seqs[14]
        ))
        .await;
    let got: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, seqs[11..14]);
    let e = s.error("/api/v1/entries?after=999999", 400).await;
    assert!(e.contains("past the newest entry"), "{e}");
    let e = s.error("/api/v1/entries?after=5&before=6", 400).await;
    assert!(e.contains("no seq in between"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_entries_are_reported_as_gaps() {
    let s = TestServer::start(16, config()).await;
    let first = s.append_n("x", "old", 10);
    let seen = first[4];
    let newer = s.append_n("x", "new", 40);
    let oldest = s.ring.stats().oldest_seq;
    assert!(oldest > seen + 1);
    let v = s
        .json(&format!("/api/v1/entries?after={seen}&limit=100"))
        .await;
    assert_eq!(
        v["gaps"],
        serde_json::json!([{ "first_seq": seen + 1, "missed": oldest - seen - 1 }])
    );
    let got: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // Delivered + missed = everything after `seen`.
    assert_eq!(got.first().copied(), Some(oldest));
    assert_eq!(*got.last().unwrap(), *newer.last().unwrap());
    assert_eq!(
        got.len() as u64 + (oldest - seen - 1),
        newer.last().unwrap() - seen
    );
    // Newest first, the gap comes last.
    let v = s
        .json(&format!(
            "/api/v1/entries?after={seen}&order=desc&limit=100"
        ))
        .await;
    assert_eq!(v["gaps"][0]["first_seq"], seen + 1);
    assert!(v["next"].is_null());
    // NDJSON: a gap record first.
    let text = s
        .get(&format!("/api/v1/entries?after={seen}&format=ndjson"))
        .await
        .text()
        .await
        .unwrap();
    let first_line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first_line["gap"]["first_seq"], seen + 1);
    assert!(
        s.stats().await["http"]["gap_events_total"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_text_exports_stream() {
    let s = TestServer::start(100_000, config()).await;
    let seqs = s.append_n("bulk", "line", 30_000);
    s.append_n("other", "x", 100);
    // format=ndjson: chunked (no length: it was not built in memory first).
    let r = s.get("/api/v1/entries?source=bulk&format=ndjson").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert!(r.headers().get("content-length").is_none());
    let body = r.text().await.unwrap();
    let got: Vec<u64> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, seqs);
    // Accept: application/x-ndjson, newest first, limited.
    let body = s
        .client
        .get(s.url("/api/v1/entries?source=bulk&order=desc&limit=3"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let got: Vec<u64> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, seqs.iter().rev().take(3).copied().collect::<Vec<_>>());
    // logread and text lines.
    let body = s
        .get("/api/v1/entries?source=other&format=logread&limit=2")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with(";other;x 0"), "{}", lines[0]);
    let body = s
        .get("/api/v1/entries?source=other&format=text&limit=1")
        .await
        .text()
        .await
        .unwrap();
    assert!(body.ends_with(",other;x 0\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_gzipped() {
    let s = TestServer::start(10_000, config()).await;
    s.append_n("z", "compressible line", 500);
    let r = s
        .client
        .get(s.url("/api/v1/entries?limit=500"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "tiny answers are not"
    );
    // No CORS headers, ever.
    let r = s
        .client
        .get(s.url("/api/v1/stats"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_stats_metrics_healthz() {
    let s = TestServer::start(1000, config()).await;
    s.append_n("web", "w", 5);
    s.append(
        Origin::new("web").with_label("pod", "2"),
        Flags::default(),
        b"12345",
    );
    s.append_n("db", "d", 2);
    let v = s.json("/api/v1/sources").await;
    let sources = v["sources"].as_array().unwrap();
    let web = sources.iter().find(|x| x["source"] == "web").unwrap();
    assert_eq!(web["entries"], 6);
    assert_eq!(web["origins"], 2);
    assert_eq!(web["bytes"], 5 * 3 + 5);
    assert!(web["rate_per_sec"].as_f64().unwrap() > 0.0);
    assert!(web["first_time"].as_str().unwrap().ends_with('Z'));
    let db = sources.iter().find(|x| x["source"] == "db").unwrap();
    assert_eq!(db["entries"], 2);
    assert!(db["first_seq"].as_u64() < db["last_seq"].as_u64());

    s.json("/api/v1/entries").await;
    let st = s.stats().await;
    assert_eq!(st["ring"]["capacity_lines"], 1000);
    assert_eq!(st["ring"]["entries"], 8);
    assert_eq!(st["ring"]["appended_total"], 8);
    assert_eq!(st["http"]["max_followers"], 1024);
    assert!(st["latency"]["query_us"]["count"].as_u64().unwrap() >= 1);
    let r = s.get("/metrics").await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = r.text().await.unwrap();
    for name in [
        "ringtail_ring_entries 8",
        "ringtail_appended_entries_total 8",
        "# TYPE ringtail_http_ingest_to_visible_seconds summary",
        "ringtail_http_query_seconds{quantile=\"0.99\"}",
        "ringtail_http_requests_total{method=\"GET\",route=\"/api/v1/entries\"} 1",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }
    let r = s.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
}

// ----------------------------------------------------------------------
// ingest

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_ndjson_and_text() {
    let ingest = ringtail::sources::IngestConfig {
        max_line_len: 8,
        ..Default::default()
    };
    let ring = std::sync::Arc::new(
        ringtail::ring::Ring::open(&ringtail::ring::RingConfig::new(1000)).unwrap(),
    );
    let s = TestServer::with_ingest(ring, config(), ingest).await;
    let body = concat!(
        r#"{"source":"api","msg":"hello","stream":"stderr","level":"warning","labels":{"env":"prod"}}"#,
        "\n\n",
        r#"{"source":"api","msg_b64":"/w==","time":"2020-01-01T00:00:00Z","seq":5}"#,
        "\r\n",
        r#"{"msg":"0123456789abc","level":3}"#,
        "\n"
    );
    let r = s
        .client
        .post(s.url("/api/v1/entries?source=default&label.host=h1"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["entries"], 4, "the long message became two entries");
    let first = v["first_seq"].as_u64().unwrap();
    assert_eq!(v["last_seq"], first + 3);
    let got = s
        .json(&format!("/api/v1/entries?after={}", first - 1))
        .await;
    let e = &got["entries"];
    assert_eq!(e[0]["msg"], "hello");
    assert_eq!(e[0]["stream"], "stderr");
    assert_eq!(e[0]["level"], "warning");
    assert_eq!(
        e[0]["labels"],
        serde_json::json!({"env": "prod", "host": "h1"})
    );
    assert_eq!(e[1]["msg_b64"], "/w==");
    assert_ne!(
        e[1]["time"], "2020-01-01T00:00:00Z",
        "the ring assigns the time"
    );
    assert_eq!(e[2]["source"], "default");
    assert_eq!(e[2]["msg"], "01234567");
    assert_eq!(e[2]["partial"], true);
    assert_eq!(e[3]["msg"], "89abc");
    assert_eq!(e[3]["level"], "error");
    assert!(e[3].get("partial").is_none());

    // Text lines: curl --data-binary sends form-urlencoded.
    let r = s
        .client
        .post(s.url("/api/v1/entries?source=plain&stream=stdout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("one\ntwo\r\n\nthree-is-long\nlast")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 5);
    assert_eq!(v["entries"], 6);
    let got = s.json("/api/v1/entries?source=plain").await;
    let msgs: Vec<&str> = got["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["msg"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["one", "two\r", "", "three-is", "-long", "last"]);
    assert_eq!(got["entries"][0]["stream"], "stdout");
    assert_eq!(s.stats().await["http"]["ingested_entries_total"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_errors_say_what_and_store_nothing() {
    let mut cfg = config();
    cfg.max_body = 1024;
    let s = TestServer::start(1000, cfg).await;
    let before = s.ring.stats().next_seq;
    let post = |ct: &'static str, q: &'static str, body: String| {
        let req = s
            .client
            .post(s.url(&format!("/api/v1/entries{q}")))
            .body(body);
        let req = if ct.is_empty() {
            req
        } else {
            req.header("content-type", ct)
        };
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["error"].as_str().unwrap_or_default().to_string())
        }
    };
    let nd = "application/x-ndjson";
    let (st, e) = post(nd, "", "{\"source\":\"a\",\"msg\":\"ok\"}\n{\"source\":\"a\",\"msg\":\"ok\"}\n{\"source\":\"a\",\"mesg\":\"x\"}\n".into()).await;
    assert_eq!(st, 400);
    assert!(e.starts_with("line 3, ") || e.starts_with("line 3:"), "{e}");
    assert!(
        e.contains("mesg") && e.contains("nothing was stored"),
        "{e}"
    );
    let (st, e) = post(nd, "", "{\"msg\":\"x\"}".into()).await;
    assert_eq!(st, 400);
    assert!(e.contains("line 1") && e.contains("source"), "{e}");
    let (st, e) = post(nd, "", "{\"source\":\"a\"}\nnot json\n".into()).await;
    assert_eq!(st, 400);
    assert!(e.contains("line 1") && e.contains("msg"), "{e}");
    let (st, e) = post(nd, "", "{\"source\":\"a\",\"msg\":\"x\"}\n{oops\n".into()).await;
    assert_eq!(st, 400);
    assert!(e.contains("line 2") && e.contains("column"), "{e}");
    let (st, e) = post(
        nd,
        "",
        "{\"source\":\"a\",\"msg\":\"x\",\"stream\":\"stdin\"}".into(),
    )
    .await;
    assert!(st == 400 && e.contains("stdout or stderr"), "{e}");
    let (st, e) = post(nd, "", "{\"source\":\"\",\"msg\":\"x\"}".into()).await;
    assert!(st == 400 && e.contains("empty"), "{e}");
    let (st, e) = post(
        nd,
        "",
        "{\"source\":\"a\",\"msg\":\"x\",\"labels\":{\"a b\":\"c\"}}".into(),
    )
    .await;
    assert!(st == 400 && e.contains("label"), "{e}");
    let (st, e) = post("text/plain", "", "line\n".into()).await;
    assert!(st == 400 && e.contains("?source=NAME"), "{e}");
    let (st, e) = post("", "", "line\n".into()).await;
    assert!(st == 400 && e.contains("Content-Type"), "{e}");
    let (st, e) = post("image/png", "?source=a", "x".into()).await;
    assert!(st == 415 && e.contains("image/png"), "{e}");
    let (st, e) = post("text/plain", "?source=a", "x".repeat(1025)).await;
    assert!(st == 413 && e.contains("1024"), "{e}");
    let (st, _) = post("text/plain", "?source=a&bogus=1", "x".into()).await;
    assert_eq!(st, 400);
    assert_eq!(s.ring.stats().next_seq, before, "nothing was stored");
    assert!(
        s.stats().await["http"]["ingest_rejected_total"]
            .as_u64()
            .unwrap()
            >= 12
    );
    // Exactly at the cap is fine.
    let (st, _) = post("text/plain", "?source=a", "x".repeat(1024)).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_gzip_body() {
    use std::io::Write as _;
    let s = TestServer::start(100, config()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"zipped 1\nzipped 2\n").unwrap();
    let r = s
        .client
        .post(s.url("/api/v1/entries?source=gz"))
        .header("content-type", "text/plain")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = s.json("/api/v1/entries?source=gz").await;
    assert_eq!(v["entries"][1]["msg"], "zipped 2");
}

// ----------------------------------------------------------------------
// auth, limits, timeouts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token() {
    let mut cfg = config();
    cfg.token = Some(Token::new("s3cret").unwrap());
    let s = TestServer::start(100, cfg).await;
    for path in [
        "/api/v1/entries",
        "/api/v1/stats",
        "/metrics",
        "/api/v1/sources",
        "/api/v1/follow",
        "/nope",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"ringtail\"");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"));
    }
    let with = |tok: &str| {
        s.client
            .get(s.url("/api/v1/entries"))
            .header("authorization", format!("Bearer {tok}"))
            .send()
    };
    assert_eq!(with("s3cret").await.unwrap().status(), 200);
    assert_eq!(with("s3cre").await.unwrap().status(), 401);
    assert_eq!(with("s3cret2").await.unwrap().status(), 401);
    let r = s
        .client
        .post(s.url("/api/v1/entries?source=a"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "ingest needs the token too");
    assert_eq!(
        s.get("/healthz").await.status(),
        200,
        "health checks need none"
    );
}

/// The Loki API and the dashboard share the port, the token and the
/// layers; the dashboard's page and the health checks need no token; a
/// WebSocket upgrade passes the shared layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_routes_share_auth_and_layers() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut cfg = config();
    cfg.token = Some(Token::new("tok").unwrap());
    let s = TestServer::start(100, cfg).await;
    for path in ["/", "/dashboard/app.js", "/ready", "/healthz"] {
        assert_eq!(s.get(path).await.status(), 200, "{path} needs no token");
    }
    assert_eq!(s.get("/loki/api/v1/labels").await.status(), 401);
    let r = s
        .client
        .get(s.url("/loki/api/v1/labels"))
        .header("authorization", "Bearer tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let url = format!(
        "ws://{}/loki/api/v1/tail?query=%7Bsource%3D%22ws%22%7D",
        s.run.addr
    );
    let unauthorized = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(unauthorized.is_err(), "the tail needs the token too");
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer tok".parse().unwrap());
    let (mut ws, _) = util::within(
        "the WebSocket upgrade",
        tokio_tungstenite::connect_async(req),
    )
    .await
    .unwrap();
    s.append(Origin::new("ws"), Flags::default(), b"over the socket");
    let msg = util::within("a tail message", ws.next())
        .await
        .expect("a message")
        .unwrap();
    assert!(msg.to_text().unwrap().contains("over the socket"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out() {
    let mut cfg = config();
    cfg.timeout = Duration::from_millis(300);
    let s = TestServer::start(100, cfg).await;
    // A body that never ends: the request must not hang forever.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"partial line".to_vec())).await.unwrap();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let r = util::within(
        "the timeout",
        s.client
            .post(s.url("/api/v1/entries?source=slow"))
            .header("content-type", "text/plain")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 408);
    drop(tx);
}

// ----------------------------------------------------------------------
// the daemon

#[test]
fn serve_prints_the_http_address_it_listens_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .arg("serve")
        .arg("--socket-log")
        .arg(dir.path().join("l.sock"))
        .arg("--socket-query")
        .arg(dir.path().join("q.sock"))
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtail serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut addr = None;
    let deadline = std::time::Instant::now() + util::DEADLINE;
    while addr.is_none() && std::time::Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split("HTTP API on http://").nth(1) {
            addr = rest.split('/').next().map(str::to_string);
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no HTTP address printed; last line {line:?}"));
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "the real port is printed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The start entry says where HTTP is.
        wait_until("the start entry", || async {
            let v: serde_json::Value = c
                .get(format!("http://{addr}/api/v1/entries?source=ringtail"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["entries"][0]["msg"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("http http://{addr}/")))
        })
        .await;
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn serve_refuses_exposed_http_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .arg("serve")
        .arg("--socket-log")
        .arg(dir.path().join("l.sock"))
        .arg("--socket-query")
        .arg(dir.path().join("q.sock"))
        .args(["--http", "0.0.0.0:0"])
        .env_remove("RINGTAIL_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http-token") && err.contains("--http-insecure"),
        "{err}"
    );
    assert!(!dir.path().join("l.sock").exists(), "nothing was bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_push_cap_comes_from_the_configuration() {
    let mut cfg = config();
    cfg.loki.max_push_bytes = 4096;
    let s = TestServer::start(100, cfg).await;
    let push = |body: Vec<u8>, gzip: bool| {
        let mut r = s
            .client
            .post(s.url("/loki/api/v1/push"))
            .header("content-type", "application/json");
        if gzip {
            r = r.header("content-encoding", "gzip");
        }
        r.body(body).send()
    };
    let small = serde_json::json!({"streams":[{"stream":{"source":"p"},"values":[["1","ok"]]}]});
    let r = push(serde_json::to_vec(&small).unwrap(), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Under the cap compressed, over it once inflated: the message names
    // the flag that raises it.
    let big = serde_json::json!({"streams":[{"stream":{"source":"p"},"values":[["1","x".repeat(8000)]]}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &serde_json::to_vec(&big).unwrap()).unwrap();
    let r = push(gz.finish().unwrap(), true).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("--loki-max-push"));
    // Over the cap as sent.
    let r = push(serde_json::to_vec(&big).unwrap(), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}
