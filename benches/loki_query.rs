//! Load tool for the Loki API's performance targets, over full 1M-entry
//! rings of 100-byte lines from 8 sources:
//!
//! 1. `sum by (source) (count_over_time({source=~".+"}[1m]))` as
//!    `query_range` over the last hour with 250 steps: p99 at most 50 ms;
//! 2. `query_range` of a log query with a line filter, `limit=1000`
//!    (backward, Loki's default): p99 at most 20 ms;
//! 3. over a ring of 1M JSON lines (`{"level":...,"latency_ms":...}`):
//!    `sum by (level) (count_over_time({...} | json [1h]))` at most 400 ms
//!    and `quantile_over_time(0.99, {...} | json | unwrap latency_ms [1h])`
//!    at most 500 ms (median; as `query_range` with 250 steps and as an
//!    instant query).
//!
//! The first two are measured twice: the evaluation alone (`query_range`
//! in-process, JSON body included) and a whole HTTP request against the
//! Loki router on loopback. Prints median, p90, p99 and max from an
//! hdrhistogram.
//!
//! Run: `cargo bench --bench loki_query` (`-- --quick` for fewer rounds,
//! `-- --json-only` for the JSON ring alone, `-- --no-json` without it,
//! `-- --only=quantile` for one of the JSON queries). Each result also
//! gives the CPU time of all threads: on a shared machine the wall time
//! says as much about the neighbours as about the query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{All, ReadBatch, ReadStatus, Ring, RingConfig, Span};
use ringtail::selflog::SelfLog;
use ringtail::serve::loki::params::Direction;
use ringtail::serve::loki::query::{self, RangeRequest};
use ringtail::serve::loki::{self, LokiLimits};
use ringtail::timefmt::{now_ns, NANOS_PER_SEC};

const LINES: u64 = 1_000_000;
const SOURCES: usize = 8;

fn fill(ring: &Ring) {
    let handles: Vec<_> = (0..SOURCES)
        .map(|i| {
            ring.origin(Origin::new(format!("svc-{i}.out")).with_label("app", format!("app{i}")))
                .expect("origin")
        })
        .collect();
    let verbs = ["GET", "POST", "PUT", "DELETE"];
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    let mut n = 0u64;
    while n < LINES {
        for (i, h) in handles.iter().enumerate() {
            buf.clear();
            spans.clear();
            for j in 0..125u64 {
                let start = buf.len();
                let line = format!(
                    "{} /api/v1/items/{:08} status=200 bytes={:06} source={i} request={:012}",
                    verbs[(j % 4) as usize],
                    n + j,
                    (n * 7 + j) % 1_000_000,
                    n + j
                );
                let mut line = line.into_bytes();
                line.resize(100, b'.');
                buf.extend_from_slice(&line);
                let flags = Flags::default()
                    .with_stream(Some(if j % 10 == 0 {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    }))
                    .with_level(Some(if j % 10 == 0 {
                        ringtail::entry::Level::Error
                    } else {
                        ringtail::entry::Level::Info
                    }));
                spans.push(Span::new(start as u32, 100, flags));
            }
            ring.append_batch(h, &buf, &spans).expect("append");
            n += 125;
        }
    }
}

/// 1M JSON lines of about 100 bytes: four levels, four methods, three
/// statuses, five paths, latencies from 1 to 1000 ms.
fn fill_json(ring: &Ring) {
    let handles: Vec<_> = (0..SOURCES)
        .map(|i| {
            ring.origin(Origin::new(format!("json-{i}")))
                .expect("origin")
        })
        .collect();
    let levels = ["info", "info", "warn", "error"];
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    let mut n = 0u64;
    while n < LINES {
        for h in &handles {
            buf.clear();
            spans.clear();
            for j in 0..125u64 {
                let k = n + j;
                let start = buf.len();
                let line = format!(
                    r#"{{"level":"{}","method":"{}","status":{},"latency_ms":{},"path":"/api/v1/r{}","msg":"request served"}}"#,
                    levels[(k % 4) as usize],
                    methods[(k / 4 % 4) as usize],
                    [200, 404, 500][(k % 3) as usize],
                    (k * 7919) % 1000 + 1,
                    k % 5,
                );
                let mut line = line.into_bytes();
                line.resize(line.len().max(100), b' ');
                buf.extend_from_slice(&line);
                spans.push(Span::new(start as u32, line.len() as u32, Flags::default()));
            }
            ring.append_batch(h, &buf, &spans).expect("append");
            n += 125;
        }
    }
}

