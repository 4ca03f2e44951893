//! The Loki API over real HTTP and WebSocket: the JSON shape of every
//! endpoint, the exact requests Grafana and logcli send, push round trips
//! in every body format, and live tail (including a client that reads too
//! slowly and is told what it missed).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use reqwest::StatusCode;
use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{All, Read, ReadBatch, ReadStatus, Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::serve::loki::{self, LokiLimits};
use ringtail::sources::loki_push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const S: u64 = 1_000_000_000;

/// `(source, origin labels, flags, message)`.
type Line<'a> = (&'a str, &'a [(&'a str, &'a str)], Flags, &'a str);

struct Server {
    ring: Arc<Ring>,
    base: String,
    ws_base: String,
    client: reqwest::Client,
}

async fn server_with(config: RingConfig, limits: LokiLimits) -> Server {
    let ring = Arc::new(Ring::open(&config).unwrap());
    let selflog = SelfLog::new(ring.clone()).unwrap();
    let pipeline = ringtail::sources::Pipeline::new(ring.clone(), selflog, Default::default());
    let budget = ringtail::sources::budget::Budget::new(64 << 20, Duration::from_secs(2));
    let app = loki::router(pipeline, limits, budget);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        ring,
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

async fn server() -> Server {
    server_with(RingConfig::new(10_000), LokiLimits::default()).await
}

impl Server {
    async fn get(&self, path_and_query: &str) -> (StatusCode, String) {
        let r = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn get_json(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Appends `(source, labels, flags, msg)` lines; returns their times.
    fn append(&self, lines: &[Line<'_>]) -> Vec<u64> {
        let mut seqs = Vec::new();
        for (source, labels, flags, msg) in lines {
            let mut o = Origin::new(*source);
            for (k, v) in *labels {
                o.set_label(*k, *v);
            }
            let h = self.ring.origin(o).unwrap();
            seqs.push(self.ring.append(&h, *flags, msg.as_bytes()));
        }
        seqs.iter().map(|&s| self.time_of(s)).collect()
    }

    fn time_of(&self, seq: u64) -> u64 {
        let mut batch = ReadBatch::new();
        let mut c = self.ring.snapshot().cursor_from(seq, All);
        c.read(&mut batch, 1);
        let time = match batch.iter().next() {
            Some(Read::Entry(e)) => e.time,
            other => panic!("no entry {seq}: {other:?}"),
        };
        time
    }

    /// Every message in the ring, oldest first.
    fn messages(&self) -> Vec<(String, Vec<u8>, Flags)> {
        let mut out = Vec::new();
        let mut batch = ReadBatch::new();
        let mut c = self.ring.snapshot().cursor(All);
        while c.read(&mut batch, 1000) == ReadStatus::More {
            for r in batch.iter() {
                if let Read::Entry(e) = r {
                    out.push((e.origin.source.clone(), e.msg.to_vec(), e.flags));
                }
            }
        }
        out
    }
}

/// The seq of the newest entry in the ring.
fn seqs_end(s: &Server) -> u64 {
    s.ring.snapshot().end() - 1
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn web() -> Flags {
    Flags::default()
        .with_stream(Some(Stream::Stdout))
        .with_level(Some(ringtail::entry::Level::Info))
}

fn db() -> Flags {
    Flags::default()
        .with_stream(Some(Stream::Stderr))
        .with_level(Some(ringtail::entry::Level::Error))
}

/// A ring with two sources and known times.
async fn sample() -> (Server, Vec<u64>) {
    let s = server().await;
    let times = s.append(&[
        ("web", &[("app", "nginx")], web(), "GET /index.html 200"),
        ("db", &[], db(), "slow query: 2.1s"),
        ("web", &[("app", "nginx")], web(), "GET /missing 404"),
        ("web", &[("app", "nginx")], web(), "POST /login 200"),
    ]);
    (s, times)
}

#[tokio::test]
async fn grafana_health_check() {
    let s = server().await;
    // "Save & test", byte for byte as Grafana sends it.
    let (status, body) = s
        .get("/loki/api/v1/query?direction=backward&query=vector(1)%2Bvector(1)&time=4000000000")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[4000000000,"2"]}],"stats":{}}}"#
    );
    // Older versions call labels and want a label name back.
    s.append(&[("web", &[], web(), "x")]);
    let v = s.get_json("/loki/api/v1/labels").await;
    assert_eq!(v["status"], "success");
    assert!(v["data"].as_array().unwrap().contains(&json!("source")));
}