fn report(name: &str, h: &Histogram<u64>, target_ms: f64) {
    let ms = |v: u64| v as f64 / 1000.0;
    let p99 = ms(h.value_at_quantile(0.99));
    println!(
        "{name:<58} n={:<4} median {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  target p99 <= {target_ms} ms: {}",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        p99,
        ms(h.max()),
        if p99 <= target_ms { "ok" } else { "MISSED" }
    );
    let cpu = CPU.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if !cpu.is_empty() {
        let mut cpu = cpu;
        cpu.sort_unstable();
        println!(
            "{:<58}        cpu (all threads) median {:>7.2} ms: on a machine of its own, about {:.2} ms with 2 cores",
            "",
            ms(cpu[cpu.len() / 2]),
            ms(cpu[cpu.len() / 2]) / 2.0
        );
    }
}

thread_local! {
    /// CPU time of each measured round, µs (the machine is shared: wall
    /// time says more about the neighbours than about the query).
    static CPU: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// User + system CPU time of the process so far, µs.
fn cpu_us() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    us(u.user_time()) + us(u.system_time())
}

fn measure(rounds: usize, mut f: impl FnMut()) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for _ in 0..3 {
        f();
    }
    let mut cpu = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let c = cpu_us();
        let t = Instant::now();
        f();
        h.record(t.elapsed().as_micros().max(1) as u64)
            .expect("in range");
        cpu.push(cpu_us() - c);
    }
    CPU.with(|c| *c.borrow_mut() = cpu);
    h
}

/// The parsed-JSON queries of the issue's targets, on their own ring.
fn json_queries(rounds: usize) {
    let ring = Ring::open(&RingConfig::new(LINES)).expect("ring");
    let t = Instant::now();
    fill_json(&ring);
    println!(
        "json ring: {} entries, filled in {:?}",
        ring.stats().retained,
        t.elapsed()
    );
    let limits = LokiLimits::default();
    let step = 3600 * NANOS_PER_SEC / 250;
    let end = now_ns() + step;
    let start = end - 3600 * NANOS_PER_SEC;
    let queries = [
        (
            r#"sum by (level) (count_over_time({source=~"json-.*"} | json [1h]))"#,
            400.0,
        ),
        (
            r#"quantile_over_time(0.99, {source=~"json-.*"} | json | unwrap latency_ms [1h])"#,
            500.0,
        ),
    ];
    let only = std::env::args().find_map(|a| a.strip_prefix("--only=").map(str::to_string));
    for (q, target) in queries {
        if only.as_ref().is_some_and(|o| !q.contains(o.as_str())) {
            continue;
        }
        let range = RangeRequest {
            query: q.into(),
            start,
            end,
            step: Some(step),
            limit: 100,
            direction: Direction::Backward,
        };
        let instant = query::InstantRequest {
            query: q.into(),
            time: end,
            limit: 100,
            direction: Direction::Backward,
        };
        let body = query::query_instant(&ring, &instant, &limits).expect("instant query");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let series = v["data"]["result"].as_array().expect("vector");
        let total: f64 = series
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        println!("{q}: {} series, values sum to {total}", series.len());
        let h = measure(rounds, || {
            query::query_range(&ring, &range, &limits).expect("range query");
        });
        report(&format!("{q} (range, 250 steps)"), &h, target);
        let h = measure(rounds, || {
            query::query_instant(&ring, &instant, &limits).expect("instant query");
        });
        report(&format!("{q} (instant)"), &h, target);
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 30 } else { 200 };
    if !std::env::args().any(|a| a == "--no-json") {
        json_queries(if quick { 10 } else { 30 });
    }
    if std::env::args().any(|a| a == "--json-only") {
        return;
    }
    let ring = Arc::new(Ring::open(&RingConfig::new(LINES)).expect("ring"));
    let t = Instant::now();
    let fill_start = now_ns();
    fill(&ring);
    let fill_end = now_ns();
    println!(
        "ring: {} entries from {SOURCES} sources, filled in {:?}",
        ring.stats().retained,
        t.elapsed()
    );
    let limits = LokiLimits::default();
    // Steps fall on multiples of the step: end one step ahead so that the
    // last step's window holds the newest entries.
    let step = 3600 * NANOS_PER_SEC / 250;
    let end = now_ns() + step;
    let start = end - 3600 * NANOS_PER_SEC;
    let metric = RangeRequest {
        query: r#"sum by (source) (count_over_time({source=~".+"}[1m]))"#.into(),
        start,
        end,
        step: Some(step),
        limit: 100,
        direction: Direction::Backward,
    };
    // The same query with its 250 steps spread over the entries' own
    // times: every entry moves the step window, every point is present.
    let dense = RangeRequest {
        query: metric.query.clone(),
        start: fill_start,
        end: fill_end,
        step: Some(((fill_end - fill_start) / 249).max(1)),
        limit: 100,
        direction: Direction::Backward,
    };
    let logs = RangeRequest {
        query: r#"{source=~"svc-.*"} |= "POST /api/v1/items""#.into(),
        start,
        end,
        step: None,
        limit: 1000,
        direction: Direction::Backward,
    };
    // Check the answers once: every entry counted, 1000 lines returned.
    let body = query::query_range(&ring, &metric, &limits).expect("metric query");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let series = v["data"]["result"].as_array().expect("matrix");
    let last_total: f64 = series
        .iter()
        .map(|s| {
            let vals = s["values"].as_array().expect("values");
            vals.last().expect("point")[1]
                .as_str()
                .expect("value")
                .parse::<f64>()
                .expect("number")
        })
        .sum();
    println!(
        "metric query: {} series x {} points; last point sums to {last_total}",
        series.len(),
        series[0]["values"].as_array().expect("values").len()
    );
    let body = query::query_range(&ring, &logs, &limits).expect("log query");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let lines: usize = v["data"]["result"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["values"].as_array().expect("values").len())
        .sum();
    println!("log query: {lines} lines");

    // The floor: reading every entry of the ring once on one thread.
    let h = measure(rounds.min(30), || {
        let mut batch = ReadBatch::new();
        let mut cursor = ring.snapshot().cursor(All);
        let mut n = 0usize;
        while cursor.read(&mut batch, 4096) == ReadStatus::More {
            n += batch.len();
        }
        assert!(n >= LINES as usize);
    });
    report(
        "(floor) read the whole ring once, one thread",
        &h,
        f64::INFINITY,
    );
    let h = measure(rounds, || {
        query::query_range(&ring, &metric, &limits).expect("metric query");
    });
    report(
        "metric query_range, 250 steps (evaluation + JSON)",
        &h,
        50.0,
    );
    let h = measure(rounds, || {
        query::query_range(&ring, &dense, &limits).expect("metric query");
    });
    report(
        "same, 250 steps across the entries' times (dense)",
        &h,
        50.0,
    );
    let h = measure(rounds, || {
        query::query_range(&ring, &logs, &limits).expect("log query");
    });
    report(
        "log query_range |= filter, limit 1000 (evaluation + JSON)",
        &h,
        20.0,
    );

    // The same over HTTP on loopback.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let selflog = SelfLog::new(ring.clone()).expect("self log");
        let pipeline = ringtail::sources::Pipeline::new(ring.clone(), selflog, Default::default());
        let budget =
            ringtail::sources::budget::Budget::new(64 << 20, std::time::Duration::from_secs(2));
        let app = loki::router(pipeline, limits, budget);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        for (name, req, target) in [
            ("metric query_range, 250 steps (HTTP)", &metric, 50.0),
            ("log query_range |= filter, limit 1000 (HTTP)", &logs, 20.0),
        ] {
            let url = format!("http://{addr}/loki/api/v1/query_range");
            let mut params = vec![
                ("query", req.query.clone()),
                ("start", req.start.to_string()),
                ("end", req.end.to_string()),
                ("limit", req.limit.to_string()),
            ];
            if let Some(step) = req.step {
                params.push(("step", format!("{}ms", step / 1_000_000)));
            }
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            for i in 0..rounds + 3 {
                let t = Instant::now();
                let r = client
                    .get(&url)
                    .query(&params)
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.expect("body");
                if i >= 3 {
                    h.record(t.elapsed().as_micros().max(1) as u64)
                        .expect("in range");
                }
            }
            report(name, &h, target);
        }
    });
}