#[tokio::test]
async fn explore_metadata_calls() {
    let (s, t) = sample().await;
    let range = format!("start={}&end={}", t[0], t[3] + 1);
    let v = s.get_json(&format!("/loki/api/v1/labels?{range}")).await;
    assert_eq!(
        v,
        json!({"status":"success","data":["app","level","source","stream"]})
    );
    let v = s
        .get_json(&format!("/loki/api/v1/label/source/values?{range}"))
        .await;
    assert_eq!(v, json!({"status":"success","data":["db","web"]}));
    let v = s
        .get_json(&format!("/loki/api/v1/label/level/values?{range}"))
        .await;
    assert_eq!(v, json!({"status":"success","data":["error","info"]}));
    // `query` narrows labels and values (Grafana sends it since 10.x).
    let v = s
        .get_json(&format!(
            "/loki/api/v1/label/app/values?{range}&query={}",
            enc(r#"{source="db"}"#)
        ))
        .await;
    assert_eq!(v, json!({"status":"success","data":[]}));
    let v = s.get_json("/loki/api/v1/label/nothing/values").await;
    assert_eq!(v, json!({"status":"success","data":[]}));

    // series: match[] and match, merged; GET and POST form.
    let web_series = json!({"app":"nginx","level":"info","source":"web","stream":"stdout"});
    let db_series = json!({"level":"error","source":"db","stream":"stderr"});
    let v = s
        .get_json(&format!(
            "/loki/api/v1/series?match%5B%5D={}&{range}",
            enc(r#"{source="web"}"#)
        ))
        .await;
    assert_eq!(v, json!({"status":"success","data":[web_series]}));
    let v = s
        .get_json(&format!(
            "/loki/api/v1/series?match[]={}&match={}&{range}",
            enc(r#"{source="web"}"#),
            enc(r#"{level="error"}"#)
        ))
        .await;
    assert_eq!(
        v,
        json!({"status":"success","data":[web_series, db_series]})
    );
    let r = s
        .client
        .post(format!("{}/loki/api/v1/series", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("match[]={}&{range}", enc(r#"{stream="stderr"}"#)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"status":"success","data":[db_series]}));

    // index/stats: a bare object.
    let v = s
        .get_json(&format!(
            "/loki/api/v1/index/stats?query={}&{range}",
            enc(r#"{source=~"web|db"}"#)
        ))
        .await;
    let bytes = "GET /index.html 200slow query: 2.1sGET /missing 404POST /login 200".len();
    assert_eq!(v, json!({"streams":2,"chunks":0,"entries":4,"bytes":bytes}));
}

#[tokio::test]
async fn explore_log_query_range() {
    let (s, t) = sample().await;
    // As Grafana's Explore sends it: lowercase direction, ns times, a step.
    let q = format!(
        "/loki/api/v1/query_range?direction=backward&end={}&limit=1000&query={}&start={}&step=2000ms",
        t[3] + 1,
        enc(r#"{source="web"} |= "GET""#),
        t[0]
    );
    let v = s.get_json(&q).await;
    assert_eq!(
        v,
        json!({"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"nginx","level":"info","source":"web","stream":"stdout"},
             "values":[[t[2].to_string(),"GET /missing 404"],[t[0].to_string(),"GET /index.html 200"]]}
        ],"stats":{}}})
    );
    // logcli: upper-case direction, RFC 3339 times, forward.
    let rfc = |ns: u64| ringtail::timefmt::rfc3339_nanos(ns);
    let q = format!(
        "/loki/api/v1/query_range?query={}&limit=2&start={}&end={}&direction=FORWARD",
        enc(r#"{source=~".+"} != "GET""#),
        enc(&rfc(t[0])),
        enc(&rfc(t[3] + 1))
    );
    let v = s.get_json(&q).await;
    let result = v["data"]["result"].as_array().unwrap();
    let lines: Vec<(&str, &str)> = result
        .iter()
        .flat_map(|st| {
            st["values"].as_array().unwrap().iter().map(move |e| {
                (
                    st["stream"]["source"].as_str().unwrap(),
                    e[1].as_str().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(
        lines,
        vec![("db", "slow query: 2.1s"), ("web", "POST /login 200")]
    );
    // Float seconds and `since`.
    let q = format!(
        "/loki/api/v1/query_range?query={}&since=1h&limit=5",
        enc(r#"{source="db"} |~ "slow (query|read)""#)
    );
    let v = s.get_json(&q).await;
    assert_eq!(v["data"]["result"][0]["values"][0][1], "slow query: 2.1s");
    let q = format!(
        "/loki/api/v1/query_range?query={}&start={}.{:09}",
        enc(r#"{source="db"}"#),
        t[1] / S,
        t[1] % S
    );
    let v = s.get_json(&q).await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    // POST with a form body works too.
    let r = s
        .client
        .post(format!("{}/loki/api/v1/query_range", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query={}&limit=1", enc(r#"{source="web"}"#)))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["result"][0]["values"][0][1], "POST /login 200");
}

#[tokio::test]
async fn volume_and_metric_queries() {
    let (s, t) = sample().await;
    let step = 2 * S;
    let end = t[3] + step;
    // Grafana's log volume query, with its drop stage.
    let q = format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}&step=2000ms",
        enc(
            r#"sum by (level, detected_level) (count_over_time({source=~"web|db"} | drop __error__[2s]))"#
        ),
        t[0] - 60 * S,
        end
    );
    let v = s.get_json(&q).await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    let by_level: BTreeMap<String, f64> = result
        .iter()
        .map(|r| {
            let values = r["values"].as_array().unwrap();
            // Every point is on a multiple of the step.
            for p in values {
                let secs = p[0].as_f64().unwrap();
                assert_eq!((secs * 1000.0).round() as u64 % 2000, 0, "{p}");
                assert!(p[1].is_string());
            }
            let total: f64 = values
                .iter()
                .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                .sum();
            (r["metric"]["level"].as_str().unwrap().to_string(), total)
        })
        .collect();
    // A 2s window and a 2s step: every entry is counted exactly once.
    assert_eq!(
        by_level,
        BTreeMap::from([("error".to_string(), 1.0), ("info".to_string(), 3.0)])
    );
    // Instant queries: a vector.
    let q = format!(
        "/loki/api/v1/query?query={}&time={}",
        enc(r#"topk(1, sum by (source) (count_over_time({source=~".+"}[1h])))"#),
        end
    );
    let v = s.get_json(&q).await;
    let secs = v["data"]["result"][0]["value"][0].as_f64().unwrap();
    assert!((secs - end as f64 / S as f64).abs() < 1e-3);
    assert_eq!(
        v["data"]["result"],
        json!([{"metric":{"source":"web"},"value":[v["data"]["result"][0]["value"][0], "3"]}])
    );
    let q = format!(
        "/loki/api/v1/query?query={}&time={end}",
        enc(r#"sum(rate({source="web"}[1m])) * 60"#)
    );
    let v = s.get_json(&q).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3");
}

/// Grafana's log volume (`index/volume`, `index/volume_range`) and an
/// Explore query with a parser and a template, over HTTP.
#[tokio::test]
async fn volume_and_parsed_queries() {
    let (s, t) = sample().await;
    let (start, end) = (t[0] - 10 * S, t[3] + S);
    let v = s
        .get_json(&format!(
            "/loki/api/v1/index/volume?query={}&start={start}&end={end}",
            enc(r#"{source=~"web|db"}"#)
        ))
        .await;
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"].as_array().unwrap();
    // Largest first: web has 19 + 16 + 15 bytes, db 16.
    assert_eq!(result[0]["metric"], json!({"source": "web"}));
    assert_eq!(result[0]["value"][1], "50");
    assert_eq!(result[1]["metric"], json!({"source": "db"}));
    assert_eq!(result[1]["value"][1], "16");
    let v = s
        .get_json(&format!(
            "/loki/api/v1/index/volume?query={}&start={start}&end={end}&aggregateBy=labels",
            enc(r#"{source=~"web|db"}"#)
        ))
        .await;
    let names: Vec<&Value> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["metric"])
        .collect();
    assert!(names.contains(&&json!({"app": ""})) && names.contains(&&json!({"source": ""})));
    let v = s
        .get_json(&format!(
            "/loki/api/v1/index/volume_range?query={}&start={start}&end={end}&step=1s&limit=1",
            enc("{}")
        ))
        .await;
    let total: f64 = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.get("values")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![r["value"].clone()])
        })
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(total > 0.0 && total <= 66.0, "{total}");
    let (status, body) = s
        .get("/loki/api/v1/index/volume?query=%7Ba%3D&aggregateBy=x")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A pattern parser, a numeric filter and a template, as Explore sends them.
    let q = format!(
        "/loki/api/v1/query_range?direction=forward&start={start}&end={end}&query={}",
        enc(
            r#"{source="web"} | pattern "<method> <path> <status>" | status >= 300 or method="POST" | line_format "{{.method | lower}} {{.path}}""#
        )
    );
    let v = s.get_json(&q).await;
    let lines: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["values"].as_array().unwrap())
        .map(|e| e[1].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["get /missing", "post /login"]);
}

#[tokio::test]
async fn errors_are_plain_text_with_reasons() {
    let (s, _) = sample().await;
    let cases = [
        (
            format!(
                "/loki/api/v1/query_range?query={}",
                enc(r#"{source="web""x"}"#)
            ),
            "parse error at 1:14: expected '}' or ',' after a matcher",
        ),
        (
            format!("/loki/api/v1/query_range?query={}", enc("{}")),
            "at least one regexp or equality matcher",
        ),
        (
            format!("/loki/api/v1/query_range?query={}", enc(r#"{a=~".*"}"#)),
            "at least one regexp or equality matcher",
        ),
        (
            format!("/loki/api/v1/query?query={}", enc(r#"{source="web"}"#)),
            "log queries are not supported as an instant query type",
        ),
        (
            "/loki/api/v1/query_range".to_string(),
            "missing parameter `query`",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start=yesterday",
                enc(r#"{a="b"}"#)
            ),
            "invalid parameter `start`",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&direction=up",
                enc(r#"{a="b"}"#)
            ),
            "invalid parameter `direction`",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&limit=9999",
                enc(r#"{a="b"}"#)
            ),
            "max entries limit per query exceeded",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&step=0s",
                enc("vector(1)")
            ),
            "zero or negative query resolution step",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&step=1ms",
                enc("vector(1)")
            ),
            "maximum resolution",
        ),
        (
            format!("/loki/api/v1/series?match[]={}", enc("{}")),
            "at least one regexp or equality matcher",
        ),
        (
            "/loki/api/v1/index/stats".to_string(),
            "missing parameter `query`",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}",
                enc(r#"{a="b"} |= ip("10.0.0.1")"#)
            ),
            "ip() filters are not supported by ringtail",
        ),
    ];
    for (path, want) in cases {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let body = r.text().await.unwrap();
        assert!(body.contains(want), "{path}: {body}");
    }
}

#[tokio::test]
async fn ready_buildinfo_and_fallbacks() {
    let s = server().await;
    assert_eq!(s.get("/ready").await, (StatusCode::OK, "ready".to_string()));
    let v = s.get_json("/loki/api/v1/status/buildinfo").await;
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "branch",
            "buildDate",
            "buildUser",
            "goVersion",
            "revision",
            "version"
        ]
    );
    assert!(v.as_object().unwrap().values().all(Value::is_string));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    for path in [
        "/loki/api/v2alpha/tail?query=x",
        "/loki/api/v1/detected_labels?query=x",
        "/loki/api/v1/detected_fields?query=x",
        "/loki/api/v1/detected_field/level/values",
        "/loki/api/v1/patterns?query=x",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("falls back"), "{body}");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn push_round_trips() {
    let s = server().await;
    let push = |ct: Option<&'static str>, ce: Option<&'static str>, body: Vec<u8>| {
        let mut r = s
            .client
            .post(format!("{}/loki/api/v1/push", s.base))
            .body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        if let Some(ce) = ce {
            r = r.header("content-encoding", ce);
        }
        r.send()
    };
    let json_body = json!({"streams":[
        {"stream":{"source":"app","env":"dev","level":"error"},
         "values":[["1700000000000000000","json one"],["1700000000000000001","json two",{"trace_id":"abc"}]]}
    ]});
    let r = push(
        Some("application/json"),
        None,
        serde_json::to_vec(&json_body).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let gz_body = json!({"streams":[{"stream":{"job":"batch"},"values":[["1700000000000000002","gzip line"]]}]});
    let r = push(
        Some("application/json"),
        Some("gzip"),
        gzip(&serde_json::to_vec(&gz_body).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let proto = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{source="proto", stream="stderr", zone="a"}"#.into(),
            entries: vec![
                EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 3,
                    }),
                    line: b"proto \xff bytes".to_vec(),
                    structured_metadata: vec![],
                },
                EntryAdapter {
                    timestamp: None,
                    line: b"proto two".to_vec(),
                    structured_metadata: vec![],
                },
            ],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&proto.encode_to_vec())
        .unwrap();
    let r = push(Some("application/x-protobuf"), None, body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = push(None, None, body).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "no content type is protobuf"
    );

    let got = s.messages();
    let summary: Vec<(&str, &[u8])> = got
        .iter()
        .map(|(src, msg, _)| (src.as_str(), msg.as_slice()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("app", &b"json one"[..]),
            ("app", b"json two"),
            ("batch", b"gzip line"),
            ("proto", b"proto \xff bytes"),
            ("proto", b"proto two"),
            ("proto", b"proto \xff bytes"),
            ("proto", b"proto two"),
        ]
    );
    assert_eq!(
        got[0].2.level().map(ringtail::entry::Level::as_str),
        Some("error")
    );
    assert_eq!(got[3].2.stream(), Some(Stream::Stderr));

    // Read back through the query API: labels as pushed, each entry at the
    // time it was pushed with (as Loki stores it), so the window must reach
    // back to 2023; the two entries pushed without a time have their
    // arrival time.
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&direction=forward&start=1699999999000000000&end={}",
            enc(r#"{source=~"app|batch|proto"}"#),
            s.time_of(seqs_end(&s)) + 1
        ))
        .await;
    let times: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["values"].as_array().unwrap().iter())
        .map(|e| e[0].as_str().unwrap())
        .filter(|t| t.starts_with("1700000000"))
        .collect();
    let mut times = times;
    times.sort();
    assert_eq!(
        times,
        [
            "1700000000000000000",
            "1700000000000000001",
            "1700000000000000002",
            "1700000000000000003",
            "1700000000000000003"
        ],
        "pushed timestamps are the entries' LogQL times"
    );
    // The default window (the last hour) does not reach 2023: only the
    // entries pushed without a time are in it.
    let recent = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}",
            enc(r#"{source=~"app|batch|proto"}"#)
        ))
        .await;
    let recent_lines: usize = recent["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(recent_lines, 2, "{recent}");
    let streams: BTreeMap<String, (Value, usize)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            (
                st["stream"]["source"].as_str().unwrap().to_string(),
                (st["stream"].clone(), st["values"].as_array().unwrap().len()),
            )
        })
        .collect();
    assert_eq!(
        streams["app"],
        (json!({"env":"dev","level":"error","source":"app"}), 2)
    );
    assert_eq!(
        streams["batch"],
        (json!({"job":"batch","source":"batch"}), 1)
    );
    assert_eq!(
        streams["proto"],
        (json!({"source":"proto","stream":"stderr","zone":"a"}), 4)
    );
    // The invalid byte comes back escaped, never replaced silently.
    let lines: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap())
        .collect();
    assert!(lines.contains(&"proto \\xff bytes"), "{lines:?}");

    // Refusals.
    let numeric = br#"{"streams":[{"stream":{"a":"b"},"values":[[1700000000000000000,"x"]]}]}"#;
    let r = push(Some("application/json"), None, numeric.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("expected a string"));
    let r = push(Some("application/json"), Some("br"), b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = push(None, None, b"not snappy".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.messages().len(), 7, "refused pushes store nothing");
}

#[tokio::test]
async fn metrics_count_pushed_entries_at_their_own_times() {
    // Three entries pushed now with times 9, 5 and 1 minutes ago: a metric
    // query counts each in the minute it was logged, not when it arrived.
    let s = server().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let minute = 60 * S;
    // Whole minutes, so each entry falls inside one 1m step window.
    let base = now / minute * minute;
    let at = |m: u64| (base - m * minute + S).to_string();
    let body = json!({"streams":[{"stream":{"source":"relayed"},
        "values":[[at(9),"nine"],[at(5),"five"],[at(1),"one"]]}]});
    let r = s
        .client
        .post(format!("{}/loki/api/v1/push", s.base))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let q = format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}&step=60s",
        enc(r#"count_over_time({source="relayed"}[1m])"#),
        base - 10 * minute,
        base
    );
    let v = s.get_json(&q).await;
    let points: Vec<(u64, String)> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap() as u64,
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // A point at t counts (t - 1m, t]: an entry logged 1 s after minute m
    // is counted at the step ending one minute later.
    let secs = |m: u64| (base - m * minute + minute) / S;
    assert_eq!(
        points,
        vec![
            (secs(9), "1".to_string()),
            (secs(5), "1".to_string()),
            (secs(1), "1".to_string())
        ],
        "{v}"
    );
}

#[tokio::test]
async fn push_size_limits() {
    let limits = LokiLimits {
        max_push_bytes: 4096,
        ..LokiLimits::default()
    };
    let s = server_with(RingConfig::new(1000), limits).await;
    let big = json!({"streams":[{"stream":{"a":"b"},"values":[["1", "x".repeat(8000)]]}]});
    let body = serde_json::to_vec(&big).unwrap();
    let r = s
        .client
        .post(format!("{}/loki/api/v1/push", s.base))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Small when compressed, too large once inflated.
    let r = s
        .client
        .post(format!("{}/loki/api/v1/push", s.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(&body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("decompressed"));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next tail message (text), skipping pings.
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a tail message within 30 s")
            .expect("the connection stays open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn lines_of(msg: &Value) -> Vec<String> {
    msg["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .flat_map(|st| st["values"].as_array().unwrap().iter())
                .map(|e| e[1].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn live_tail_over_websocket() {
    let (s, t) = sample().await;
    let url = format!(
        "{}/loki/api/v1/tail?query={}&limit=2&start={}",
        s.ws_base,
        enc(r#"{source="web"}"#),
        t[0]
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // The backlog: the newest 2 matching entries, oldest first.
    let first = next_message(&mut ws).await;
    assert_eq!(
        lines_of(&first),
        vec!["GET /missing 404", "POST /login 200"]
    );
    assert_eq!(
        first["streams"][0]["stream"],
        json!({"app":"nginx","level":"info","source":"web","stream":"stdout"})
    );
    assert!(first.get("dropped_entries").is_none());
    // Then live entries, and only matching ones.
    let live = s.append(&[
        ("db", &[], db(), "not for this tail"),
        ("web", &[("app", "nginx")], web(), "GET /live 200"),
    ]);
    let msg = next_message(&mut ws).await;
    assert_eq!(lines_of(&msg), vec!["GET /live 200"]);
    assert_eq!(msg["streams"][0]["values"][0][0], live[1].to_string());
    // The server pings every second.
    let ping = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Message::Ping(_) = ws.next().await.unwrap().unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "no ping within 30 s");
    ws.close(None).await.unwrap();

    // A metric query or a bad delay is refused before the upgrade.
    for q in [
        format!("query={}", enc(r#"rate({a="b"}[1m])"#)),
        format!("query={}&delay_for=6", enc(r#"{a="b"}"#)),
    ] {
        let err = tokio_tungstenite::connect_async(format!("{}/loki/api/v1/tail?{q}", s.ws_base))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                assert_eq!(r.status(), StatusCode::BAD_REQUEST.as_u16())
            }
            e => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn tail_limits_connections() {
    let limits = LokiLimits {
        max_tails: 1,
        ..LokiLimits::default()
    };
    let s = server_with(RingConfig::new(100), limits).await;
    let url = format!("{}/loki/api/v1/tail?query={}", s.ws_base, enc(r#"{a="b"}"#));
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 429));
    first.close(None).await.unwrap();
    // The slot is given back once the first tail is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the slot was not given back: {e}"),
        }
    }
}

/// A client that stops reading while 60 MB of entries arrive: every entry
/// is either delivered or listed in `dropped_entries`, none is lost
/// silently, and nothing is buffered without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tail_client_gets_dropped_entries() {
    let mut config = RingConfig::new(200_000);
    config.max_entry_len = 2048;
    config.max_bytes = 256 << 20;
    let s = server_with(config, LokiLimits::default()).await;
    let url = format!(
        "{}/loki/api/v1/tail?query={}",
        s.ws_base,
        enc(r#"{source="flood"}"#)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Make sure the tail follows before the flood starts.
    let h = s.ring.origin(Origin::new("flood")).unwrap();
    s.ring.append(&h, Flags::default(), b"start");
    assert_eq!(lines_of(&next_message(&mut ws).await), vec!["start"]);
    const N: usize = 60_000;
    let line = vec![b'x'; 1000];
    for _ in 0..N {
        s.ring.append(&h, Flags::default(), &line);
    }
    let (mut delivered, mut dropped, mut with_drops) = (0usize, 0usize, 0usize);
    while delivered + dropped < N {
        let msg = next_message(&mut ws).await;
        delivered += lines_of(&msg).len();
        if let Some(d) = msg.get("dropped_entries") {
            let d = d.as_array().unwrap();
            assert!(d.len() <= 1000);
            for e in d {
                assert_eq!(e["labels"], json!({"source":"flood"}));
                assert!(e["timestamp"].as_str().unwrap().parse::<u64>().is_ok());
            }
            dropped += d.len();
            with_drops += 1;
        }
    }
    assert_eq!(delivered + dropped, N);
    assert!(
        dropped > 0 && with_drops > 0,
        "the client was never overrun"
    );
    // The next entry arrives normally.
    s.ring.append(&h, Flags::default(), b"after");
    let msg = next_message(&mut ws).await;
    assert_eq!(lines_of(&msg), vec!["after"]);
}

#[tokio::test]
async fn client_disconnect_ends_the_tail() {
    let s = server().await;
    let url = format!("{}/loki/api/v1/tail?query={}", s.ws_base, enc(r#"{a="b"}"#));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Close(None)).await.unwrap();
    // The server answers the close and ends the connection.
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                continue;
            }
        }
    })
    .await;
    assert!(end.is_ok());
}

/// Every route in `loki::ROUTES` (what the API spec describes) is one the
/// router serves, with that method.
#[tokio::test]
async fn the_route_list_matches_the_router() {
    let s = server().await;
    for (method, path) in loki::ROUTES {
        let path = path.replace("{name}", "source");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = s
            .client
            .request(method.clone(), format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        // Missing parameters make a 400 (or, for tail, a failed upgrade);
        // an unknown route or method would be 404 or 405.
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status()),
            "{method} {path}: {}",
            r.status()
        );
    }
}
